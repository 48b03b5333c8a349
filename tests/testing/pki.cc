#include "tests/testing/pki.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace fleetcanary {
namespace testing {

absl::Status RunQuietly(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("argv: empty");
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null",
                                   O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null",
                                   O_WRONLY, 0);
  pid_t pid = 0;
  const int rc =
      posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  const std::string command = absl::StrJoin(argv, " ");
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot run ", command, ": ", std::strerror(rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid for ", command, ": ", std::strerror(errno)));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(command, " failed (wait status ", status, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TestPki> TestPki::Create(const std::string& dir,
                                        const std::string& ca_name) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  TestPki pki(dir);
  absl::Status made =
      RunQuietly({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                  "-days", "2", "-subj", absl::StrCat("/CN=", ca_name),
                  "-keyout", pki.ca_key(), "-out", pki.ca()});
  if (!made.ok()) return made;
  return pki;
}

absl::Status TestPki::Leaf(const std::string& name,
                           const std::string& san) const {
  const std::string ext = Path(name, "ext");
  {
    std::ofstream f(ext, std::ios::trunc);
    f << "subjectAltName=" << san << "\n";
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", ext));
  }
  absl::Status s =
      RunQuietly({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                  absl::StrCat("/CN=", name), "-keyout", Path(name, "key"),
                  "-out", Path(name, "csr")});
  if (!s.ok()) return s;
  return RunQuietly({"openssl", "x509", "-req", "-days", "2", "-in",
                     Path(name, "csr"), "-CA", ca(), "-CAkey", ca_key(),
                     "-CAcreateserial", "-extfile", ext, "-out",
                     Path(name, "pem")});
}

std::string TestPki::Path(const std::string& name,
                          const std::string& ext) const {
  return absl::StrCat(dir_, "/", name, ".", ext);
}

}  // namespace testing
}  // namespace fleetcanary
