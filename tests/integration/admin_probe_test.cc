// canaryctl probe through the controller, end to end with real processes:
// the function-url-emulator (in this process, loopback) serves the canary in
// two regions with seeded and certain faults in some cells; a
// fleetcanary-controller and three fleetcanary-agent processes (two regions)
// run the ad-hoc probes; the real canaryctl binary asks for them with
// --output json. Its per region x mode x size counts must equal the
// emulator's ground truth (GET /_emulator/truth) count for count, the
// controller must have stored them as ad-hoc (not scheduled) probes, and
// interrupting canaryctl (SIGINT) must stop the agents' probing and print the
// partial summary with exit code 130. `schedules apply -f -` reads the fleet
// file from stdin.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/loader.h"
#include "common/time/clock.h"
#include "emulator/emulator.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/scenario.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::HttpGet;
using testing::Process;
using testing::ReadFile;
using testing::WaitUntil;

const std::vector<std::string> kRegions = {"us-east-1", "eu-west-1"};

// (region, mode, size) -> outcome class name -> count.
using Cells = std::map<std::tuple<std::string, int, uint64_t>,
                       std::map<std::string, uint64_t>>;

std::string HostPort(const std::string& url) {
  absl::string_view v = url;
  absl::ConsumePrefix(&v, "http://");
  absl::ConsumeSuffix(&v, "/");
  return std::string(v);
}

class AdminProbeTest : public testing::ScratchDirTest {
 protected:
  AdminProbeTest() : ScratchDirTest("admin_probe", /*per_test=*/true) {}
  void SetUp() override {
    ScratchDirTest::SetUp();
    StartEmulator();
    StartController();
    AddAgent("use1-a", "us-east-1");
    AddAgent("use1-b", "us-east-1");
    AddAgent("euw1-a", "eu-west-1");
    ASSERT_TRUE(WaitUntil([&] { return LiveAgents() == 3; }, absl::Seconds(60)))
        << "agents did not connect; see " << dir_;
  }

  void TearDown() override {
    for (auto& a : agents_) a.reset();
    controller_.reset();
    if (emulator_) emulator_->Stop();
    ScratchDirTest::TearDown();
  }

