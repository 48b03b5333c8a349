// The incident evidence report end to end: the function-url-emulator binary
// replays a client-visible incident (tests/integration/report_incident.yaml:
// truncated 64 KiB streams in us-east-1), real fleetcanary-controller and
// fleetcanary-agent processes probe it, and the real canaryctl asks the
// controller's Report RPC for the report. Then
//   - every count of the report equals what the controller's store holds for
//     the window (per region x mode x size and outcome class);
//   - the failures of the faulty stream equal the faults the emulator
//     injected (its ground-truth log), the other streams have none, and the
//     sample request ids are injected ones;
//   - the STREAM_HEALTH REGRESSION and its onset are in the report;
//   - headless Chromium renders the HTML report and the status page
//     (screenshots kept under test-artifacts/) and prints the report to a
//     PDF, which must be a real document.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/units/units.h"
#include "controller/store/store.h"
#include "emulator/scenario/engine.h"
#include "fleetcanary/v1/report.pb.h"
#include "fleetcanary/v1/scenario.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::HttpGet;
using testing::Process;
using testing::ReadFile;

constexpr char kRegion[] = "us-east-1";

absl::Time FromTs(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}
absl::Duration FromDur(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}
std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

class ReportE2eTest : public testing::ScratchDirTest {
 protected:
  ReportE2eTest() : ScratchDirTest("report_e2e") {}
  void SetUp() override {
    ScratchDirTest::SetUp();
    artifacts_ = std::string(FLEETCANARY_ARTIFACT_DIR);
    std::filesystem::create_directories(artifacts_);
  }
  void TearDown() override {
    agent_.reset();
    controller_.reset();
    emulator_.process.reset();
    ScratchDirTest::TearDown();
  }
  // Runs a command line through /bin/sh; returns its exit code.
  int Run(const std::string& cmd, const std::string& log) {
    auto p = Process::Spawn("/bin/sh", {"-c", "exec " + cmd}, log);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return -1;
    std::optional<int> code = (*p)->Wait(absl::Seconds(120));
    EXPECT_TRUE(code.has_value()) << "did not finish: " << cmd;
    return code.value_or(-1);
  }
  int Canaryctl(const std::vector<std::string>& args) {
    std::string cmd = absl::StrCat("'", BinaryPath("cli/canaryctl"), "'");
    for (const std::string& a : args) absl::StrAppend(&cmd, " '", a, "'");
    return Run(cmd, dir_ + "/canaryctl.log");
  }
  std::string Chromium(const std::string& what) {
    return absl::StrCat(
        "chromium --headless --no-sandbox --disable-gpu --no-first-run "
        "--disable-background-networking --disable-component-update "
        "--disable-sync --user-data-dir='",
        dir_, "/chromium-profile' ", what);
  }

  std::string artifacts_;
  testing::EmulatorProcess emulator_;
  std::unique_ptr<Process> controller_;
  std::unique_ptr<Process> agent_;
};

