// Live verdicts end to end: the function-url-emulator binary replays the
// February 2024 streaming incident (tests/integration/verdicts_incident.yaml,
// accelerated 2880x), real fleetcanary-controller and fleetcanary-agent
// processes probe it and read its CloudWatch metrics, and the controller's
// verdict service must
//   - raise PHANTOM_ERRORS to REGRESSION for the streaming alias of
//     us-east-1 (clients see perfect 200s: STREAM_HEALTH stays HEALTHY),
//   - find SIZE_TREND and MODE_DIFFERENCE there (platform view: phantom
//     errors per invocation, attributed to sizes by size rotation),
//   - raise nothing for BUFFERED nor for eu-west-1,
//   - after the hotfix confirm the fix (RECOVERING -> FIX_CONFIRMED) with a
//     change-time interval containing the true hotfix time,
// and export fleetcanary_verdict / fleetcanary_phantom_errors_total on
// /metrics while it runs. The command lines are the demo's.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "controller/store/store.h"
#include "emulator/scenario/engine.h"
#include "fleetcanary/v1/scenario.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::Process;

constexpr char kAffected[] = "us-east-1";
constexpr char kHealthy[] = "eu-west-1";

absl::Time FromTs(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::Duration FromDur(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

std::string Fmt(absl::Time t) {
  return absl::FormatTime("%H:%M:%E3S", t, absl::UTCTimeZone());
}

// Value of the /metrics sample of `family` whose labels include every
// name="value" in `labels`; nullopt when there is none.
std::optional<double> Sample(const std::string& body, const std::string& family,
                             const std::vector<std::string>& labels) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family + "{", 0) != 0) continue;
    bool all = true;
    for (const std::string& l : labels)
      all &= line.find(l) != std::string::npos;
    if (!all) continue;
    double v = 0;
    if (std::sscanf(line.c_str() + line.rfind(' ') + 1, "%lf", &v) == 1) {
      return v;
    }
  }
  return std::nullopt;
}

class VerdictsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/verdicts_e2e_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    agents_.clear();
    controller_.reset();
    emulator_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
  std::unique_ptr<Process> emulator_;
  std::unique_ptr<Process> controller_;
  std::vector<std::unique_ptr<Process>> agents_;
};