  void StartEmulator() {
    emulator::EmulatorOptions options;
    for (const std::string& r : kRegions) {
      options.config.add_regions()->set_name(r);
    }
    // Certain 502s on eu-west-1 streams of 1KiB and more; seeded truncation
    // of a third of us-east-1's buffered probes.
    ASSERT_TRUE(ParseYamlToMessage(R"(
name: admin-e2e
seed: 11
faults:
- name: stream-502-big
  regions: [eu-west-1]
  modes: [RESPONSE_STREAM]
  min_bytes: 1024
  probability: {base: 1}
  effect: http_status
  status: 502
- name: truncate-buffered
  regions: [us-east-1]
  modes: [BUFFERED]
  probability: {base: 0.3}
  effect: truncate
  after_bytes: 1
)",
                                   "scenario",
                                   options.config.mutable_scenario())
                    .ok());
    auto emu = emulator::Emulator::Create(options, Clock::Real());
    ASSERT_TRUE(emu.ok()) << emu.status();
    emulator_ = std::move(*emu);
    std::string yaml = "targets:\n- name: canary\n  regions:\n";
    for (const std::string& r : kRegions) {
      absl::StrAppend(&yaml, "  - region: ", r, "\n    urls:\n");
      for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
        absl::StrAppend(&yaml, "    - {mode: ", v1::InvokeMode_Name(mode),
                        ", url: '", emulator_->url(r, mode), "'}\n");
      }
    }
    fleet_file_ = dir_ + "/fleet.yaml";
    std::ofstream(fleet_file_) << yaml;
  }

  void StartController() {
    auto ctl = testing::StartLoopbackController(
        {"--fleet=" + fleet_file_}, dir_ + "/controller", 0,
        dir_ + "/controller.log", absl::Seconds(60));
    ASSERT_TRUE(ctl.ok()) << ctl.status();
    controller_ = std::move(ctl->process);
    grpc_ = ctl->grpc;
    http_ = ctl->http;
  }

  void AddAgent(const std::string& id, const std::string& region) {
    auto p = Process::Spawn(
        BinaryPath("agent/fleetcanary-agent"),
        {"--agent_id=" + id, "--region=" + region, "--controller=" + grpc_,
         "--data_dir=" + dir_ + "/" + id, "--http_listen=off",
         "--heartbeat_interval=1s", "--reconnect_min=50ms",
         "--reconnect_max=300ms", "--insecure", "--target_allow_loopback"},
        dir_ + "/" + id + ".log");
    ASSERT_TRUE(p.ok()) << p.status();
    agents_.push_back(std::move(*p));
  }

  // Runs canaryctl with `args`; stdout to `out`, stdin from `in` (if any).
  // Returns the exit code.
  int Canaryctl(const std::vector<std::string>& args, const std::string& out,
                std::unique_ptr<Process>* keep = nullptr,
                const std::string& in = "") {
    return testing::RunCanaryctl(args, out, keep, in);
  }

  int LiveAgents() {
    const std::string out = dir_ + "/agents.json";
    if (Canaryctl({"agents", "--controller", grpc_, "--insecure", "-o", "json"},
                  out) != 0) {
      return -1;
    }
    v1::ListAgentsResponse r;
    if (!JsonToMessage(ReadFile(out), &r).ok()) return -1;
    int live = 0;
    for (const v1::AgentInfo& a : r.agents()) live += a.state() == v1::LIVE;
    return live;
  }

  // Emulator ground truth: injected faults by cell and the class clients
  // see for them.
  Cells Truth() {
    Cells cells;
    const std::string body =
        HttpGet(HostPort(emulator_->control_url()), "/_emulator/truth");
    for (absl::string_view line :
         absl::StrSplit(body, '\n', absl::SkipEmpty())) {
      v1::InjectedFault f;
      EXPECT_TRUE(JsonToMessage(line, &f).ok()) << line;
      std::string cls = f.effect() == v1::FAULT_EFFECT_HTTP_STATUS ? "HTTP_5XX"
                        : f.effect() == v1::FAULT_EFFECT_TRUNCATE
                            ? "TRUNCATED"
                            : v1::FaultEffect_Name(f.effect());
      ++cells[{f.region(), f.mode(), f.bytes()}][cls];
    }
    return cells;
  }

  // Sum of every sample of `family` in the controller's /metrics.
  double MetricSum(const std::string& family) {
    double sum = 0;
    for (absl::string_view line :
         absl::StrSplit(HttpGet(http_, "/metrics"), '\n')) {
      if (!absl::StartsWith(line, family + "{")) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum += v;
    }
    return sum;
  }

  std::string fleet_file_;
  std::string grpc_, http_;
  std::unique_ptr<emulator::Emulator> emulator_;
  std::unique_ptr<Process> controller_;
  std::vector<std::unique_ptr<Process>> agents_;
};

