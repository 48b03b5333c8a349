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

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::FieldOf;
using testing::HttpGet;
using testing::MetricSample;
using testing::Process;

constexpr char kRegion[] = "us-east-1";
constexpr absl::Duration kLifetime = absl::Seconds(20);

// An emulator config (`region_yaml` as for EmulatorYaml) whose CloudWatch
// takes only SigV4 requests signed with credentials its STS issued, for the
// web-identity token "e2e-token", each living `lifetime`.
std::string SignedEmulatorYaml(const std::string& region_yaml,
                               absl::Duration lifetime) {
  return testing::EmulatorYaml(
      {kRegion}, region_yaml,
      absl::StrCat("monitoring_auth: AWS_IAM\n"
                   "credentials:\n  - access_key_id: AKIDNOTGIVENTOAGENT\n"
                   "    secret_access_key: unused-secret\n"
                   "identity:\n  web_identity_tokens: [e2e-token]\n"
                   "  credential_lifetime: ",
                   absl::ToInt64Seconds(lifetime), "s\n"));
}

class AwsCredentialsE2eTest : public testing::ScratchDirTest {
 protected:
  AwsCredentialsE2eTest() : ScratchDirTest("aws_e2e") {}
  void TearDown() override {
    agent_.reset();
    controller_.reset();
    emulator_.process.reset();
    ScratchDirTest::TearDown();
  }

