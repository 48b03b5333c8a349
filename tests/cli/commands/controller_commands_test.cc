// canaryctl's controller commands, in process, against a real CanaryAdmin
// gRPC server on loopback (core over a real Scheduler; agents faked at the
// session boundary): output, JSON, errors and exit codes. `verdicts --watch`
// runs as the real canaryctl binary, reading its stdout line by line.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/app.h"
#include "common/config/loader.h"
#include "common/time/clock.h"
#include "controller/api/admin_service.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/testing/fake_adhoc_agents.h"

namespace fleetcanary {
namespace cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "operator-token-0123456789";

class NullListener : public controller::AssignmentListener {
 public:
  void OnAssignments(const v1::AssignmentSet&) override {}
};

class ControllerCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("FLEETCANARY_CONTROLLER");
    unsetenv("FLEETCANARY_TOKEN");
    unsetenv("FLEETCANARY_INSECURE");
    store_ = controller::CreateMemoryStore();
    scheduler_ = std::move(
        *controller::Scheduler::Create({}, store_.get(), Clock::Real()));
    verdicts_ = std::move(
        *controller::CreateStoreVerdictSource({}, store_.get(), Clock::Real()));
    controller::AdminCoreDeps d;
    d.scheduler = scheduler_.get();
    d.verdicts = verdicts_.get();
    d.store = store_.get();
    d.clock = Clock::Real();
    testing::FakeAdhocAgents* agents = &agents_;
    d.send_adhoc = [agents](const std::string& a, const v1::AdhocProbe& p) {
      return agents->Send(a, p);
    };
    core_ = std::move(*controller::AdminCore::Create({}, d));
    agents_.set_core(core_.get());
    v1::AdminTokens tokens;
    auto* t = tokens.add_tokens();
    t->set_name("ops");
    t->set_role(v1::OPERATOR);
    t->set_token(kToken);
    auth_ = std::move(*AdminAuthorizer::Create(tokens));
    service_ = controller::CreateAdminService({}, core_.get(), auth_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    // Per process: ctest runs each case as its own process, in parallel.
    token_file_ =
        absl::StrCat(::testing::TempDir(), "/canaryctl_", getpid(), ".token");
    std::ofstream(token_file_) << kToken << "\n";
    v1::Hello h;
    h.set_agent_id("agent-1");
    h.set_region("us-east-1");
    h.set_zone("us-east-1a");
    h.set_version("1.2.3");
    scheduler_->AgentConnected(h, &listener_);
  }
  void TearDown() override {
    server_->Shutdown();
    core_->Shutdown();
    service_->Shutdown();
    scheduler_->Shutdown();
  }