TEST_F(AdminProbeTest, ProbeThroughTheControllerMatchesGroundTruth) {
  emulator_->ClearTruth();
  const int64_t requests_before = emulator_->server_stats().requests;
  const std::string out = dir_ + "/probe.json";
  const uint64_t kCount = 40;
  const int code = Canaryctl(
      {"probe", "--controller", grpc_, "--insecure", "--target", "canary",
       "--sizes", "2,1Ki,4Ki", "--count", absl::StrCat(kCount), "--concurrency",
       "6", "--timeout", "5s", "--output", "json"},
      out);
  // Failures exist, so the default --max-error-rate 0 check fails: exit 2.
  EXPECT_EQ(code, 2) << ReadFile(out + ".stderr");
  v1::RunProbeEvent::Done done;
  ASSERT_TRUE(JsonToMessage(ReadFile(out), &done).ok()) << ReadFile(out);
  EXPECT_EQ(done.total_probes(), 2 * 2 * 3 * kCount);
  EXPECT_EQ(done.missing_probes(), 0u);
  ASSERT_EQ(done.summaries_size(), 2 * 2 * 3);
  // One invocation per probe reached the emulator.
  EXPECT_EQ(emulator_->server_stats().requests - requests_before,
            static_cast<int64_t>(done.total_probes()));
  const Cells truth = Truth();
  uint64_t faults = 0;
  for (const auto& [cell, classes] : truth) {
    for (const auto& [cls, n] : classes) faults += n;
  }
  uint64_t failures_seen = 0;
  for (const v1::ProbeSummary& s : done.summaries()) {
    SCOPED_TRACE(s.ShortDebugString());
    EXPECT_EQ(s.probes(), kCount);
    std::map<std::string, uint64_t> expected;
    auto it = truth.find({s.region(), s.mode(), s.size_bytes()});
    uint64_t injected = 0;
    if (it != truth.end()) {
      expected = it->second;
      for (const auto& [cls, n] : expected) injected += n;
    }
    if (kCount > injected) expected["OK"] = kCount - injected;
    std::map<std::string, uint64_t> got(s.by_class().begin(),
                                        s.by_class().end());
    EXPECT_EQ(got, expected);
    for (const auto& [cls, n] : got) failures_seen += cls == "OK" ? 0 : n;
  }
  EXPECT_EQ(failures_seen, faults);
  // Certain cells are certain; the seeded ones are neither empty nor full.
  const auto& certain = truth.at({"eu-west-1", v1::RESPONSE_STREAM, 1024});
  EXPECT_EQ(certain.at("HTTP_5XX"), kCount);
  const auto& seeded = truth.at({"us-east-1", v1::BUFFERED, 2});
  EXPECT_GT(seeded.at("TRUNCATED"), 0u);
  EXPECT_LT(seeded.at("TRUNCATED"), kCount);

  // Stored through the outboxes, labelled ad-hoc, not scheduled.
  EXPECT_TRUE(WaitUntil(
      [&] { return MetricSum("fleetcanary_adhoc_probes_total") >= 480; },
      absl::Seconds(60)))
      << MetricSum("fleetcanary_adhoc_probes_total");
  EXPECT_EQ(MetricSum("fleetcanary_adhoc_probes_total"), 480);
  EXPECT_EQ(MetricSum("fleetcanary_probes_total"), 0);
}

TEST_F(AdminProbeTest, RefusalsAreActionable) {
  const std::string out = dir_ + "/refused.txt";
  EXPECT_EQ(Canaryctl({"probe", "--controller", grpc_, "--insecure", "--target",
                       "nope", "--sizes", "2", "--count", "1"},
                      out),
            1);
  EXPECT_NE(ReadFile(out + ".stderr").find("\"nope\" is not registered"),
            std::string::npos)
      << ReadFile(out + ".stderr");
  EXPECT_EQ(Canaryctl({"probe", "--controller", grpc_, "--insecure", "--url",
                       "http://169.254.169.254/", "--mode", "buffered",
                       "--sizes", "2", "--count", "1"},
                      out),
            1);
  EXPECT_NE(ReadFile(out + ".stderr").find("not in the target allowlist"),
            std::string::npos)
      << ReadFile(out + ".stderr");
}

