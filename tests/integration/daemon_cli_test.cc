// Every daemon as an operator first meets it: --help lists the program's own
// flags with their defaults, --version names version and revision, and
// /metrics carries fleetcanary_build_info and the standard process metrics.
#include <gnu/libc-version.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/build/build_info.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::Process;

struct CmdResult {
  std::string output;
  int exit_code = -1;
};

CmdResult RunCapture(const std::string& command) {
  CmdResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

struct Daemon {
  std::string program;
  std::string path;
  std::vector<std::string> own_flags;  // each must be listed by --help
};

std::vector<Daemon> Daemons() {
  return {
      {"fleetcanary-controller",
       BinaryPath("controller/server/fleetcanary-controller"),
       {"--grpc_listen", "--http_listen", "--fleet", "--drain_timeout",
        "--insecure", "--admin_tokens"}},
      {"fleetcanary-agent",
       BinaryPath("agent/fleetcanary-agent"),
       {"--agent_id", "--region", "--controller", "--data_dir",
        "--drain_timeout", "--insecure"}},
      {"function-url-emulator",
       BinaryPath("emulator/function-url-emulator"),
       {"--regions", "--scenario", "--base_port", "--max_connections"}},
  };
}

TEST(DaemonCli, HelpListsOwnFlagsWithDefaults) {
  for (const Daemon& d : Daemons()) {
    SCOPED_TRACE(d.program);
    const CmdResult r = RunCapture(d.path + " --help");
    EXPECT_FALSE(absl::StrContains(r.output, "No flags matched")) << r.output;
    for (const std::string& flag : d.own_flags) {
      EXPECT_TRUE(absl::StrContains(r.output, flag)) << flag << "\n"
                                                     << r.output;
    }
    EXPECT_TRUE(absl::StrContains(r.output, "default:")) << r.output;
    // Library flags stay under --helpfull.
    EXPECT_FALSE(absl::StrContains(r.output, "--flagfile")) << r.output;
    const CmdResult full = RunCapture(d.path + " --helpfull");
    EXPECT_TRUE(absl::StrContains(full.output, "--flagfile"));
  }
  // The defaults are the real ones.
  const CmdResult c = RunCapture(Daemons()[0].path + " --help");
  EXPECT_TRUE(absl::StrContains(c.output, "default: \"10s\"")) << c.output;
  const CmdResult e = RunCapture(Daemons()[2].path + " --help");
  EXPECT_TRUE(absl::StrContains(e.output, "default: 20000")) << e.output;
}

// The memory bounds refuse values too small to serve anything, naming the
// flag, before the controller opens a store or a port.
TEST(DaemonCli, ControllerRefusesMemoryBoundsBelowTheirFloor) {
  const std::string base =
      Daemons()[0].path +
      " --insecure --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0"
      " --data_dir=" +
      ::testing::TempDir() + "/daemon_cli_memory";
  const CmdResult quota = RunCapture(base + " --grpc_memory_mib=8");
  EXPECT_EQ(quota.exit_code, 1) << quota.output;
  EXPECT_TRUE(absl::StrContains(
      quota.output, "INVALID_ARGUMENT: grpc_memory_mib: 8 is below 16"))
      << quota.output;
  const CmdResult pending =
      RunCapture(base + " --ingest_max_pending_outcomes=10");
  EXPECT_EQ(pending.exit_code, 1) << pending.output;
  EXPECT_TRUE(absl::StrContains(
      pending.output,
      "INVALID_ARGUMENT: ingest_max_pending_outcomes: 10 is below 1000"))
      << pending.output;
}

TEST(DaemonCli, VersionPrintsVersionAndRevision) {
  for (const Daemon& d : Daemons()) {
    SCOPED_TRACE(d.program);
    const CmdResult r = RunCapture(d.path + " --version");
    EXPECT_EQ(r.output, VersionLine(d.program) + "\n");
    EXPECT_FALSE(absl::StrContains(r.output, "Debug build"));
    EXPECT_EQ(r.exit_code, 0);
  }
}

// Every family a binary serves is documented in docs/metrics.md with the
// same type: a row "| `name` | type |".
void ExpectDocumented(const std::string& body) {
  std::ifstream in(std::string(FLEETCANARY_SOURCE_DIR) + "/docs/metrics.md");
  std::stringstream doc;
  doc << in.rdbuf();
  int families = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::ConsumePrefix(&line, "# TYPE ")) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    ASSERT_EQ(f.size(), 2u) << line;
    ++families;
    EXPECT_TRUE(absl::StrContains(
        doc.str(), absl::StrCat("| `", f[0], "` | ", f[1], " |")))
        << "docs/metrics.md does not document " << f[0] << " (" << f[1] << ")";
  }
  EXPECT_GT(families, 5);
}