  // Runs canaryctl with `args` plus the connection flags.
  int Run(std::vector<std::string> args, bool connect = true) {
    if (connect) {
      for (const std::string& a :
           {std::string("--controller"), address_, std::string("--insecure"),
            std::string("--token-file"), token_file_}) {
        args.push_back(a);
      }
    }
    std::vector<const char*> argv = {"canaryctl"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    out_.str("");
    err_.str("");
    CliContext ctx;
    ctx.out = &out_;
    ctx.err = &err_;
    ctx.clock = Clock::Real();
    return RunCanaryctl(static_cast<int>(argv.size()), argv.data(), &ctx);
  }

  std::string File(const std::string& name, const std::string& text) {
    const std::string path =
        absl::StrCat(::testing::TempDir(), "/", getpid(), "_", name);
    std::ofstream(path) << text;
    return path;
  }

  std::string Fleet() {
    return File("fleet.yaml",
                "targets:\n- name: canary\n  regions:\n  - region: us-east-1\n"
                "    urls:\n    - {mode: BUFFERED, url: "
                "'https://b.lambda-url.us-east-1.on.aws/'}\n    - {mode: "
                "RESPONSE_STREAM, url: "
                "'https://s.lambda-url.us-east-1.on.aws/'}\nschedules:\n"
                "- {id: ladder, target: canary, sizes: [2, 1Ki], "
                "rate_per_second: 0.5}\n");
  }

  // Answer every ad-hoc probe with OK outcomes, off the caller's thread.
  testing::FakeAdhocAgents agents_{Clock::Real()};
  std::unique_ptr<controller::Store> store_;
  std::unique_ptr<controller::Scheduler> scheduler_;
  std::unique_ptr<controller::VerdictSource> verdicts_;
  std::unique_ptr<controller::AdminCore> core_;
  std::unique_ptr<AdminAuthorizer> auth_;
  std::unique_ptr<controller::AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string token_file_;
  NullListener listener_;
  std::ostringstream out_, err_;
};

TEST_F(ControllerCommandsTest, HelpListsCommandsAndExitCodes) {
  EXPECT_EQ(Run({"--help"}, false), kExitOk);
  for (const char* s :
       {"probe", "agents", "schedules", "verdicts", "analyze", "Exit codes",
        "4  not authorized", "FLEETCANARY_CONTROLLER"}) {
    EXPECT_THAT(out_.str(), HasSubstr(s));
  }
  EXPECT_EQ(Run({"schedules", "--help"}, false), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("apply"));
  EXPECT_EQ(Run({"nonsense"}, false), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown command"));
}

TEST_F(ControllerCommandsTest, UnreachableControllerSaysWhatToDo) {
  EXPECT_EQ(Run({"agents", "--controller", "127.0.0.1:1", "--insecure"}, false),
            kExitUnavailable);
  EXPECT_THAT(err_.str(),
              HasSubstr("cannot reach controller at 127.0.0.1:1: connection "
                        "refused — is fleetcanary-controller running?"));
  setenv("FLEETCANARY_CONTROLLER", "127.0.0.1:1", 1);
  setenv("FLEETCANARY_INSECURE", "1", 1);
  EXPECT_EQ(Run({"schedules", "list"}, false), kExitUnavailable);
  EXPECT_THAT(err_.str(), HasSubstr("127.0.0.1:1"));
}

TEST_F(ControllerCommandsTest, TokensComeFromFileOrEnvironment) {
  EXPECT_EQ(Run({"agents", "--controller", address_, "--insecure"}, false),
            kExitUnauthorized);
  EXPECT_THAT(err_.str(), HasSubstr("FLEETCANARY_TOKEN"));
  setenv("FLEETCANARY_TOKEN", kToken, 1);
  EXPECT_EQ(Run({"agents", "--controller", address_, "--insecure"}, false),
            kExitOk);
  EXPECT_EQ(Run({"agents", "--controller", address_, "--insecure",
                 "--token-file", "/nonexistent/token"},
                false),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--token-file: cannot read"));
}

TEST_F(ControllerCommandsTest, AgentsTableAndJson) {
  ASSERT_EQ(Run({"agents"}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("AGENT"));
  EXPECT_THAT(out_.str(), HasSubstr("agent-1"));
  EXPECT_THAT(out_.str(), HasSubstr("us-east-1a"));
  EXPECT_THAT(out_.str(), HasSubstr("live"));
  ASSERT_EQ(Run({"agents", "-o", "json"}), kExitOk);
  v1::ListAgentsResponse r;
  ASSERT_TRUE(JsonToMessage(out_.str(), &r).ok()) << out_.str();
  ASSERT_EQ(r.agents_size(), 1);
  EXPECT_EQ(r.agents(0).version(), "1.2.3");
  EXPECT_EQ(Run({"agents", "--region", "mars"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("region \"mars\""));
  EXPECT_EQ(Run({"agents", "-o", "yaml"}), kExitUsage);
}

TEST_F(ControllerCommandsTest, SchedulesApplyListDelete) {
  const std::string fleet = Fleet();
  ASSERT_EQ(Run({"schedules", "apply", "-f", fleet, "--dry-run"}), kExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("would create"));
  ASSERT_EQ(Run({"schedules", "apply", "-f", fleet}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("ladder    created"));
  ASSERT_EQ(Run({"schedules", "apply", "-f", fleet}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("ladder    unchanged"));
  ASSERT_EQ(Run({"schedules", "list"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("canary"));
  EXPECT_THAT(out_.str(), HasSubstr("2B,1KiB"));
  ASSERT_EQ(Run({"schedules", "list", "-o", "json"}), kExitOk);
  v1::ListSchedulesResponse list;
  ASSERT_TRUE(JsonToMessage(out_.str(), &list).ok());
  EXPECT_EQ(list.schedules_size(), 1);
  EXPECT_EQ(Run({"schedules", "delete", "nope"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("nope"));
  ASSERT_EQ(Run({"schedules", "delete", "ladder"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("deleted schedule ladder"));
}

TEST_F(ControllerCommandsTest, SchedulesApplyRefusalsNameFileAndField) {
  const std::string bad_yaml =
      File("bad.yaml",
           "schedules:\n- {id: x, target: canary, sizes: [2], "
           "rate_per_second: 5000}\n");
  EXPECT_EQ(Run({"schedules", "apply", "-f", bad_yaml}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("bad.yaml:2"));
  EXPECT_THAT(err_.str(), HasSubstr("rate_per_second"));
  const std::string unknown = File(
      "unknown.yaml",
      "schedules:\n- {id: x, target: nope, sizes: [2], rate_per_second: 1}\n");
  EXPECT_EQ(Run({"schedules", "apply", "-f", unknown}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown.yaml: schedules[0].target"));
  EXPECT_EQ(Run({"schedules", "apply"}), kExitUsage);  // -f is required.
}

TEST_F(ControllerCommandsTest, ProbeThroughTheController) {
  ASSERT_EQ(Run({"schedules", "apply", "-f", Fleet()}), kExitOk);
  ASSERT_EQ(
      Run({"probe", "--target", "canary", "--sizes", "2,1Ki", "--count", "3"}),
      kExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("REGION"));
  EXPECT_THAT(out_.str(), HasSubstr("us-east-1  buffered"));
  EXPECT_THAT(out_.str(), HasSubstr("12 probes"));
  EXPECT_THAT(err_.str(), HasSubstr("dispatched"));
  ASSERT_EQ(Run({"probe", "--target", "canary", "--sizes", "2", "--count", "2",
                 "--modes", "stream", "--output", "json"}),
            kExitOk);
  v1::RunProbeEvent::Done done;
  ASSERT_TRUE(JsonToMessage(out_.str(), &done).ok()) << out_.str();
  EXPECT_EQ(done.total_probes(), 2u);
  ASSERT_EQ(done.summaries_size(), 1);
  EXPECT_EQ(done.summaries(0).mode(), v1::RESPONSE_STREAM);
  // Refusals.
  EXPECT_EQ(Run({"probe", "--target", "canary", "--regions", "eu-west-1",
                 "--sizes", "2"}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("has no region \"eu-west-1\""));
  EXPECT_EQ(Run({"probe", "--target", "canary", "--rate", "5"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--rate only goes with --direct"));
  EXPECT_EQ(Run({"probe", "--target", "canary", "--count", "20000"}),
            kExitUsage);
  EXPECT_EQ(Run({"probe", "--direct", "--target", "canary"}, false),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--target goes with probes through"));
}

TEST_F(ControllerCommandsTest, VerdictsAndRemoteAnalyze) {
  ASSERT_EQ(Run({"verdicts"}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("no verdict other than healthy"));
  v1::Verdict v;
  v.set_kind(v1::MODE_DIFFERENCE);
  v.set_state(v1::REGRESSION);
  v.mutable_key()->set_region("us-east-1");
  v.mutable_key()->set_target("canary");
  v.mutable_evidence()->set_summary("stream 12/400 vs buffered 0/400");
  ASSERT_TRUE(store_->AppendVerdict(v).ok());
  ASSERT_EQ(Run({"verdicts"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("MODE_DIFFERENCE"));
  EXPECT_THAT(out_.str(), HasSubstr("regression"));
  EXPECT_THAT(out_.str(), HasSubstr("stream 12/400 vs buffered 0/400"));
  EXPECT_EQ(Run({"verdicts", "--mode", "sideways"}), kExitUsage);
  ASSERT_EQ(Run({"analyze", "-o", "json"}), kExitOk) << err_.str();
  v1::AnalysisReport report;
  EXPECT_TRUE(JsonToMessage(out_.str(), &report).ok()) << out_.str();
  EXPECT_EQ(Run({"analyze", "--from", "2024-02-02T00:00:00Z", "--to",
                 "2024-02-01T00:00:00Z"}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("from"));
  EXPECT_EQ(Run({"analyze", "--from", "yesterday"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("RFC 3339"));
}

TEST_F(ControllerCommandsTest, OfflineAnalyze) {
  std::string lines;
  for (int i = 0; i < 30; ++i) {
    for (const char* mode : {"BUFFERED", "RESPONSE_STREAM"}) {
      absl::StrAppend(
          &lines, "{\"outcome\": {\"agent_id\": \"a\", \"region\": \"r1\", ",
          "\"target\": \"canary\", \"mode\": \"", mode,
          "\", \"requested_bytes\": \"1024\", \"start_time\": "
          "\"2024-01-30T10:",
          absl::StrFormat("%02d", i), ":00Z\", \"outcome_class\": \"OK\"}}\n");
    }
  }
  const std::string good = File("outcomes.jsonl", lines);
  ASSERT_EQ(Run({"analyze", good, "-o", "json"}, false), kExitOk) << err_.str();
  v1::AnalysisReport report;
  ASSERT_TRUE(JsonToMessage(out_.str(), &report).ok()) << out_.str();
  EXPECT_EQ(report.outcomes(), 60u);
  ASSERT_EQ(Run({"analyze", good, "--fix-time", "2024-01-30T10:10:00Z"}, false),
            kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("outcomes: 60"));
  EXPECT_THAT(out_.str(), HasSubstr("declared fix: 2024-01-30T10:10:00Z"));
  EXPECT_THAT(out_.str(), HasSubstr("STREAM_HEALTH"));
  const std::string bad =
      File("bad.jsonl", lines.substr(0, lines.find('\n') + 1) + "{nope\n");
  EXPECT_EQ(Run({"analyze", bad}, false), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("line 2"));
  EXPECT_EQ(Run({"analyze", "/nonexistent.jsonl"}, false), kExitUsage);
  EXPECT_EQ(Run({"analyze", good, "--region", "r1"}, false), kExitUsage);
  EXPECT_THAT(err_.str(), Not(HasSubstr("Segmentation")));
}

TEST_F(ControllerCommandsTest, WatchPrintsOnlyMatchingVerdicts) {
  // Verdicts are stored with increasing `updated` times, as the engine does.
  absl::Time updated = absl::InfinitePast();
  auto append = [&](v1::VerdictKind kind, const std::string& region,
                    v1::VerdictState previous, v1::VerdictState state,
                    const std::string& summary) {
    v1::Verdict v;
    v.set_kind(kind);
    v.set_previous_state(previous);
    v.set_state(state);
    v.mutable_key()->set_region(region);
    v.mutable_key()->set_target("canary");
    v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
    v.mutable_evidence()->set_summary(summary);
    // Transitions are read from the store by `updated`, from when the
    // watch began: stamp them now, in increasing order.
    updated = std::max(updated + absl::Milliseconds(1), absl::Now());
    v.mutable_updated()->set_seconds(absl::ToUnixSeconds(updated));
    v.mutable_updated()->set_nanos(static_cast<int32_t>(
        (updated - absl::FromUnixSeconds(absl::ToUnixSeconds(updated))) /
        absl::Nanoseconds(1)));
    ASSERT_TRUE(store_->AppendVerdict(v).ok());
  };
  // Current state: one match, one other region.
  append(v1::MODE_DIFFERENCE, "eu-west-1", v1::HEALTHY, v1::REGRESSION,
         "other-region-current");
  append(v1::MODE_DIFFERENCE, "us-east-1", v1::HEALTHY, v1::REGRESSION,
         "match-current");

  auto watch = testing::Process::Spawn(
      testing::BinaryPath("cli/canaryctl"),
      {"verdicts", "--watch", "--region", "us-east-1", "-o", "json",
       "--controller", address_, "--insecure", "--token-file", token_file_},
      absl::StrCat(::testing::TempDir(), "/watch_", getpid(), ".stderr"));
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto next_summary = [&]() -> std::string {
    auto line = (*watch)->WaitForLine("{", absl::Seconds(30));
    if (!line.ok()) return line.status().ToString();
    v1::Verdict v;
    if (!JsonToMessage(*line, &v).ok()) return "unparsable: " + *line;
    return v.evidence().summary();
  };
  // The current verdicts come first: only the matching one.
  EXPECT_EQ(next_summary(), "match-current");

  // Transitions, in order. Each line read is the next one printed, so a
  // filtered verdict appended before a printed one was never printed.
  append(v1::SIZE_TREND, "eu-west-1", v1::HEALTHY, v1::SUSPECT,
         "other-region-transition");
  append(v1::STREAM_HEALTH, "us-east-1", v1::HEALTHY, v1::HEALTHY,
         "healthy-refresh");
  append(v1::SIZE_TREND, "us-east-1", v1::HEALTHY, v1::SUSPECT,
         "match-suspect");
  EXPECT_EQ(next_summary(), "match-suspect");
  append(v1::MODE_DIFFERENCE, "ap-southeast-2", v1::REGRESSION, v1::HEALTHY,
         "other-region-recovery");
  // A return to HEALTHY is a transition worth a line.
  append(v1::MODE_DIFFERENCE, "us-east-1", v1::REGRESSION, v1::HEALTHY,
         "match-recovered");
  EXPECT_EQ(next_summary(), "match-recovered");

  (*watch)->Signal(SIGINT);
  EXPECT_TRUE((*watch)->Wait(absl::Seconds(30)).has_value());
}

TEST_F(ControllerCommandsTest, WatchRefusesABadFilterNamingTheFlag) {
  EXPECT_EQ(Run({"verdicts", "--watch", "--mode", "sideways"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--mode"));
}

TEST_F(ControllerCommandsTest, OfflineReportInEveryFormat) {
  std::string lines;
  for (int i = 0; i < 30; ++i) {
    for (const char* mode : {"BUFFERED", "RESPONSE_STREAM"}) {
      const bool bad = i % 10 == 0 && std::string(mode) == "RESPONSE_STREAM";
      absl::StrAppend(
          &lines, "{\"outcome\": {\"agent_id\": \"a\", \"region\": \"r1\", ",
          "\"target\": \"canary\", \"mode\": \"", mode,
          "\", \"requested_bytes\": \"1024\", \"start_time\": "
          "\"2024-01-30T10:",
          absl::StrFormat("%02d", i), ":00Z\", \"outcome_class\": \"",
          bad ? "TRUNCATED\", \"platform_request_id\": \"rid-" : "OK",
          bad ? absl::StrCat(i, "\"") : "\"", "}}\n");
    }
  }
  const std::string file = File("report-outcomes.jsonl", lines);
  ASSERT_EQ(
      Run({"report", "--file", file, "--target", "canary", "--format", "json"},
          false),
      kExitOk)
      << err_.str();
  v1::IncidentReport report;
  ASSERT_TRUE(JsonToMessage(out_.str(), &report).ok()) << out_.str();
  EXPECT_EQ(report.probes(), 60u);
  EXPECT_EQ(report.failures(), 3u);
  EXPECT_EQ(report.failing_samples_size(), 3);
  EXPECT_EQ(report.source(), file);
  const std::string md = File("report-out.markdown", "");
  ASSERT_EQ(Run({"report", "--file", file, "--target", "canary", "--format",
                 "markdown", "--out", md, "--from", "2024-01-30T10:00:00Z",
                 "--to", "2024-01-30T10:15:00Z"},
                false),
            kExitOk)
      << err_.str();
  std::ifstream in(md);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("# Incident evidence report: canary"));
  EXPECT_THAT(text.str(), HasSubstr("`rid-10`"));
  EXPECT_THAT(text.str(), Not(HasSubstr("`rid-20`")));  // Outside --to.
  ASSERT_EQ(
      Run({"report", "--file", file, "--target", "canary", "--format", "html"},
          false),
      kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("<svg"));
  // Bad input names the flag.
  EXPECT_EQ(Run({"report", "--file", file, "--format", "html"}, false),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--target"));
  EXPECT_EQ(
      Run({"report", "--file", file, "--target", "canary", "--format", "pdf"},
          false),
      kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--format"));
  EXPECT_EQ(
      Run({"report", "--file", file, "--target", "nope", "--format", "json"},
          false),
      kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("no scheduled probes"));
  EXPECT_EQ(Run({"report", "--file", file, "--target", "canary", "--format",
                 "json", "--since", "1h", "--from", "2024-01-30T10:00:00Z"},
                false),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--since"));
}

TEST_F(ControllerCommandsTest, ReportThroughTheController) {
  EXPECT_EQ(Run({"report", "--target", "canary", "--format", "json"}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("needs a window"));
  // Nothing stored for the target yet: NOT_FOUND from the RPC.
  EXPECT_EQ(Run({"report", "--target", "canary", "--format", "json", "--since",
                 "1h"}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("no scheduled probes"));
  controller::WriteBatch batch;
  controller::StreamMinute m;
  m.key = {"us-east-1", "canary", v1::BUFFERED, 2, false};
  m.minute = controller::MinuteOf(absl::Now()) - 5;
  m.stats.counts[v1::OK] = 40;
  m.stats.counts[v1::HTTP_5XX] = 2;
  batch.minutes.push_back(m);
  ASSERT_TRUE(store_->Commit(batch, nullptr).ok());
  ASSERT_EQ(Run({"report", "--target", "canary", "--format", "json", "--since",
                 "1h"}),
            kExitOk)
      << err_.str();
  v1::IncidentReport report;
  ASSERT_TRUE(JsonToMessage(out_.str(), &report).ok()) << out_.str();
  EXPECT_EQ(report.probes(), 42u);
  EXPECT_EQ(report.failures(), 2u);
  EXPECT_EQ(report.source(), "controller store");
}

}  // namespace
}  // namespace cli
}  // namespace fleetcanary