TEST_F(AdminProbeTest, SchedulesApplyReadsTheFleetFileFromStdin) {
  const std::string good = dir_ + "/stdin-fleet.yaml";
  std::ofstream(good) << "schedules:\n- {id: from-stdin, target: canary, "
                         "sizes: [2], rate_per_second: 0.2}\n";
  const std::string out = dir_ + "/apply.txt";
  ASSERT_EQ(Canaryctl({"schedules", "apply", "-f", "-", "--controller", grpc_,
                       "--insecure"},
                      out, nullptr, good),
            0)
      << ReadFile(out + ".stderr");
  EXPECT_NE(ReadFile(out).find("from-stdin"), std::string::npos)
      << ReadFile(out);
  EXPECT_NE(ReadFile(out).find("created"), std::string::npos) << ReadFile(out);
  ASSERT_EQ(Canaryctl({"schedules", "list", "--controller", grpc_, "--insecure",
                       "-o", "json"},
                      out),
            0);
  v1::ListSchedulesResponse list;
  ASSERT_TRUE(JsonToMessage(ReadFile(out), &list).ok()) << ReadFile(out);
  ASSERT_EQ(list.schedules_size(), 1);
  EXPECT_EQ(list.schedules(0).id(), "from-stdin");

  // Refusals name stdin and the field: one the parser catches (with the
  // line), one only the controller knows (the target).
  const std::string bad = dir_ + "/stdin-bad.yaml";
  std::ofstream(bad) << "schedules:\n- {id: x, target: canary, sizes: [2], "
                        "rate_per_second: 5000}\n";
  EXPECT_EQ(Canaryctl({"schedules", "apply", "-f", "-", "--controller", grpc_,
                       "--insecure"},
                      out, nullptr, bad),
            1);
  EXPECT_NE(ReadFile(out + ".stderr").find("stdin:2"), std::string::npos)
      << ReadFile(out + ".stderr");
  EXPECT_NE(ReadFile(out + ".stderr").find("rate_per_second"),
            std::string::npos);
  const std::string unknown = dir_ + "/stdin-unknown.yaml";
  std::ofstream(unknown) << "schedules:\n- {id: x, target: nope, sizes: [2], "
                            "rate_per_second: 1}\n";
  EXPECT_EQ(Canaryctl({"schedules", "apply", "-f", "-", "--controller", grpc_,
                       "--insecure"},
                      out, nullptr, unknown),
            1);
  EXPECT_NE(ReadFile(out + ".stderr").find("stdin: schedules[0].target"),
            std::string::npos)
      << ReadFile(out + ".stderr");
  ASSERT_EQ(Canaryctl({"schedules", "delete", "from-stdin", "--controller",
                       grpc_, "--insecure"},
                      out),
            0);
}

// The fleet file is declarative across restarts: what the admin API changed
// lasts until the next start, which makes the stored schedules exactly the
// file's again - a schedule deleted through the API is back, one only the API
// created is gone, and one removed from the file stops - and the start logs
// what it did.
TEST_F(AdminProbeTest, FleetFileIsDeclarativeAtEveryStart) {
  const std::string targets_only = ReadFile(fleet_file_);
  auto restart = [&] {
    controller_->Signal(SIGTERM);
    ASSERT_TRUE(controller_->Wait(absl::Seconds(60)).has_value());
    StartController();
  };
  auto schedules = [&] {
    const std::string out = dir_ + "/schedules.json";
    EXPECT_EQ(Canaryctl({"schedules", "list", "--controller", grpc_,
                         "--insecure", "-o", "json"},
                        out),
              0);
    v1::ListSchedulesResponse list;
    EXPECT_TRUE(JsonToMessage(ReadFile(out), &list).ok()) << ReadFile(out);
    std::vector<std::string> ids;
    for (const v1::Schedule& s : list.schedules()) ids.push_back(s.id());
    std::sort(ids.begin(), ids.end());
    return absl::StrJoin(ids, ",");
  };
  std::ofstream(fleet_file_)
      << targets_only
      << "schedules:\n"
         "- {id: a, target: canary, sizes: [2], rate_per_second: 0.2}\n"
         "- {id: b, target: canary, sizes: [2], rate_per_second: 0.2}\n";
  restart();
  if (HasFatalFailure()) return;
  EXPECT_EQ(schedules(), "a,b");

  // Through the API: delete a, create c.
  const std::string out = dir_ + "/api.txt";
  ASSERT_EQ(Canaryctl({"schedules", "delete", "a", "--controller", grpc_,
                       "--insecure"},
                      out),
            0)
      << ReadFile(out + ".stderr");
  const std::string extra = dir_ + "/extra.yaml";
  std::ofstream(extra) << "schedules:\n- {id: c, target: canary, sizes: [2], "
                          "rate_per_second: 0.2}\n";
  ASSERT_EQ(Canaryctl({"schedules", "apply", "-f", extra, "--controller", grpc_,
                       "--insecure"},
                      out),
            0)
      << ReadFile(out + ".stderr");
  EXPECT_EQ(schedules(), "b,c");

  // The next start restores the file's fleet, and says so.
  restart();
  if (HasFatalFailure()) return;
  EXPECT_EQ(schedules(), "a,b");
  // Logged before the controller listens: the last start's line.
  std::string applied;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(dir_ + "/controller.log"), '\n')) {
    if (absl::StrContains(line, "event=fleet_file_applied")) {
      applied = std::string(line);
    }
  }
  EXPECT_TRUE(absl::StrContains(applied, "created=a ")) << applied;
  EXPECT_TRUE(absl::StrContains(applied, "deleted=c")) << applied;

  // A schedule removed from the file stops at the next start.
  std::ofstream(fleet_file_)
      << targets_only
      << "schedules:\n"
         "- {id: a, target: canary, sizes: [2], rate_per_second: 0.2}\n";
  restart();
  if (HasFatalFailure()) return;
  EXPECT_EQ(schedules(), "a");
}

