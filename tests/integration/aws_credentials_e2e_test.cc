// End to end with real binaries: an agent with NO static AWS keys, only a
// web-identity token file and AWS_ENDPOINT_URL_STS pointing at the
// emulator's STS, reads SigV4-protected CloudWatch metrics (the emulator's
// monitoring endpoint requires AWS_IAM and accepts only credentials it
// issued, until they expire). Credentials live 20 s, so during the run the
// first ones expire and the agent must have refreshed in time; the
// controller still reports the phantom errors the emulator injects.
//
// Per-target roles: a target with role_arn is probed (AWS_IAM Function URLs)
// and its CloudWatch metrics read with credentials of that role, which the
// agent assumes (STS AssumeRole) with its web-identity credentials and
// refreshes before they expire; the emulator's record of issued sessions
// (GET /_emulator/sessions) shows which role's keys signed what.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::Process;

constexpr char kRegion[] = "us-east-1";
constexpr absl::Duration kLifetime = absl::Seconds(20);

std::optional<double> Sample(const std::string& body, const std::string& family,
                             const std::vector<std::string>& labels) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family + "{", 0) != 0 && line.rfind(family + " ", 0) != 0) {
      continue;
    }
    bool all = true;
    for (const std::string& l : labels) {
      all &= line.find(l) != std::string::npos;
    }
    if (!all) continue;
    double v = 0;
    if (std::sscanf(line.c_str() + line.rfind(' ') + 1, "%lf", &v) == 1) {
      return v;
    }
  }
  return std::nullopt;
}

class AwsCredentialsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/aws_e2e_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    agent_.reset();
    controller_.reset();
    emulator_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // Starts the emulator binary with `config`; fills `lines` with the lines
  // it printed before "ready".
  void StartEmulator(const std::string& config, std::vector<std::string>* lines,
                     const std::string& scenario = "") {
    std::vector<std::string> args = {"--config=" + config};
    if (!scenario.empty()) args.push_back("--scenario=" + scenario);
    auto emu = Process::Spawn(BinaryPath("emulator/function-url-emulator"),
                              args, dir_ + "/emulator.log");
    ASSERT_TRUE(emu.ok()) << emu.status();
    emulator_ = std::move(*emu);
    for (;;) {
      auto line = emulator_->WaitForLine("", absl::Seconds(20));
      ASSERT_TRUE(line.ok()) << line.status();
      if (*line == "ready") break;
      lines->push_back(*line);
    }
  }

  // An environment with no AWS keys anywhere, only web identity for
  // `agent_role` through the emulator's STS. Children inherit it.
  void WebIdentityOnlyEnvironment(const std::string& sts,
                                  const std::string& agent_role) {
    for (const char* name :
         {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
          "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL",
          "AWS_ENDPOINT_URL_CLOUDWATCH"}) {
      unsetenv(name);
    }
    setenv("HOME", dir_.c_str(), 1);
    setenv("AWS_CONFIG_FILE", "/dev/null", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("AWS_ROLE_ARN", agent_role.c_str(), 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", Write("token", "e2e-token\n").c_str(),
           1);
    setenv("AWS_ENDPOINT_URL_STS", sts.c_str(), 1);
  }

  std::string dir_;
  std::unique_ptr<Process> emulator_;
  std::unique_ptr<Process> controller_;
  std::unique_ptr<Process> agent_;
};