TEST_F(ReportE2eTest, ReportMatchesStoreAndGroundTruthAndRenders) {
  const std::string scenario_path = std::string(FLEETCANARY_SOURCE_DIR) +
                                    "/tests/integration/report_incident.yaml";
  auto scenario = emulator::LoadScenarioFile(scenario_path);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_EQ(scenario->faults_size(), 1);
  const absl::Duration fault_end = FromDur(scenario->faults(0).end());

  // 1. Emulator, controller, one agent (the verdicts e2e test's setup).
  const std::string emu_config =
      Write("emulator.yaml", testing::EmulatorYaml({kRegion}));
  auto emu = testing::StartEmulatorBinary(
      emu_config, scenario_path, dir_ + "/emulator.log", absl::Seconds(60));
  ASSERT_TRUE(emu.ok()) << emu.status();
  emulator_ = *std::move(emu);
  const std::string fleet_path = Write(
      "fleet.yaml", emulator_.CanaryFleetYaml(
                        {kRegion},
                        "schedules:\n  - id: ladder\n    target: canary\n"
                        "    sizes: [1Ki, 64Ki]\n    rate_per_second: 20\n"
                        "    limits: {timeout: 10s, stall_limit: 5s}\n"
                        "    transport: {keep_alive: true}\n"));
  const std::string controller_config = Write(
      "controller.yaml",
      absl::StrCat(testing::kFastControllerYaml, testing::kDemoDetectionYaml));
  auto ctl = testing::StartLoopbackController(
      {"--config=" + controller_config, "--fleet=" + fleet_path},
      dir_ + "/controller", 0, dir_ + "/controller.log", absl::Seconds(60));
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  controller_ = std::move(ctl->process);
  const std::string grpc = ctl->grpc;
  const std::string http = ctl->http;
  const std::string agent_config = Write(
      "agent.yaml", testing::AgentYaml("use1-a", kRegion, grpc, dir_ + "/agent",
                                       /*cloudwatch_unsigned=*/true));
  auto agent = testing::StartAgentBinary(agent_config, dir_ + "/agent.log",
                                         absl::Seconds(60));
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(agent->process);

  // 2. Follow the scenario's timeline: the fault injected something, the
  // controller raised the stream's REGRESSION, and the fault window is over
  // (so every injected probe has finished and was reported).
  const std::string control_addr = emulator_.ControlAddress();
  std::vector<v1::InjectedFault> truth;
  absl::Time loaded = absl::InfinitePast();
  bool regression = false;
  auto read_truth = [&] {
    truth.clear();
    for (absl::string_view line :
         absl::StrSplit(HttpGet(control_addr, "/_emulator/truth"), '\n')) {
      if (line.empty()) continue;
      v1::InjectedFault f;
      if (!google::protobuf::util::JsonStringToMessage(std::string(line), &f)
               .ok()) {
        continue;
      }
      loaded = FromTs(f.time()) - FromDur(f.scenario_elapsed());
      truth.push_back(f);
    }
  };
  testing::WaitUntil(
      [&] {
        const std::string body = HttpGet(http, "/metrics");
        for (absl::string_view line : absl::StrSplit(body, '\n')) {
          if (absl::StartsWith(line, "fleetcanary_verdict{") &&
              absl::StrContains(line, "kind=\"STREAM_HEALTH\"") &&
              absl::StrContains(line, "mode=\"stream\"") &&
              absl::StrContains(line, "state=\"REGRESSION\"") &&
              absl::EndsWith(line, " 1")) {
            regression = true;
          }
        }
        read_truth();
        return regression && !truth.empty() &&
               absl::Now() > loaded + fault_end + absl::Seconds(2);
      },
      absl::Seconds(180));
  ASSERT_TRUE(regression) << "no STREAM_HEALTH REGRESSION on /metrics";
  ASSERT_FALSE(truth.empty()) << "the emulator injected nothing";

  // 3. Drain the agent: everything it probed is in the store.
  agent_->Signal(SIGTERM);
  EXPECT_EQ(agent_->Wait(absl::Seconds(30)), 0);
  read_truth();

  // 4. The report through the real canaryctl, in the three formats, and the
  // pages the controller serves.
  const absl::Time from = loaded - absl::Minutes(2);
  const absl::Time to = absl::Now() + absl::Minutes(1);
  const std::vector<std::string> common = {
      "report", "--controller", grpc,   "--insecure", "--target",      "canary",
      "--from", Rfc3339(from),  "--to", Rfc3339(to),  "--max-samples", "1000"};
  for (const char* format : {"json", "html", "markdown"}) {
    std::vector<std::string> args = common;
    args.insert(args.end(),
                {"--format", format, "--out", dir_ + "/report." + format});
    ASSERT_EQ(Canaryctl(args), 0) << ReadFile(dir_ + "/canaryctl.log");
  }
  v1::IncidentReport report;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ReadFile(dir_ + "/report.json"), &report)
                  .ok());
  const std::string status_html = HttpGet(http, "/status");
  const std::string served_report = HttpGet(http, "/report?target=canary");
  std::ofstream(dir_ + "/status.html") << status_html;
  // Bad input on the RPC names the field.
  std::vector<std::string> bad = {
      "report", "--controller", grpc,   "--insecure",  "--target", "canary",
      "--from", Rfc3339(to),    "--to", Rfc3339(from), "--format", "json"};
  EXPECT_EQ(Canaryctl(bad), 1);
  EXPECT_NE(ReadFile(dir_ + "/canaryctl.log").find("--from"),
            std::string::npos);

  controller_->Signal(SIGTERM);
  EXPECT_EQ(controller_->Wait(absl::Seconds(20)), 0);

  // 5. The report's counts equal the store's, cell by cell and class by
  // class.
  auto store =
      controller::CreateSqliteStore({dir_ + "/controller/controller.db"});
  ASSERT_TRUE(store.ok()) << store.status();
  auto minutes = (*store)->QueryStreamMinutes(
      controller::MinuteOf(from),
      controller::MinuteOf(to - absl::Nanoseconds(1)) + 1);
  ASSERT_TRUE(minutes.ok()) << minutes.status();
  using CellKey = std::tuple<std::string, int, uint64_t>;
  std::map<CellKey, controller::StreamStats> stored;
  for (const controller::StreamMinute& m : *minutes) {
    if (m.key.adhoc || m.key.target != "canary") continue;
    stored[{m.key.region, m.key.mode, m.key.size_bytes}].Merge(m.stats);
  }
  ASSERT_EQ(report.cells_size(), static_cast<int>(stored.size()));
  ASSERT_EQ(report.cells_size(), 4);  // 2 modes x 2 sizes.
  uint64_t total = 0;
  std::map<CellKey, uint64_t> report_failures;
  for (const v1::ReportCell& c : report.cells()) {
    const CellKey key{c.region(), c.mode(), c.size_bytes()};
    ASSERT_TRUE(stored.count(key)) << c.size_class();
    const controller::StreamStats& s = stored[key];
    const v1::ReportCounts& whole = c.periods(0);
    ASSERT_EQ(whole.period(), v1::REPORT_PERIOD_WHOLE);
    EXPECT_EQ(whole.probes(), s.probes());
    for (int cls = 1; cls < controller::kNumOutcomeClasses; ++cls) {
      const std::string name =
          v1::OutcomeClass_Name(static_cast<v1::OutcomeClass>(cls));
      const uint64_t in_report =
          whole.by_class().count(name) ? whole.by_class().at(name) : 0;
      EXPECT_EQ(in_report, s.counts[cls]) << c.size_class() << " " << name;
    }
    EXPECT_EQ(whole.ttfb_count(), s.ttfb.count());
    // BEFORE + DURING + AFTER = WHOLE.
    uint64_t parts = 0;
    for (int i = 1; i < c.periods_size(); ++i) parts += c.periods(i).probes();
    EXPECT_EQ(parts, whole.probes());
    total += whole.probes();
    report_failures[key] = whole.failures();
  }
  EXPECT_EQ(report.probes(), total);
  EXPECT_GT(total, 200u);

  // 6. Ground truth: the faulty stream's failures are exactly the injected
  // truncations; nothing else failed; samples are injected requests.
  std::set<std::string> injected_ids;
  uint64_t injected = 0;
  for (const v1::InjectedFault& f : truth) {
    EXPECT_EQ(f.region(), kRegion);
    EXPECT_EQ(f.mode(), v1::RESPONSE_STREAM);
    EXPECT_EQ(f.bytes(), 65536u);
    ++injected;
    injected_ids.insert(f.request_id());
  }
  const CellKey faulty{kRegion, v1::RESPONSE_STREAM, 65536};
  EXPECT_EQ(report_failures[faulty], injected);
  for (const auto& [key, failures] : report_failures) {
    if (key != faulty) {
      EXPECT_EQ(failures, 0u) << std::get<2>(key);
    }
  }
  EXPECT_EQ(report.failures(), injected);
  EXPECT_EQ(report.failing_samples_size(), static_cast<int>(injected));
  for (const v1::SampleProbe& s : report.failing_samples()) {
    EXPECT_TRUE(injected_ids.count(s.platform_request_id()))
        << s.platform_request_id();
  }
  ASSERT_GT(report.reproduction().failing_sizes_size(), 0);
  EXPECT_EQ(report.reproduction().failing_sizes(0), 65536u);

  // 7. A regression about the faulty stream (the Analyze engine over the
  // store's minutes: STREAM_HEALTH of stream 64KiB or the MODE_DIFFERENCE
  // at 64KiB), nothing about the healthy streams, and the onset inside the
  // fault window (with the margin of the minute the store keeps).
  bool found = false;
  for (const v1::ReportFinding& f : report.findings()) {
    const bool about_faulty =
        f.key().region() == kRegion &&
        (f.key().size_class() == "64KiB" || f.key().size_class().empty()) &&
        f.key().mode() != v1::BUFFERED;
    EXPECT_TRUE(about_faulty) << f.ShortDebugString();
    found |= about_faulty && f.worst_state() == v1::REGRESSION;
  }
  EXPECT_TRUE(found) << "no REGRESSION about stream 64KiB";
  ASSERT_TRUE(report.has_onset());
  const absl::Time onset = FromTs(report.onset());
  const absl::Time true_onset = loaded + FromDur(scenario->faults(0).start());
  // The store keeps minutes, and a change dated to minute bins lies after
  // the start of the bin before the first changed one: an onset 7 s into a
  // minute can be reported at the start of the previous minute (seen: 67 s
  // early), so the bound is two minutes.
  EXPECT_GE(onset, true_onset - absl::Minutes(2));
  EXPECT_LE(onset, loaded + fault_end);

  // 8. The other formats and pages carry the same numbers.
  const std::string md = ReadFile(dir_ + "/report.markdown");
  EXPECT_NE(md.find(absl::StrCat("| ", kRegion, " | stream | 64KiB |")),
            std::string::npos);
  EXPECT_NE(md.find(truth.front().request_id()), std::string::npos);
  const std::string html = ReadFile(dir_ + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find(truth.front().request_id()), std::string::npos);
  EXPECT_NE(status_html.find("class=\"matrix\""), std::string::npos);
  EXPECT_NE(status_html.find("href=\"/report?target=canary#cell-us-east-1-"
                             "stream-65536\""),
            std::string::npos);
  EXPECT_NE(served_report.find("Incident evidence report: canary"),
            std::string::npos)
      << served_report.substr(0, 300);

  // 9. Headless Chromium: screenshots of the report and the status page, the
  // report printed to PDF.
  const std::string report_png = artifacts_ + "/incident-report.png";
  const std::string status_png = artifacts_ + "/status-matrix.png";
  const std::string pdf = artifacts_ + "/incident-report.pdf";
  for (const std::string& f : {report_png, status_png, pdf}) {
    std::filesystem::remove(f);
  }
  const std::string url = "file://" + dir_ + "/report.html";
  EXPECT_EQ(Run(Chromium(absl::StrCat("--window-size=1100,2400 --screenshot='",
                                      report_png, "' '", url, "'")),
                dir_ + "/chromium.log"),
            0);
  EXPECT_EQ(Run(Chromium(absl::StrCat("--no-pdf-header-footer "
                                      "--print-to-pdf='",
                                      pdf, "' '", url, "'")),
                dir_ + "/chromium.log"),
            0);
  EXPECT_EQ(Run(Chromium(absl::StrCat("--window-size=1100,1400 --screenshot='",
                                      status_png, "' 'file://", dir_,
                                      "/status.html'")),
                dir_ + "/chromium.log"),
            0);
  EXPECT_EQ(Run(Chromium(absl::StrCat("--dump-dom '", url, "' > '", dir_,
                                      "/report.dom'")),
                dir_ + "/chromium.log"),
            0);
  EXPECT_NE(ReadFile(dir_ + "/report.dom").find("cell-us-east-1-stream-65536"),
            std::string::npos);
  for (const std::string& png : {report_png, status_png}) {
    ASSERT_TRUE(std::filesystem::exists(png)) << png;
    EXPECT_GT(std::filesystem::file_size(png), 20000u) << png;
  }
  ASSERT_TRUE(std::filesystem::exists(pdf));
  const std::string pdf_bytes = ReadFile(pdf);
  EXPECT_EQ(pdf_bytes.substr(0, 5), "%PDF-");
  EXPECT_GT(pdf_bytes.size(), 20000u);
  size_t pages = 0;
  for (size_t at = pdf_bytes.find("/Type /Page"); at != std::string::npos;
       at = pdf_bytes.find("/Type /Page", at + 1)) {
    if (pdf_bytes.compare(at, 12, "/Type /Pages") != 0) ++pages;
  }
  std::printf(
      "report: %llu probes, %llu injected truncations = %llu failures in the "
      "report; onset %s (true %s); PDF %zu bytes, ~%zu pages; artifacts in "
      "%s\n",
      static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(injected),
      static_cast<unsigned long long>(report.failures()),
      Rfc3339(onset).c_str(), Rfc3339(true_onset).c_str(), pdf_bytes.size(),
      pages, artifacts_.c_str());
}

}  // namespace
}  // namespace fleetcanary