void ExpectStandardMetrics(const std::string& body,
                           const std::string& program) {
  ExpectDocumented(body);
  // The controller runs on jemalloc (linked in), the others on glibc's.
  const std::string allocator =
      program == "fleetcanary-controller"
          ? "jemalloc 5."
          : absl::StrCat("glibc ", gnu_get_libc_version());
  EXPECT_TRUE(absl::StrContains(
      body, absl::StrCat("fleetcanary_build_info{program=\"", program,
                         "\",revision=\"", BuildRevision(), "\",version=\"",
                         BuildVersion(), "\",allocator=\"", allocator)))
      << body;
  for (const char* m : {"process_cpu_seconds_total ",
                        "process_resident_memory_bytes ", "process_open_fds ",
                        "process_max_fds ", "process_start_time_seconds "}) {
    EXPECT_TRUE(absl::StrContains(body, m)) << m;
  }
}

TEST(DaemonCli, EveryDaemonExportsBuildInfoAndProcessMetrics) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/daemon_cli_", getpid());
  auto controller =
      Process::Spawn(Daemons()[0].path,
                     {"--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                      "--data_dir=" + dir + "/controller", "--insecure"},
                     dir + ".controller.log");
  ASSERT_TRUE(controller.ok()) << controller.status();
  auto line = (*controller)->WaitForLine("listening ", absl::Seconds(60));
  ASSERT_TRUE(line.ok()) << line.status();
  ExpectStandardMetrics(HttpGet(FieldOf(*line, "http"), "/metrics"),
                        "fleetcanary-controller");

  auto agent = Process::Spawn(
      Daemons()[1].path,
      {"--agent_id=a1", "--region=r1", "--controller=" + FieldOf(*line, "grpc"),
       "--data_dir=" + dir + "/a1", "--http_listen=127.0.0.1:0", "--insecure"},
      dir + ".agent.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto agent_line = (*agent)->WaitForLine("listening ", absl::Seconds(60));
  ASSERT_TRUE(agent_line.ok()) << agent_line.status();
  ExpectStandardMetrics(HttpGet(FieldOf(*agent_line, "http"), "/metrics"),
                        "fleetcanary-agent");

  auto emulator = Process::Spawn(Daemons()[2].path, {"--regions=us-east-1"},
                                 dir + ".emulator.log");
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  auto control = (*emulator)->WaitForLine("control ", absl::Seconds(60));
  ASSERT_TRUE(control.ok()) << control.status();
  std::string url = FieldOf(*control, "url");
  ASSERT_TRUE(absl::StartsWith(url, "http://")) << url;
  url = url.substr(7);
  if (!url.empty() && url.back() == '/') url.pop_back();
  ExpectStandardMetrics(HttpGet(url, "/metrics"), "function-url-emulator");

  for (auto* p : {&*emulator, &*agent, &*controller}) {
    (*p)->Signal(SIGTERM);
    EXPECT_TRUE((*p)->Wait(absl::Seconds(60)).has_value());
  }
}

// A daemon that crashes says so in its log, with the failing thread's stack,
// and still dies of the signal (what Kubernetes reports as the exit).
TEST(DaemonCli, ACrashedDaemonLogsTheSignalAndItsStack) {
  const std::string log = absl::StrCat(::testing::TempDir(), "/daemon_cli_",
                                       getpid(), ".crash.log");
  auto emulator =
      Process::Spawn(Daemons()[2].path, {"--regions=us-east-1"}, log);
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  ASSERT_TRUE((*emulator)->WaitForLine("control ", absl::Seconds(60)).ok());
  (*emulator)->Signal(SIGSEGV);
  const std::optional<int> code = (*emulator)->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 128 + SIGSEGV);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_TRUE(absl::StrContains(text.str(), "*** SIGSEGV received"))
      << text.str();
  EXPECT_TRUE(absl::StrContains(text.str(), "@ ")) << text.str();  // Frames.
}

}  // namespace
}  // namespace fleetcanary
