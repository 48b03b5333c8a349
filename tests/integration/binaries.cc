#include "tests/integration/binaries.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace testing {

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void ScratchDirTest::SetUp() {
  std::string name = absl::StrCat(prefix_, "_", getpid());
  if (per_test_) {
    absl::StrAppend(
        &name, "_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  dir_ = FreshDir(name);
}

void ScratchDirTest::TearDown() {
  if (!HasFailure()) std::filesystem::remove_all(dir_);
}

std::string ScratchDirTest::Write(const std::string& name,
                                  const std::string& text) const {
  return WriteFile(dir_, name, text);
}

std::string EmulatorYaml(const std::vector<std::string>& regions,
                         const std::string& region_yaml,
                         const std::string& extra_yaml) {
  std::string yaml = "regions:\n";
  for (const std::string& r : regions) {
    absl::StrAppend(&yaml, "  - name: ", r, "\n", region_yaml);
  }
  absl::StrAppend(&yaml,
                  "listen_host: 127.0.0.1\nmetrics_period: 1s\n"
                  "ingestion_delay: 1s\n",
                  extra_yaml);
  return yaml;
}

std::string EmulatorProcess::Url(const std::string& kind) const {
  for (const std::string& l : lines) {
    if (l.rfind(kind + " ", 0) == 0) return FieldOf(l, "url");
  }
  return "";
}

std::map<std::string, std::string> EmulatorProcess::CloudWatchUrls() const {
  std::map<std::string, std::string> urls;
  for (const std::string& l : lines) {
    if (l.rfind("cloudwatch ", 0) == 0) {
      urls[FieldOf(l, "region")] = FieldOf(l, "url");
    }
  }
  return urls;
}

std::string EmulatorProcess::ControlAddress() const {
  return std::string(
      absl::StripSuffix(absl::StripPrefix(Url("control"), "http://"), "/"));
}

std::string EmulatorProcess::CanaryFleetYaml(
    const std::vector<std::string>& regions, const std::string& schedules_yaml,
    const FleetUrlOptions& options) const {
  std::map<std::string, std::string> cloudwatch = CloudWatchUrls();
  std::string fleet = "targets:\n  - name: canary\n";
  if (!options.role_arn.empty()) {
    absl::StrAppend(&fleet, "    role_arn: ", options.role_arn, "\n");
  }
  absl::StrAppend(&fleet, "    regions:\n");
  for (const std::string& region : regions) {
    absl::StrAppend(&fleet, "      - region: ", region, "\n        urls:\n");
    for (const std::string& l : lines) {
      if (l.rfind("url ", 0) != 0 || FieldOf(l, "region") != region) continue;
      absl::StrAppend(&fleet, "          - mode: ", FieldOf(l, "mode"),
                      "\n            url: ", FieldOf(l, "url"), "\n");
      if (options.iam_auth) {
        absl::StrAppend(&fleet, "            auth: AWS_IAM\n");
      }
      absl::StrAppend(&fleet,
                      "            cloudwatch:\n              function_name: ",
                      FieldOf(l, "function"),
                      "\n              alias: ", FieldOf(l, "alias"),
                      "\n              endpoint: ", cloudwatch[region], "\n");
    }
  }
  absl::StrAppend(&fleet, schedules_yaml);
  return fleet;
}

absl::StatusOr<EmulatorProcess> StartEmulatorBinary(
    const std::string& config, const std::string& scenario,
    const std::string& log, absl::Duration line_timeout) {
  std::vector<std::string> args = {"--config=" + config};
  if (!scenario.empty()) args.push_back("--scenario=" + scenario);
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Spawn(BinaryPath(kEmulatorBinary), args, log);
  if (!p.ok()) return p.status();
  EmulatorProcess emulator;
  emulator.process = *std::move(p);
  for (;;) {
    absl::StatusOr<std::string> line =
        emulator.process->WaitForLine("", line_timeout);
    if (!line.ok()) return line.status();
    if (*line == "ready") break;
    emulator.lines.push_back(*line);
  }
  return absl::StatusOr<EmulatorProcess>(std::move(emulator));
}

std::string AgentYaml(const std::string& id, const std::string& region,
                      const std::string& controller,
                      const std::string& data_dir, bool cloudwatch_unsigned) {
  return absl::StrCat("agent_id: ", id, "\nregion: ", region,
                      "\ncontroller_address: ", controller,
                      "\ndata_dir: ", data_dir,
                      "\nmetrics_period: 1s\nmetrics_poll_interval: 1s\n"
                      "metrics_ingestion_delay: 2s\n",
                      cloudwatch_unsigned ? "cloudwatch_unsigned: true\n" : "",
                      "heartbeat_interval: 1s\ntarget_allow_loopback: true\n");
}

absl::StatusOr<ListeningProcess> StartListening(
    const std::string& path, const std::vector<std::string>& args,
    const std::string& log, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Process>> p = Process::Spawn(path, args, log);
  if (!p.ok()) return p.status();
  ListeningProcess daemon;
  daemon.process = *std::move(p);
  absl::StatusOr<std::string> line =
      daemon.process->WaitForLine("listening ", timeout);
  if (!line.ok()) return line.status();
  daemon.line = *line;
  daemon.grpc = FieldOf(*line, "grpc");
  daemon.http = FieldOf(*line, "http");
  return absl::StatusOr<ListeningProcess>(std::move(daemon));
}

absl::StatusOr<ListeningProcess> StartLoopbackController(
    const std::vector<std::string>& flags, const std::string& data_dir,
    int grpc_port, const std::string& log, absl::Duration timeout) {
  std::vector<std::string> args = flags;
  args.insert(args.end(), {absl::StrCat("--grpc_listen=127.0.0.1:", grpc_port),
                           "--http_listen=127.0.0.1:0",
                           "--data_dir=" + data_dir, "--heartbeat_interval=1s",
                           "--insecure", "--target_allow_loopback"});
  return StartListening(BinaryPath(kControllerBinary), args, log, timeout);
}

absl::StatusOr<ListeningProcess> StartAgentBinary(const std::string& config,
                                                  const std::string& log,
                                                  absl::Duration timeout) {
  return StartListening(
      BinaryPath(kAgentBinary),
      {"--config=" + config, "--http_listen=127.0.0.1:0", "--insecure"}, log,
      timeout);
}

int RunCanaryctl(const std::vector<std::string>& args, const std::string& out,
                 std::unique_ptr<Process>* keep, const std::string& in) {
  std::string cmd = absl::StrCat("exec '", BinaryPath("cli/canaryctl"), "'");
  for (const std::string& a : args) absl::StrAppend(&cmd, " '", a, "'");
  absl::StrAppend(&cmd, " > '", out, "'");
  if (!in.empty()) absl::StrAppend(&cmd, " < '", in, "'");
  auto p = Process::Spawn("/bin/sh", {"-c", cmd}, out + ".stderr");
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return -1;
  if (keep != nullptr) {
    *keep = std::move(*p);
    return 0;
  }
  std::optional<int> code = (*p)->Wait(absl::Seconds(60));
  EXPECT_TRUE(code.has_value()) << "canaryctl did not finish";
  return code.value_or(-1);
}

}  // namespace testing
}  // namespace fleetcanary