  // Starts the emulator binary with `config` (and `scenario` unless empty),
  // each of its lines before "ready" within `line_timeout`; it must serve
  // STS and CloudWatch.
  void StartEmulator(const std::string& config, const std::string& scenario,
                     absl::Duration line_timeout) {
    auto emu = testing::StartEmulatorBinary(
        config, scenario, dir_ + "/emulator.log", line_timeout);
    ASSERT_TRUE(emu.ok()) << emu.status();
    emulator_ = *std::move(emu);
    sts_ = emulator_.Url("sts");
    ASSERT_FALSE(sts_.empty());
    ASSERT_FALSE(emulator_.Url("cloudwatch").empty());
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

  // The controller (`flags`, then those of a plaintext loopback controller)
  // and then the agent, with web identity only for `agent_role` and signed
  // CloudWatch reads; each must be listening within `timeout`.
  void StartControllerAndAgent(const std::vector<std::string>& flags,
                               const std::string& agent_role,
                               absl::Duration timeout) {
    auto ctl = testing::StartLoopbackController(
        flags, dir_ + "/controller", 0, dir_ + "/controller.log", timeout);
    ASSERT_TRUE(ctl.ok()) << ctl.status();
    controller_ = std::move(ctl->process);
    controller_http_ = ctl->http;
    WebIdentityOnlyEnvironment(sts_, agent_role);
    const std::string agent_config =
        Write("agent.yaml",
              testing::AgentYaml("use1-a", kRegion, ctl->grpc, dir_ + "/agent",
                                 /*cloudwatch_unsigned=*/false));
    auto agent =
        testing::StartAgentBinary(agent_config, dir_ + "/agent.log", timeout);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(agent->process);
    agent_http_ = agent->http;
  }

  std::string sts_, controller_http_, agent_http_;
  testing::EmulatorProcess emulator_;
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
  const std::string emu_config =
      Write("emulator.yaml", SignedEmulatorYaml("", kLifetime));
  StartEmulator(emu_config, scenario, absl::Seconds(60));
  if (HasFatalFailure()) return;
  const std::string fleet_path = Write(
      "fleet.yaml", emulator_.CanaryFleetYaml(
                        {kRegion},
                        "schedules:\n  - id: ladder\n    target: canary\n"
                        "    sizes: [1Ki, 64Ki]\n    rate_per_second: 10\n"
                        "    limits: {timeout: 10s, stall_limit: 5s}\n"));

  // 2. Controller. 3. The agent: no static keys anywhere, only web identity.
  const std::string controller_config =
      Write("controller.yaml", testing::kFastControllerYaml);
  StartControllerAndAgent(
      {"--config=" + controller_config, "--fleet=" + fleet_path},
      "arn:aws:iam::123456789012:role/fleetcanary-agent", absl::Seconds(60));
  if (HasFatalFailure()) return;
  const absl::Time started = absl::Now();

  // 4. Wait (bounded) until the first credentials have expired, the agent
  // refreshed at least twice, and the controller counted phantom errors
  // from samples read after that.
  const std::string region_label = absl::StrCat("region=\"", kRegion, "\"");
  double refreshes = 0, failures = 0, poll_errors = 0, expiry = 0;
  double enabled = -1, phantom_at_expiry = -1, phantom = 0;
  const bool done = testing::WaitUntil(
      [&] {
        const std::string a = HttpGet(agent_http_, "/metrics");
        const std::string c = HttpGet(controller_http_, "/metrics");
        refreshes =
            MetricSample(a, "fleetcanary_agent_credentials_refreshes_total",
                         {region_label})
                .value_or(0);
        failures =
            MetricSample(a,
                         "fleetcanary_agent_credentials_refresh_failures_total",
                         {region_label})
                .value_or(0);
        poll_errors =
            MetricSample(a, "fleetcanary_agent_platform_poll_errors_total",
                         {region_label})
                .value_or(0);
        expiry = MetricSample(a, "fleetcanary_agent_credentials_expiry_seconds",
                              {region_label})
                     .value_or(0);
        enabled = MetricSample(a, "fleetcanary_agent_platform_metrics_enabled",
                               {region_label, "target=\"canary\""})
                      .value_or(-1);
        phantom = MetricSample(c, "fleetcanary_phantom_errors_total",
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
  constexpr absl::Duration kShortLifetime = absl::Seconds(12);
  // 1. Emulator: AWS_IAM Function URLs and signed CloudWatch; credentials
  // it issues live 12 s (refreshed at half their lifetime: 6 s of slack, far
  // beyond a refresh delayed on a loaded machine).
  const std::string emu_config =
      Write("emulator.yaml",
            SignedEmulatorYaml("    auth: AWS_IAM\n", kShortLifetime));
  StartEmulator(emu_config, "", absl::Seconds(60));
  if (HasFatalFailure()) return;
  ASSERT_FALSE(emulator_.Url("control").empty());
  for (const std::string& l : emulator_.lines) {
    if (l.rfind("url ", 0) == 0) {
      EXPECT_EQ(FieldOf(l, "auth"), "AWS_IAM") << l;
    }
  }
  testing::FleetUrlOptions signed_urls;
  signed_urls.role_arn = kTargetRole;
  signed_urls.iam_auth = true;
  const std::string fleet_path =
      Write("fleet.yaml", emulator_.CanaryFleetYaml(
                              {kRegion},
                              "schedules:\n  - id: ladder\n    target: canary\n"
                              "    sizes: [1Ki]\n    rate_per_second: 5\n"
                              "    limits: {timeout: 10s, stall_limit: 5s}\n",
                              signed_urls));

  // 2. Controller. 3. The agent: web identity only, for its own role.
  StartControllerAndAgent({"--fleet=" + fleet_path}, kAgentRole,
                          absl::Seconds(60));
  if (HasFatalFailure()) return;

  // 4. Wait (bounded) until a refreshed session of the target's role (its
  // second or later) has signed both probes and CloudWatch reads.
  const std::string control_hostport = emulator_.ControlAddress();
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
  const std::string a = HttpGet(agent_http_, "/metrics");
  const std::string c = HttpGet(controller_http_, "/metrics");
  const std::string region_label = absl::StrCat("region=\"", kRegion, "\"");
  EXPECT_EQ(MetricSample(a, "fleetcanary_agent_platform_poll_errors_total",
                         {region_label})
                .value_or(-1),
            0);
  EXPECT_EQ(
      MetricSample(a, "fleetcanary_agent_credentials_refresh_failures_total",
                   {region_label})
          .value_or(-1),
      0);
  // The target's metrics are read with its role's credentials, which are
  // held.
  EXPECT_EQ(MetricSample(a, "fleetcanary_agent_platform_metrics_enabled",
                         {region_label, "target=\"canary\""})
                .value_or(-1),
            1);
  for (const char* outcome : {"AGENT_ERROR", "HTTP_4XX"}) {
    EXPECT_EQ(
        MetricSample(c, "fleetcanary_probes_total",
                     {region_label, absl::StrCat("outcome=\"", outcome, "\"")})
            .value_or(0),
        0)
        << outcome;
  }
}

}  // namespace
}  // namespace fleetcanary