TEST_F(AdminProbeTest, InterruptingCanaryctlStopsTheAgents) {
  const int64_t start = emulator_->server_stats().requests;
  const double adhoc_before = MetricSum("fleetcanary_adhoc_probes_total");
  std::unique_ptr<Process> probe;
  Canaryctl(
      {"probe", "--controller", grpc_, "--insecure", "--target", "canary",
       "--sizes", "2", "--count", "2400", "--concurrency", "2", "-o", "json"},
      dir_ + "/long.txt", &probe);
  ASSERT_TRUE(probe);
  // Probing is under way.
  ASSERT_TRUE(WaitUntil(
      [&] { return emulator_->server_stats().requests - start > 100; },
      absl::Seconds(60)));
  probe->Signal(SIGINT);
  const std::optional<int> code = probe->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 130) << ReadFile(dir_ + "/long.txt.stderr");
  // The partial summary of what came back before Ctrl-C, marked cancelled:
  // per-cell counts that add up to the total, some probes but not the run.
  v1::RunProbeEvent::Done partial;
  ASSERT_TRUE(JsonToMessage(ReadFile(dir_ + "/long.txt"), &partial).ok())
      << ReadFile(dir_ + "/long.txt");
  EXPECT_TRUE(partial.cancelled());
  EXPECT_GT(partial.total_probes(), 0u);
  EXPECT_LT(partial.total_probes(), 9600u);
  uint64_t summed = 0;
  for (const v1::ProbeSummary& s : partial.summaries()) {
    uint64_t by_class = 0;
    for (const auto& [cls, n] : s.by_class()) by_class += n;
    EXPECT_EQ(by_class, s.probes()) << s.ShortDebugString();
    summed += s.probes();
  }
  EXPECT_EQ(summed, partial.total_probes());
  // The agents stop: every request the emulator served is a probe whose
  // outcome reached the controller (probes in flight finish and report;
  // cancelled ones never start), and the run ended short of its 9,600
  // probes (2,400 x 2 modes x 2 regions, under the default ad-hoc cap). Waiting
  // for that equality is waiting for the agents to go quiet.
  int64_t served = 0;
  double reported = 0;
  EXPECT_TRUE(WaitUntil(
      [&] {
        served = emulator_->server_stats().requests - start;
        reported = MetricSum("fleetcanary_adhoc_probes_total") - adhoc_before;
        return static_cast<double>(served) == reported;
      },
      absl::Seconds(60)))
      << served << " served vs " << reported << " reported";
  EXPECT_LT(served, 9600);
  // Canaryctl summarised only outcomes the controller had streamed to it.
  EXPECT_LE(static_cast<double>(partial.total_probes()), reported);
}

}  // namespace
}  // namespace fleetcanary