TEST_F(AwsCredentialsE2eTest,
       WebIdentityOnlyAgentReadsSignedMetricsAcrossExpiry) {
  // 1. Emulator: signed CloudWatch, STS issuing 20 s credentials for one
  // token, phantom errors on the streaming alias from the start.
  const std::string scenario =
      Write("scenario.yaml",
            "name: e2e-phantom\nseed: 11\nfaults:\n  - name: phantom\n"
            "    regions: [us-east-1]\n    modes: [RESPONSE_STREAM]\n"
            "    probability: {base: 0.2}\n    effect: phantom_error\n");
  const std::string emu_config = Write(
      "emulator.yaml",
      absl::StrCat("regions:\n  - name: ", kRegion,
                   "\nlisten_host: 127.0.0.1\nmetrics_period: 1s\n"
                   "ingestion_delay: 1s\nmonitoring_auth: AWS_IAM\n"
                   "credentials:\n  - access_key_id: AKIDNOTGIVENTOAGENT\n"
                   "    secret_access_key: unused-secret\n"
                   "identity:\n  web_identity_tokens: [e2e-token]\n"
                   "  credential_lifetime: ",
                   absl::ToInt64Seconds(kLifetime), "s\n"));
  auto emu =
      Process::Spawn(BinaryPath("emulator/function-url-emulator"),
                     {"--config=" + emu_config, "--scenario=" + scenario},
                     dir_ + "/emulator.log");
  ASSERT_TRUE(emu.ok()) << emu.status();
  emulator_ = std::move(*emu);
  std::vector<std::string> lines;
  for (;;) {
    auto line = emulator_->WaitForLine("", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    if (*line == "ready") break;
    lines.push_back(*line);
  }
  std::string sts, cloudwatch;
  for (const std::string& l : lines) {
    if (l.rfind("sts ", 0) == 0) sts = FieldOf(l, "url");
    if (l.rfind("cloudwatch ", 0) == 0) cloudwatch = FieldOf(l, "url");
  }
  ASSERT_FALSE(sts.empty());
  ASSERT_FALSE(cloudwatch.empty());
  std::string fleet = absl::StrCat(
      "targets:\n  - name: canary\n    regions:\n      - region: ", kRegion,
      "\n        urls:\n");
  for (const std::string& l : lines) {
    if (l.rfind("url ", 0) != 0) continue;
    absl::StrAppend(&fleet, "          - mode: ", FieldOf(l, "mode"),
                    "\n            url: ", FieldOf(l, "url"),
                    "\n            cloudwatch:\n              function_name: ",
                    FieldOf(l, "function"),
                    "\n              alias: ", FieldOf(l, "alias"),
                    "\n              endpoint: ", cloudwatch, "\n");
  }
  absl::StrAppend(&fleet,
                  "schedules:\n  - id: ladder\n    target: canary\n"
                  "    sizes: [1Ki, 64Ki]\n    rate_per_second: 10\n"
                  "    limits: {timeout: 10s, stall_limit: 5s}\n");
  const std::string fleet_path = Write("fleet.yaml", fleet);

  // 2. Controller.
  const std::string controller_config =
      Write("controller.yaml",
            "heartbeat_interval: 1s\nmetrics_period: 1s\nmetrics_settle: 3s\n");
  auto ctl = Process::Spawn(
      BinaryPath("controller/server/fleetcanary-controller"),
      {"--config=" + controller_config, "--fleet=" + fleet_path,
       "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
       "--data_dir=" + dir_ + "/controller", "--heartbeat_interval=1s",
       "--insecure", "--target_allow_loopback"},
      dir_ + "/controller.log");
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  controller_ = std::move(*ctl);
  auto listening = controller_->WaitForLine("listening ", absl::Seconds(60));
  ASSERT_TRUE(listening.ok()) << listening.status();
  const std::string grpc = FieldOf(*listening, "grpc");
  const std::string controller_http = FieldOf(*listening, "http");

  // 3. The agent: no static keys anywhere, only web identity. The child
  // inherits this environment.
  for (const char* name :
       {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CLOUDWATCH"}) {
    unsetenv(name);
  }
  setenv("HOME", dir_.c_str(), 1);
  setenv("AWS_CONFIG_FILE", "/dev/null", 1);
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fleetcanary-agent", 1);
  setenv("AWS_WEB_IDENTITY_TOKEN_FILE", Write("token", "e2e-token\n").c_str(),
         1);
  setenv("AWS_ENDPOINT_URL_STS", sts.c_str(), 1);
  const std::string agent_config = Write(
      "agent.yaml",
      absl::StrCat("agent_id: use1-a\nregion: ", kRegion,
                   "\ncontroller_address: ", grpc, "\ndata_dir: ", dir_,
                   "/agent\nmetrics_period: 1s\nmetrics_poll_interval: 1s\n"
                   "metrics_ingestion_delay: 2s\nheartbeat_interval: 1s\n"
                   "target_allow_loopback: true\n"));
  auto agent = Process::Spawn(
      BinaryPath("agent/runner/fleetcanary-agent"),
      {"--config=" + agent_config, "--http_listen=127.0.0.1:0", "--insecure"},
      dir_ + "/agent.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  auto agent_line = agent_->WaitForLine("listening ", absl::Seconds(60));
  ASSERT_TRUE(agent_line.ok()) << agent_line.status();
  const std::string agent_http = FieldOf(*agent_line, "http");
  const absl::Time started = absl::Now();

  // 4. Wait (bounded) until the first credentials have expired, the agent
  // refreshed at least twice, and the controller counted phantom errors
  // from samples read after that.
  const std::string region_label = absl::StrCat("region=\"", kRegion, "\"");
  double refreshes = 0, failures = 0, poll_errors = 0, expiry = 0;
  double enabled = -1, phantom_at_expiry = -1, phantom = 0;
  const bool done = testing::WaitUntil(
      [&] {
        const std::string a = HttpGet(agent_http, "/metrics");
        const std::string c = HttpGet(controller_http, "/metrics");
        refreshes = Sample(a, "fleetcanary_agent_credentials_refreshes_total",
                           {region_label})
                        .value_or(0);
        failures =
            Sample(a, "fleetcanary_agent_credentials_refresh_failures_total",
                   {region_label})
                .value_or(0);
        poll_errors = Sample(a, "fleetcanary_agent_platform_poll_errors_total",
                             {region_label})
                          .value_or(0);
        expiry = Sample(a, "fleetcanary_agent_credentials_expiry_seconds",
                        {region_label})
                     .value_or(0);
        enabled = Sample(a, "fleetcanary_agent_platform_metrics_enabled",
                         {region_label, "target=\"canary\""})
                      .value_or(-1);
        phantom = Sample(c, "fleetcanary_phantom_errors_total",
                         {region_label, "mode=\"stream\""})
                      .value_or(0);
        // The first credentials were issued after `started`; once a full
        // lifetime has passed they are expired at the emulator.
        if (phantom_at_expiry < 0 && absl::Now() > started + kLifetime) {
          phantom_at_expiry = phantom;
        }
        return phantom_at_expiry >= 0 && refreshes >= 3 &&
               phantom > phantom_at_expiry;
      },
      absl::Seconds(120));
  EXPECT_TRUE(done) << "refreshes=" << refreshes
                    << " phantom_at_expiry=" << phantom_at_expiry
                    << " phantom=" << phantom << " (logs in " << dir_ << ")";
  EXPECT_GE(refreshes, 3);
  EXPECT_EQ(failures, 0);
  // Every CloudWatch read was signed with valid credentials.
  EXPECT_EQ(poll_errors, 0);
  EXPECT_EQ(enabled, 1);
  EXPECT_GT(expiry, 0);
  EXPECT_LE(expiry, absl::ToDoubleSeconds(kLifetime));
  EXPECT_GT(phantom, 0);
}

TEST_F(AwsCredentialsE2eTest, TargetRoleSignsItsProbesAndReadsAcrossRefresh) {
  constexpr char kAgentRole[] =
      "arn:aws:iam::123456789012:role/fleetcanary-agent";
  constexpr char kTargetRole[] =
      "arn:aws:iam::210987654321:role/canary-cross-account";
  constexpr absl::Duration kShortLifetime = absl::Seconds(6);
  // 1. Emulator: AWS_IAM Function URLs and signed CloudWatch; credentials
  // it issues live 6 s (refreshed at half their lifetime).
  const std::string emu_config =
      Write("emulator.yaml",
            absl::StrCat("regions:\n  - name: ", kRegion,
                         "\n    auth: AWS_IAM\nlisten_host: 127.0.0.1\n"
                         "metrics_period: 1s\ningestion_delay: 1s\n"
                         "monitoring_auth: AWS_IAM\n"
                         "credentials:\n"
                         "  - access_key_id: AKIDNOTGIVENTOAGENT\n"
                         "    secret_access_key: unused-secret\n"
                         "identity:\n  web_identity_tokens: [e2e-token]\n"
                         "  credential_lifetime: ",
                         absl::ToInt64Seconds(kShortLifetime), "s\n"));
  std::vector<std::string> lines;
  StartEmulator(emu_config, &lines);
  if (HasFatalFailure()) return;
  std::string sts, cloudwatch, control;
  for (const std::string& l : lines) {
    if (l.rfind("sts ", 0) == 0) sts = FieldOf(l, "url");
    if (l.rfind("cloudwatch ", 0) == 0) cloudwatch = FieldOf(l, "url");
    if (l.rfind("control ", 0) == 0) control = FieldOf(l, "url");
  }
  ASSERT_FALSE(sts.empty());
  ASSERT_FALSE(cloudwatch.empty());
  ASSERT_FALSE(control.empty());
  std::string fleet = absl::StrCat(
      "targets:\n  - name: canary\n    role_arn: ", kTargetRole,
      "\n    regions:\n      - region: ", kRegion, "\n        urls:\n");
  for (const std::string& l : lines) {
    if (l.rfind("url ", 0) != 0) continue;
    EXPECT_EQ(FieldOf(l, "auth"), "AWS_IAM") << l;
    absl::StrAppend(
        &fleet, "          - mode: ", FieldOf(l, "mode"),
        "\n            url: ", FieldOf(l, "url"), "\n            auth: AWS_IAM",
        "\n            cloudwatch:\n              function_name: ",
        FieldOf(l, "function"), "\n              alias: ", FieldOf(l, "alias"),
        "\n              endpoint: ", cloudwatch, "\n");
  }
  absl::StrAppend(&fleet,
                  "schedules:\n  - id: ladder\n    target: canary\n"
                  "    sizes: [1Ki]\n    rate_per_second: 5\n"
                  "    limits: {timeout: 10s, stall_limit: 5s}\n");
  const std::string fleet_path = Write("fleet.yaml", fleet);

  // 2. Controller.
  auto ctl = Process::Spawn(
      BinaryPath("controller/server/fleetcanary-controller"),
      {"--fleet=" + fleet_path, "--grpc_listen=127.0.0.1:0",
       "--http_listen=127.0.0.1:0", "--data_dir=" + dir_ + "/controller",
       "--heartbeat_interval=1s", "--insecure", "--target_allow_loopback"},
      dir_ + "/controller.log");
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  controller_ = std::move(*ctl);
  auto listening = controller_->WaitForLine("listening ", absl::Seconds(20));
  ASSERT_TRUE(listening.ok()) << listening.status();
  const std::string grpc = FieldOf(*listening, "grpc");
  const std::string controller_http = FieldOf(*listening, "http");

  // 3. The agent: web identity only, for its own role.
  WebIdentityOnlyEnvironment(sts, kAgentRole);
  const std::string agent_config = Write(
      "agent.yaml",
      absl::StrCat("agent_id: use1-a\nregion: ", kRegion,
                   "\ncontroller_address: ", grpc, "\ndata_dir: ", dir_,
                   "/agent\nmetrics_period: 1s\nmetrics_poll_interval: 1s\n"
                   "metrics_ingestion_delay: 2s\nheartbeat_interval: 1s\n"
                   "target_allow_loopback: true\n"));
  auto agent = Process::Spawn(
      BinaryPath("agent/runner/fleetcanary-agent"),
      {"--config=" + agent_config, "--http_listen=127.0.0.1:0", "--insecure"},
      dir_ + "/agent.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  auto agent_line = agent_->WaitForLine("listening ", absl::Seconds(20));
  ASSERT_TRUE(agent_line.ok()) << agent_line.status();
  const std::string agent_http = FieldOf(*agent_line, "http");

  // 4. Wait (bounded) until a refreshed session of the target's role (its
  // second or later) has signed both probes and CloudWatch reads.
  const std::string control_hostport(
      absl::StripSuffix(absl::StripPrefix(control, "http://"), "/"));
  struct Role {
    int sessions = 0;
    uint64_t lambda = 0, monitoring = 0, sts = 0;
    uint64_t refreshed_lambda = 0, refreshed_monitoring = 0;
  };
  std::map<std::string, Role> roles;
  const bool done = testing::WaitUntil(
      [&] {
        roles.clear();
        std::vector<nlohmann::json> sessions;
        for (absl::string_view line :
             absl::StrSplit(HttpGet(control_hostport, "/_emulator/sessions"),
                            '\n', absl::SkipEmpty())) {
          sessions.push_back(nlohmann::json::parse(line, nullptr, false));
        }
        // Sessions come by access key id; order a role's by expiration.
        std::sort(sessions.begin(), sessions.end(),
                  [](const nlohmann::json& a, const nlohmann::json& b) {
                    return a.value("expiration", "") <
                           b.value("expiration", "");
                  });
        for (const nlohmann::json& j : sessions) {
          if (j.is_discarded()) continue;
          Role& r = roles[j.value("role_arn", "")];
          const nlohmann::json uses = j.value("uses", nlohmann::json::object());
          const uint64_t lambda = uses.value("lambda", 0ull);
          const uint64_t monitoring = uses.value("monitoring", 0ull);
          r.lambda += lambda;
          r.monitoring += monitoring;
          r.sts += uses.value("sts", 0ull);
          if (++r.sessions >= 2) {
            r.refreshed_lambda += lambda;
            r.refreshed_monitoring += monitoring;
          }
        }
        const Role& t = roles[kTargetRole];
        return t.refreshed_lambda > 0 && t.refreshed_monitoring > 0;
      },
      absl::Seconds(90));
  const Role agent_role = roles[kAgentRole];
  const Role target_role = roles[kTargetRole];
  EXPECT_TRUE(done) << "target role: " << target_role.sessions
                    << " sessions, lambda " << target_role.lambda
                    << ", monitoring " << target_role.monitoring << " (logs in "
                    << dir_ << ")";
  // The agent's own credentials only asked STS for the target's role; the
  // target's role signed every probe and every CloudWatch read.
  EXPECT_GT(agent_role.sessions, 0);
  EXPECT_GT(agent_role.sts, 0u);
  EXPECT_EQ(agent_role.lambda, 0u);
  EXPECT_EQ(agent_role.monitoring, 0u);
  EXPECT_GE(target_role.sessions, 2);
  EXPECT_EQ(target_role.sts, 0u);
  EXPECT_EQ(roles.size(), 2u);

  // Every scheduled probe so far succeeded (no AGENT_ERROR for want of
  // credentials, no 403 from the Function URL) and reads never failed.
  const std::string a = HttpGet(agent_http, "/metrics");
  const std::string c = HttpGet(controller_http, "/metrics");
  const std::string region_label = absl::StrCat("region=\"", kRegion, "\"");
  EXPECT_EQ(
      Sample(a, "fleetcanary_agent_platform_poll_errors_total", {region_label})
          .value_or(-1),
      0);
  EXPECT_EQ(Sample(a, "fleetcanary_agent_credentials_refresh_failures_total",
                   {region_label})
                .value_or(-1),
            0);
  // The target's metrics are read with its role's credentials, which are
  // held.
  EXPECT_EQ(Sample(a, "fleetcanary_agent_platform_metrics_enabled",
                   {region_label, "target=\"canary\""})
                .value_or(-1),
            1);
  for (const char* outcome : {"AGENT_ERROR", "HTTP_4XX"}) {
    EXPECT_EQ(Sample(c, "fleetcanary_probes_total",
                     {region_label, absl::StrCat("outcome=\"", outcome, "\"")})
                  .value_or(0),
              0)
        << outcome;
  }
}

}  // namespace
}  // namespace fleetcanary