TEST_F(VerdictsE2eTest, Feb2024IncidentIsDetectedAttributedAndFixConfirmed) {
  // FLEETCANARY_VERDICTS_E2E_SCENARIO replays another scenario of the same
  // shape by hand, e.g. the demo's emulator/scenarios/feb2024-incident.yaml
  // (about 4 minutes).
  const char* override_path = std::getenv("FLEETCANARY_VERDICTS_E2E_SCENARIO");
  const std::string scenario_path =
      override_path != nullptr && *override_path != '\0'
          ? std::string(override_path)
          : std::string(FLEETCANARY_SOURCE_DIR) +
                "/tests/integration/verdicts_incident.yaml";
  auto scenario = emulator::LoadScenarioFile(scenario_path);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_EQ(scenario->faults_size(), 1);
  const v1::FaultRule& rule = scenario->faults(0);
  const double scale = scenario->time_scale();
  // Scenario offsets of the onset and the hotfix, in real time.
  const absl::Duration onset_offset =
      (FromTs(rule.start_time()) - FromTs(scenario->epoch())) / scale;
  const absl::Duration hotfix_offset =
      (FromTs(rule.end_time()) - FromTs(scenario->epoch())) / scale;

  // 1. The emulator: two regions, one-second platform metrics.
  const std::string emu_config = Write(
      "emulator.yaml",
      absl::StrCat("regions:\n  - name: ", kAffected, "\n  - name: ", kHealthy,
                   "\nlisten_host: 127.0.0.1\nmetrics_period: 1s\n"
                   "ingestion_delay: 1s\n"));
  auto emu =
      Process::Spawn(BinaryPath("emulator/function-url-emulator"),
                     {"--config=" + emu_config, "--scenario=" + scenario_path},
                     dir_ + "/emulator.log");
  ASSERT_TRUE(emu.ok()) << emu.status();
  emulator_ = std::move(*emu);
  std::vector<std::string> endpoint_lines;
  for (;;) {
    auto line = emulator_->WaitForLine("", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    if (*line == "ready") break;
    endpoint_lines.push_back(*line);
  }
  std::map<std::string, std::string> cloudwatch;
  std::string control;
  std::string fleet = "targets:\n  - name: canary\n    regions:\n";
  for (const char* region : {kAffected, kHealthy}) {
    absl::StrAppend(&fleet, "      - region: ", region, "\n        urls:\n");
    for (const std::string& l : endpoint_lines) {
      if (l.rfind("cloudwatch ", 0) == 0) {
        cloudwatch[FieldOf(l, "region")] = FieldOf(l, "url");
      }
      if (l.rfind("control ", 0) == 0) control = FieldOf(l, "url");
    }
    for (const std::string& l : endpoint_lines) {
      if (l.rfind("url ", 0) != 0 || FieldOf(l, "region") != region) continue;
      absl::StrAppend(
          &fleet, "          - mode: ", FieldOf(l, "mode"),
          "\n            url: ", FieldOf(l, "url"),
          "\n            cloudwatch:\n              function_name: ",
          FieldOf(l, "function"),
          "\n              alias: ", FieldOf(l, "alias"),
          "\n              endpoint: ", cloudwatch[region], "\n");
    }
  }
  ASSERT_EQ(cloudwatch.size(), 2u);
  ASSERT_FALSE(control.empty());
  // Size rotation lets the controller attribute phantom errors to sizes.
  // 25 probes a second per stream (100 per alias): the fix test of phantom
  // errors (p_bad = 2 x p0_floor = 0.002) needs ~2,100 clean invocations
  // after RECOVERING, i.e. ~21 s of this local, fast emulator - the
  // statistics are not relaxed to fit the test.
  absl::StrAppend(&fleet,
                  "schedules:\n  - id: ladder\n    target: canary\n"
                  "    sizes: [2, 1Ki, 64Ki, 256Ki]\n"
                  "    rate_per_second: 25\n    size_rotation: true\n"
                  "    limits: {timeout: 10s, stall_limit: 5s}\n"
                  "    transport: {keep_alive: true}\n");
  const std::string fleet_path = Write("fleet.yaml", fleet);

  // 2. The controller, with the demo's detection settings.
  const std::string controller_config =
      Write("controller.yaml",
            "heartbeat_interval: 1s\nmetrics_period: 1s\nmetrics_settle: 3s\n"
            "detection:\n  false_alarms_per_month: 1\n  p0_floor: 0.001\n"
            "  comparison_bucket: 5s\n  trend_window: 10s\n");
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
  const std::string http = FieldOf(*listening, "http");

  // 3. One agent per region, reading the emulator's CloudWatch unsigned.
  for (const auto& [region, id] :
       std::vector<std::pair<std::string, std::string>>{{kAffected, "use1-a"},
                                                        {kHealthy, "euw1-a"}}) {
    const std::string config =
        Write(id + ".yaml",
              absl::StrCat(
                  "agent_id: ", id, "\nregion: ", region,
                  "\ncontroller_address: ", grpc, "\ndata_dir: ", dir_, "/", id,
                  "\nmetrics_period: 1s\nmetrics_poll_interval: 1s\n"
                  "metrics_ingestion_delay: 2s\ncloudwatch_unsigned: true\n"
                  "heartbeat_interval: 1s\ntarget_allow_loopback: true\n"));
    auto agent = Process::Spawn(
        BinaryPath("agent/runner/fleetcanary-agent"),
        {"--config=" + config, "--http_listen=127.0.0.1:0", "--insecure"},
        dir_ + "/" + id + ".log");
    ASSERT_TRUE(agent.ok()) << agent.status();
    ASSERT_TRUE((*agent)->WaitForLine("listening ", absl::Seconds(60)).ok());
    agents_.push_back(std::move(*agent));
  }

  // 4. Watch /metrics until the fix is confirmed (bounded).
  const absl::Time started = absl::Now();
  const absl::Time deadline = started + hotfix_offset + absl::Seconds(75);
  bool saw_regression_series = false, saw_phantom_total = false;
  bool confirmed = false;
  absl::Time regression_seen = absl::InfiniteFuture();
  absl::Time confirmed_seen = absl::InfiniteFuture();
  double phantom_total = 0, healthy_phantom_total = 0;
  // Each scrape is the event checked; the bound follows the scenario's
  // own (real-time) timeline.
  testing::WaitUntil(
      [&] {
        const std::string body = HttpGet(http, "/metrics");
        const std::vector<std::string> stream = {
            "kind=\"PHANTOM_ERRORS\"",
            absl::StrCat("region=\"", kAffected, "\""), "mode=\"stream\""};
        auto with_state = [&](const char* state) {
          std::vector<std::string> l = stream;
          l.push_back(absl::StrCat("state=\"", state, "\""));
          return Sample(body, "fleetcanary_verdict", l).value_or(0) == 1;
        };
        if (!saw_regression_series && with_state("REGRESSION")) {
          saw_regression_series = true;
          regression_seen = absl::Now();
        }
        confirmed = with_state("FIX_CONFIRMED") ||
                    (saw_regression_series && with_state("HEALTHY"));
        if (confirmed) confirmed_seen = absl::Now();
        auto total = Sample(
            body, "fleetcanary_phantom_errors_total",
            {absl::StrCat("region=\"", kAffected, "\""), "mode=\"stream\""});
        if (total) {
          saw_phantom_total = true;
          phantom_total = *total;
        }
        healthy_phantom_total =
            Sample(body, "fleetcanary_phantom_errors_total",
                   {absl::StrCat("region=\"", kHealthy, "\"")})
                .value_or(0);
        return confirmed;
      },
      deadline - absl::Now());
  EXPECT_TRUE(saw_regression_series)
      << "fleetcanary_verdict never showed PHANTOM_ERRORS REGRESSION";
  EXPECT_TRUE(saw_phantom_total)
      << "fleetcanary_phantom_errors_total never appeared";
  EXPECT_GT(phantom_total, 0);
  EXPECT_EQ(healthy_phantom_total, 0);
  EXPECT_TRUE(confirmed) << "no FIX_CONFIRMED within the deadline";

  // 5. Ground truth: when the scenario was loaded (wall time).
  const std::string truth_body =
      HttpGet(std::string(absl::StripSuffix(
                  absl::StripPrefix(control, "http://"), "/")),
              "/_emulator/truth");
  absl::Time loaded = absl::InfinitePast();
  uint64_t injected = 0;
  for (absl::string_view line : absl::StrSplit(truth_body, '\n')) {
    if (line.empty()) continue;
    v1::InjectedFault f;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(std::string(line), &f).ok())
        << line;
    EXPECT_EQ(f.region(), kAffected);
    EXPECT_EQ(f.mode(), v1::RESPONSE_STREAM);
    ++injected;
    loaded = FromTs(f.time()) - FromDur(f.scenario_elapsed()) / scale;
  }
  ASSERT_GT(injected, 0u);
  const absl::Time true_onset = loaded + onset_offset;
  const absl::Time true_hotfix = loaded + hotfix_offset;

  // 6. Drain everything, then read the verdict history.
  for (auto& a : agents_) a->Signal(SIGTERM);
  for (auto& a : agents_) EXPECT_EQ(a->Wait(absl::Seconds(30)), 0);
  controller_->Signal(SIGTERM);
  EXPECT_EQ(controller_->Wait(absl::Seconds(20)), 0);
  auto store =
      controller::CreateSqliteStore({dir_ + "/controller/controller.db"});
  ASSERT_TRUE(store.ok()) << store.status();
  auto history = (*store)->ListVerdicts(absl::InfinitePast(), 100000);
  ASSERT_TRUE(history.ok()) << history.status();

  std::map<std::string, std::vector<const v1::Verdict*>> by_key;
  std::vector<std::string> timeline;
  for (const v1::Verdict& v : *history) {
    const std::string key =
        absl::StrCat(v1::VerdictKind_Name(v.kind()), " ", v.key().region(), " ",
                     v.key().mode() == v1::INVOKE_MODE_UNSPECIFIED
                         ? ""
                         : v1::InvokeMode_Name(v.key().mode()),
                     " ", v.key().size_class());
    by_key[key].push_back(&v);
    timeline.push_back(
        absl::StrCat("t=", absl::FormatDuration(FromTs(v.since()) - loaded),
                     " ", key, ": ", v1::VerdictState_Name(v.previous_state()),
                     " -> ", v1::VerdictState_Name(v.state())));
    // Nothing may alarm in the healthy region, in buffered mode, or on the
    // client side (the defect is invisible to clients).
    const bool alarm = v.state() == v1::SUSPECT || v.state() == v1::REGRESSION;
    EXPECT_FALSE(alarm &&
                 (v.key().region() == kHealthy ||
                  v.key().mode() == v1::BUFFERED ||
                  v.kind() == v1::STREAM_HEALTH || v.kind() == v1::HARD_DOWN))
        << "unexpected alarm: " << timeline.back();
  }
  std::printf(
      "verdict timeline (t = since scenario start; onset t=%s, "
      "hotfix t=%s):\n  %s\n",
      absl::FormatDuration(onset_offset).c_str(),
      absl::FormatDuration(hotfix_offset).c_str(),
      absl::StrJoin(timeline, "\n  ").c_str());

  auto first = [&](const std::string& key,
                   v1::VerdictState state) -> const v1::Verdict* {
    for (const v1::Verdict* v : by_key[key]) {
      if (v->state() == state) return v;
    }
    return nullptr;
  };
  const std::string phantom =
      absl::StrCat("PHANTOM_ERRORS ", kAffected, " RESPONSE_STREAM ");
  const v1::Verdict* regression = first(phantom, v1::REGRESSION);
  ASSERT_NE(regression, nullptr) << "no PHANTOM_ERRORS REGRESSION";
  const absl::Duration detection = FromTs(regression->since()) - true_onset;
  EXPECT_GE(detection, -absl::Seconds(1));
  EXPECT_LT(detection, absl::Seconds(20));

  const std::string trend =
      absl::StrCat("SIZE_TREND ", kAffected, " RESPONSE_STREAM ");
  const v1::Verdict* trend_regression = first(trend, v1::REGRESSION);
  ASSERT_NE(trend_regression, nullptr) << "no SIZE_TREND REGRESSION";
  EXPECT_NE(trend_regression->evidence().summary().find("platform view"),
            std::string::npos);
  const v1::Verdict* mode_regression = first(
      absl::StrCat("MODE_DIFFERENCE ", kAffected, "  256KiB"), v1::REGRESSION);
  ASSERT_NE(mode_regression, nullptr) << "no MODE_DIFFERENCE REGRESSION";
  EXPECT_GT(mode_regression->evidence().rate_ratio(), 1);

  ASSERT_NE(first(phantom, v1::RECOVERING), nullptr);
  const v1::Verdict* fix = first(phantom, v1::FIX_CONFIRMED);
  ASSERT_NE(fix, nullptr) << "no FIX_CONFIRMED";
  const v1::Evidence& ev = fix->evidence();
  const absl::Time lower = FromTs(ev.change_interval().lower());
  const absl::Time upper = FromTs(ev.change_interval().upper());
  // The engine dates platform periods by their start: the change lies after
  // the start of the `lower` period and before the end of the period after
  // `upper` (the first post-change period may still hold pre-change
  // invocations), i.e. in [lower, upper + 2 periods).
  EXPECT_LE(lower, true_hotfix);
  EXPECT_LT(true_hotfix, upper + absl::Seconds(2));
  EXPECT_GT(FromTs(fix->since()), true_hotfix);
  EXPECT_GT(ev.proven_upper_bound(), 0);

  std::printf(
      "wall clock: PHANTOM_ERRORS REGRESSION on /metrics %s after the true "
      "onset; FIX_CONFIRMED on /metrics %s after the true hotfix\n",
      absl::FormatDuration(regression_seen - true_onset).c_str(),
      absl::FormatDuration(confirmed_seen - true_hotfix).c_str());
  std::printf(
      "figures: %llu faults injected; phantom errors counted %.0f\n"
      "  PHANTOM_ERRORS REGRESSION %s after the true onset (%s), evidence: "
      "%llu phantom errors in %llu invocations since the estimated onset\n"
      "  SIZE_TREND REGRESSION %s after onset; MODE_DIFFERENCE 256KiB "
      "REGRESSION %s after onset (RR %.3g)\n"
      "  FIX_CONFIRMED %s after the true hotfix (%s); estimated change %s, "
      "interval [%s, %s]; proven rate < %.3g (%llu clean probes from %s)\n",
      static_cast<unsigned long long>(injected), phantom_total,
      absl::FormatDuration(detection).c_str(), Fmt(true_onset).c_str(),
      static_cast<unsigned long long>(regression->evidence().failures()),
      static_cast<unsigned long long>(regression->evidence().trials()),
      absl::FormatDuration(FromTs(trend_regression->since()) - true_onset)
          .c_str(),
      absl::FormatDuration(FromTs(mode_regression->since()) - true_onset)
          .c_str(),
      mode_regression->evidence().rate_ratio(),
      absl::FormatDuration(FromTs(fix->since()) - true_hotfix).c_str(),
      Fmt(true_hotfix).c_str(), Fmt(FromTs(ev.change_time())).c_str(),
      Fmt(lower).c_str(), Fmt(upper).c_str(), ev.proven_upper_bound(),
      static_cast<unsigned long long>(ev.trials()),
      Fmt(FromTs(ev.confirmation_start())).c_str());
}

}  // namespace
}  // namespace fleetcanary
