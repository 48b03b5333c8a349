#include "tests/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fleetcanary {
namespace testing {
namespace {

constexpr char kMissing[] =
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
    "$FLEETCANARY_PG_BINDIR or /usr/lib/postgresql/<version>/bin: install "
    "the Debian package `postgresql` (scripts/install-deps.sh does); it is a "
    "required test dependency";

std::string FindBindir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("FLEETCANARY_PG_BINDIR")) {
    if (fs::exists(fs::path(env) / "initdb")) return env;
    return "";
  }
  std::error_code ec;
  std::vector<std::pair<int, std::string>> found;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const fs::path bin = e.path() / "bin";
    if (fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl") &&
        fs::exists(bin / "postgres")) {
      found.push_back({std::atoi(e.path().filename().c_str()), bin.string()});
    }
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  return found.back().second;
}

// A port free on 127.0.0.1 right now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Runs argv (optionally as `user`), stdout to `out_path` (or the log),
// stderr appended to `log_path`, in `cwd`; at most `timeout`.
absl::Status Run(const std::vector<std::string>& argv, const std::string& user,
                 const std::string& cwd, const std::string& out_path,
                 const std::string& log_path,
                 std::chrono::seconds timeout = std::chrono::seconds(120)) {
  std::vector<std::string> full;
  if (!user.empty()) full = {"runuser", "-u", user, "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (std::string& a : full) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int out = out_path.empty() ? log
                                     : open(out_path.c_str(),
                                            O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (log >= 0) dup2(log, 2);
    if (out >= 0) dup2(out, 1);
    if (in >= 0) dup2(in, 0);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    execvp(args[0], args.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return absl::InternalError("waitpid failed");
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(absl::StrJoin(argv, " "), ": timed out"));
    }
    // Waiting for a child process to exit (not for time to pass).
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(log_path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string log = ss.str();
    if (log.size() > 2000) log = log.substr(log.size() - 2000);
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "),
                                            " failed (status ", status,
                                            "); log tail:\n", log));
  }
  return absl::OkStatus();
}

// Servers left behind by test processes that died without their atexit
// (crash, SIGKILL at a timeout): their owner.pid names a dead process. Stop
// them and delete their directories, so they do not pile up.
void ReapOrphans(const std::string& bindir, bool as_postgres_user) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/tmp", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("fcpg.", 0) != 0) continue;
    std::ifstream in(e.path() / "owner.pid");
    pid_t owner = 0;
    if (!(in >> owner) || owner <= 0) continue;
    if (kill(owner, 0) == 0 || errno != ESRCH) continue;  // Still alive.
    const std::string dir = e.path().string();
    if (fs::exists(e.path() / "data" / "postmaster.pid")) {
      Run({bindir + "/pg_ctl", "-D", dir + "/data", "-m", "immediate", "-w",
           "-t", "30", "stop"},
          as_postgres_user ? "postgres" : "", dir, "", "/dev/null")
          .IgnoreError();
    }
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> pg(new PostgresServer());
  pg->bindir_ = FindBindir();
  if (pg->bindir_.empty()) return absl::FailedPreconditionError(kMissing);
  pg->as_postgres_user_ = geteuid() == 0;
  char tmpl[] = "/tmp/fcpg.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return absl::InternalError("mkdtemp failed for the PostgreSQL directory");
  }
  pg->dir_ = tmpl;
  ReapOrphans(pg->bindir_, pg->as_postgres_user_);
  std::ofstream(pg->dir_ + "/owner.pid") << getpid() << "\n";
  if (pg->as_postgres_user_) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return absl::FailedPreconditionError(
          "running as root, and PostgreSQL refuses root: the `postgres` "
          "system user (created by Debian's postgresql package) is missing");
    }
    if (chown(pg->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::InternalError("chown of the PostgreSQL directory failed");
    }
  }
  const absl::Status init = pg->RunAsOwner(
      {pg->bindir_ + "/initdb", "-D", pg->dir_ + "/data", "-A", "trust", "-U",
       "postgres", "--no-sync", "-E", "UTF8", "--locale=C"});
  if (!init.ok()) return init;
  absl::Status started;
  for (int attempt = 0; attempt < 5; ++attempt) {
    pg->port_ = FreePort();
    started = pg->StartServer();
    if (started.ok()) break;  // Else the port was taken meanwhile.
  }
  if (!started.ok()) return started;
  return pg;
}

PostgresServer::~PostgresServer() {
  if (running_) Stop("immediate").IgnoreError();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string PostgresServer::Url(const std::string& database) const {
  return absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/", database);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(
    const std::string& name) {
  absl::StatusOr<std::string> r =
      Psql("postgres", absl::StrCat("CREATE DATABASE ", name));
  if (!r.ok()) return r.status();
  return Url(name);
}

absl::StatusOr<std::string> PostgresServer::Psql(const std::string& database,
                                                 const std::string& sql) {
  const std::string out = dir_ + "/psql.out";
  absl::Status s =
      Run({"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
           Url(database), "-c", sql},
          "", "", out, dir_ + "/psql.log", std::chrono::seconds(60));
  if (!s.ok()) return s;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status PostgresServer::Stop(const std::string& mode) {
  absl::Status s = RunAsOwner({bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-m",
                               mode, "-w", "-t", "60", "stop"});
  if (s.ok()) running_ = false;
  return s;
}

absl::Status PostgresServer::Restart() { return StartServer(); }

absl::Status PostgresServer::StartServer() {
  absl::Status s =
      RunAsOwner({bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-l",
                  dir_ + "/server.log", "-w", "-t", "60", "-o",
                  absl::StrCat("-k ", dir_, " -p ", port_,
                               " -c listen_addresses=127.0.0.1 -c fsync=off "
                               "-c max_connections=200"),
                  "start"});
  if (s.ok()) running_ = true;
  return s;
}

absl::Status PostgresServer::RunAsOwner(const std::vector<std::string>& argv) {
  return Run(argv, as_postgres_user_ ? "postgres" : "", dir_, "",
             dir_ + "/ctl.log");
}

namespace {

struct Shared {
  std::unique_ptr<PostgresServer> server;
  std::string error;
};

Shared& TheShared() {
  static Shared* shared = [] {
    auto* s = new Shared;
    auto started = PostgresServer::Start();
    if (started.ok()) {
      s->server = std::move(*started);
    } else {
      s->error = started.status().ToString();
    }
    std::atexit([] { TheShared().server.reset(); });
    return s;
  }();
  return *shared;
}

}  // namespace

PostgresServer* SharedPostgresServer() { return TheShared().server.get(); }
std::string SharedPostgresServerError() { return TheShared().error; }

}  // namespace testing
}  // namespace fleetcanary
