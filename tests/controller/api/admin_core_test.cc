// AdminCore without gRPC: a real Scheduler over the memory store, agents
// faked at the session boundary (what the core sends them is recorded; their
// results are fed back as AdhocResults and committed outcomes), a simulated
// clock.
#include "controller/api/admin_core.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/config/loader.h"
#include "common/time/clock.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

class NullListener : public AssignmentListener {
 public:
  void OnAssignments(const v1::AssignmentSet&) override {}
};

// Records every event; OnDone once.
class TestSink : public ProbeEventSink {
 public:
  explicit TestSink(size_t accept_outcomes = SIZE_MAX)
      : accept_outcomes_(accept_outcomes) {}
  bool OnEvent(v1::RunProbeEvent e) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(done_) << "event after OnDone";
    if (e.has_outcome() && outcomes_ >= accept_outcomes_) return false;
    if (e.has_outcome()) ++outcomes_;
    events_.push_back(std::move(e));
    return true;
  }
  void OnDone(const absl::Status& s) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(done_) << "OnDone twice";
    done_ = true;
    status_ = s;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::vector<v1::RunProbeEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  v1::RunProbeEvent::Done last_done() {
    absl::MutexLock lock(&mu_);
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
      if (it->has_done()) return it->done();
    }
    return {};
  }

 private:
  const size_t accept_outcomes_;
  absl::Mutex mu_;
  std::vector<v1::RunProbeEvent> events_ ABSL_GUARDED_BY(mu_);
  size_t outcomes_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

constexpr char kFleet[] = R"(
targets:
- name: canary
  regions:
  - region: r1
    urls:
    - {mode: BUFFERED, url: "https://b1.lambda-url.r1.on.aws/"}
    - {mode: RESPONSE_STREAM, url: "https://s1.lambda-url.r1.on.aws/"}
  - region: r2
    urls:
    - {mode: BUFFERED, url: "https://b2.lambda-url.r2.on.aws/"}
    - {mode: RESPONSE_STREAM, url: "https://s2.lambda-url.r2.on.aws/"}
  - region: r3
    urls:
    - {mode: BUFFERED, url: "https://b3.lambda-url.r3.on.aws/"}
)";

class AdminCoreTest : public ::testing::Test {
 protected:
  // Threads that wait on clock_: the scheduler's timer and the core's timer.
  static constexpr int kClockThreads = 2;

  void SetUp() override {
    store_ = CreateMemoryStore();
    SchedulerOptions so;
    so.heartbeat_interval = absl::Seconds(10);
    auto scheduler = Scheduler::Create(so, store_.get(), &clock_);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(*scheduler);
    auto verdicts = CreateStoreVerdictSource({}, store_.get(), &clock_);
    ASSERT_TRUE(verdicts.ok());
    verdicts_ = std::move(*verdicts);
    MakeCore({});
    v1::FleetConfig fleet;
    ASSERT_TRUE(ParseYamlToMessage(kFleet, "fleet.yaml", &fleet).ok());
    v1::ApplySchedulesRequest req;
    *req.mutable_targets() = fleet.targets();
    ASSERT_TRUE(core_->ApplySchedules(req).ok());
  }
  void TearDown() override {
    if (core_) core_->Shutdown();
    scheduler_->Shutdown();
  }

  void MakeCore(TargetGuardOptions guard) {
    if (core_) core_->Shutdown();
    AdminCoreOptions o;
    o.guard = std::move(guard);
    o.seed = 42;
    AdminCoreDeps d;
    d.scheduler = scheduler_.get();
    d.verdicts = verdicts_.get();
    d.store = store_.get();
    d.clock = &clock_;
    d.send_adhoc = [this](const std::string& agent,
                          const v1::AdhocProbe& p) -> absl::Status {
      absl::MutexLock lock(&mu_);
      if (unreachable_.count(agent)) return absl::NotFoundError("no session");
      sent_[agent].push_back(p);
      return absl::OkStatus();
    };
    auto core = AdminCore::Create(o, d);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }

  void Connect(const std::string& id, const std::string& region) {
    v1::Hello h;
    h.set_agent_id(id);
    h.set_region(region);
    h.set_version("test");
    scheduler_->AgentConnected(h, &listener_);
  }

  std::vector<v1::AdhocProbe> Sent(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    return sent_[agent];
  }

  // Plays agent `agent` executing `p`: every probe, failing the ones for
  // which `fail` says so; results live and (duplicated) through ingest.
  void Execute(const std::string& agent, const v1::AdhocProbe& p,
               const std::function<bool(v1::InvokeMode, uint64_t, int)>& fail) {
    std::vector<v1::Outcome> all;
    for (uint32_t i = 0; i < p.count(); ++i) {
      for (uint64_t size : p.sizes()) {
        for (const v1::FunctionUrl& u : p.urls()) {
          v1::Outcome o;
          o.set_agent_id(agent);
          o.set_region(p.region());
          o.set_target(p.target());
          o.set_mode(u.mode());
          o.set_requested_bytes(size);
          o.set_adhoc_id(p.adhoc_id());
          o.set_probe_id(absl::StrCat(agent, "-", ++probe_ids_));
          o.set_outcome_class(fail(u.mode(), size, i) ? v1::HTTP_5XX : v1::OK);
          *o.mutable_timings()->mutable_headers_received() =
              TimeUtil::MillisecondsToDuration(5);
          *o.mutable_timings()->mutable_total() =
              TimeUtil::MillisecondsToDuration(10);
          o.set_received_bytes(size);
          all.push_back(o);
        }
      }
    }
    CommittedBatch batch;
    for (size_t i = 0; i < all.size(); ++i) {
      v1::AdhocResult r;
      r.set_adhoc_id(p.adhoc_id());
      *r.mutable_outcome() = all[i];
      r.set_done(i + 1 == all.size());
      core_->OnAdhocResult(agent, r);
      if (i % 2 == 0) batch.outcomes.push_back(all[i]);  // Duplicates.
    }
    core_->OnCommitted(batch);
  }

  absl::Status Run(const std::string& yaml, TestSink* sink) {
    v1::RunProbeRequest req;
    absl::Status s = ParseYamlToMessage(yaml, "request", &req);
    if (!s.ok()) return s;
    return core_->RunProbe(req, sink).status();
  }

  // Sinks outlive the core (runs still open at the end are cancelled then).
  TestSink* NewSink(size_t accept_outcomes = SIZE_MAX) {
    sinks_.push_back(std::make_unique<TestSink>(accept_outcomes));
    return sinks_.back().get();
  }

  std::vector<std::unique_ptr<TestSink>> sinks_;
  SimulatedClock clock_{absl::FromUnixSeconds(1706745600)};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<VerdictSource> verdicts_;
  std::unique_ptr<AdminCore> core_;
  NullListener listener_;
  int probe_ids_ = 0;
  absl::Mutex mu_;
  std::map<std::string, std::vector<v1::AdhocProbe>> sent_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unreachable_ ABSL_GUARDED_BY(mu_);
};

// ---- RunProbe ----

TEST_F(AdminCoreTest, RunProbeSplitsCountOverLiveAgentsAndSummarizes) {
  Connect("a1", "r1");
  Connect("a2", "r1");
  Connect("b1", "r2");
  TestSink& sink = *NewSink();
  v1::RunProbeRequest req;
  req.set_target("canary");
  req.add_regions("r1");
  req.add_regions("r2");
  req.add_sizes(2);
  req.add_sizes(1024);
  req.set_count(7);
  req.set_concurrency(4);
  req.set_stream_outcomes(true);
  auto run = core_->RunProbe(req, &sink);
  ASSERT_TRUE(run.ok()) << run.status();
  // r1: 7 split 4 + 3 over a1, a2; r2: all 7 on b1.
  ASSERT_EQ(Sent("a1").size(), 1u);
  ASSERT_EQ(Sent("a2").size(), 1u);
  ASSERT_EQ(Sent("b1").size(), 1u);
  EXPECT_EQ(Sent("a1")[0].count(), 4u);
  EXPECT_EQ(Sent("a2")[0].count(), 3u);
  EXPECT_EQ(Sent("b1")[0].count(), 7u);
  EXPECT_EQ(Sent("a1")[0].concurrency(), 2u);
  EXPECT_EQ(Sent("a1")[0].urls_size(), 2);
  EXPECT_EQ(Sent("a1")[0].adhoc_id(), (*run)->id());
  EXPECT_FALSE(sink.done());
  // Stream 1KiB fails every other probe in r1.
  auto fail = [](v1::InvokeMode m, uint64_t size, int i) {
    return m == v1::RESPONSE_STREAM && size == 1024 && i % 2 == 0;
  };
  Execute("a1", Sent("a1")[0], fail);
  Execute("a2", Sent("a2")[0], fail);
  EXPECT_FALSE(sink.done());
  Execute("b1", Sent("b1")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
  ASSERT_TRUE(sink.done());
  EXPECT_TRUE(sink.status().ok()) << sink.status();

  int dispatched = 0, outcomes = 0, region_summaries = 0;
  for (const auto& e : sink.events()) {
    dispatched += e.has_dispatched();
    outcomes += e.has_outcome();
    region_summaries += e.has_region_summary();
  }
  EXPECT_EQ(dispatched, 2);
  EXPECT_EQ(outcomes, 2 * 7 * 2 * 2);  // Regions x count x sizes x modes.
  EXPECT_EQ(region_summaries, 2 * 2 * 2);
  v1::RunProbeEvent::Done done = sink.last_done();
  EXPECT_EQ(done.total_probes(), 56u);
  EXPECT_EQ(done.missing_probes(), 0u);
  EXPECT_FALSE(done.cancelled());
  ASSERT_EQ(done.summaries_size(), 8);
  for (const v1::ProbeSummary& s : done.summaries()) {
    EXPECT_EQ(s.probes(), 7u);
    const bool failing = s.region() == "r1" &&
                         s.mode() == v1::RESPONSE_STREAM &&
                         s.size_bytes() == 1024;
    // a1 ran rounds 0..3 (fails 0, 2), a2 rounds 0..2 (fails 0, 2).
    EXPECT_EQ(s.by_class().count("HTTP_5XX") ? s.by_class().at("HTTP_5XX") : 0,
              failing ? 4u : 0u)
        << s.ShortDebugString();
  }
  EXPECT_EQ(core_->active_runs(), 0);
}

TEST_F(AdminCoreTest, RunProbeOnlyRequestedModes) {
  Connect("a1", "r1");
  TestSink& sink = *NewSink();
  ASSERT_TRUE(Run("target: canary\nregions: [r1]\nmodes: [RESPONSE_STREAM]\n"
                  "sizes: [2]\ncount: 1\n",
                  &sink)
                  .ok());
  ASSERT_EQ(Sent("a1").size(), 1u);
  ASSERT_EQ(Sent("a1")[0].urls_size(), 1);
  EXPECT_EQ(Sent("a1")[0].urls(0).mode(), v1::RESPONSE_STREAM);
}

TEST_F(AdminCoreTest, RunProbeCarriesTheTargetsRole) {
  v1::ApplySchedulesRequest req;
  ASSERT_TRUE(
      ParseYamlToMessage("targets:\n- name: canary\n"
                         "  role_arn: arn:aws:iam::210987654321:role/canary\n"
                         "  regions:\n  - region: r1\n    urls:\n"
                         "    - {mode: BUFFERED, url: "
                         "'https://b1.lambda-url.r1.on.aws/'}\n",
                         "fleet", &req)
          .ok());
  ASSERT_TRUE(core_->ApplySchedules(req).ok());
  Connect("a1", "r1");
  ASSERT_TRUE(Run("target: canary\nsizes: [2]\ncount: 1\n", NewSink()).ok());
  ASSERT_EQ(Sent("a1").size(), 1u);
  EXPECT_EQ(Sent("a1")[0].role_arn(), "arn:aws:iam::210987654321:role/canary");
  // A malformed role is refused naming the field; nothing changes.
  req.mutable_targets(0)->set_role_arn("arn:aws:iam::1:role/x");
  const absl::Status bad = core_->ApplySchedules(req).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()),
              ::testing::HasSubstr("targets[0].role_arn"));
}

struct BadCase {
  const char* yaml;
  absl::StatusCode code;
  const char* message;
};

TEST_F(AdminCoreTest, RunProbeRefusesBadRequestsNamingTheField) {
  Connect("a1", "r1");
  Connect("old", "r2");
  scheduler_->AgentDisconnected("old", &listener_);
  const std::vector<BadCase> cases = {
      {"sizes: [2]\ncount: 1\n", absl::StatusCode::kInvalidArgument, "target:"},
      {"target: canary\nurls: [{mode: BUFFERED, url: "
       "'https://x.lambda-url.r1.on.aws/'}]\n"
       "sizes: [2]\ncount: 1\n",
       absl::StatusCode::kInvalidArgument, "urls:"},
      {"target: canary\nsizes: [2]\n", absl::StatusCode::kInvalidArgument,
       "count: required"},
      {"target: canary\nsizes: [2]\ncount: 10001\n",
       absl::StatusCode::kInvalidArgument, "count"},
      {"target: canary\ncount: 1\n", absl::StatusCode::kInvalidArgument,
       "sizes"},
      {"target: canary\nsizes: [2, 0]\ncount: 1\n",
       absl::StatusCode::kInvalidArgument, "sizes[1]: must be > 0"},
      {"target: canary\nsizes: [2, 2]\ncount: 1\n",
       absl::StatusCode::kInvalidArgument, "sizes[1]: duplicate"},
      {"target: canary\nsizes: "
       "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,"
       "20,21,22,23,24,25,26,27,28,29,30,31,32,33]\ncount: 1\n",
       absl::StatusCode::kInvalidArgument, "sizes"},
      {"target: canary\nsizes: [2]\ncount: 1\nconcurrency: 1001\n",
       absl::StatusCode::kInvalidArgument, "concurrency"},
      {"target: canary\nsizes: [2]\ncount: 1\nmodes: [BUFFERED, BUFFERED]\n",
       absl::StatusCode::kInvalidArgument, "modes[1]: duplicate"},
      {"target: canary\nsizes: [2]\ncount: 1\nregions: [r1, r1]\n",
       absl::StatusCode::kInvalidArgument, "regions[1]: duplicate"},
      {"target: canary\nsizes: [2]\ncount: 1\ntransport: {http_version: '3'}\n",
       absl::StatusCode::kInvalidArgument, "transport.http_version"},
      {"target: canary\nsizes: [2]\ncount: 1\nlimits: {timeout: 2h}\n",
       absl::StatusCode::kInvalidArgument, "limits.timeout"},
      {"target: canary\nsizes: [1Ki]\ncount: 1\nlimits: {max_body_bytes: "
       "100}\n",
       absl::StatusCode::kInvalidArgument, "sizes[0]"},
      {"target: canary\ncount: 10000\nregions: [r1, r2]\n"
       "sizes: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,"
       "24,25,26,27,28,29,30,31,32]\n",
       absl::StatusCode::kInvalidArgument, "count: 10000 x 32 sizes"},
      {"target: nope\nsizes: [2]\ncount: 1\n", absl::StatusCode::kNotFound,
       "target: \"nope\" is not registered"},
      {"target: canary\nregions: [r9]\nsizes: [2]\ncount: 1\n",
       absl::StatusCode::kNotFound,
       "regions[0]: target \"canary\" has no region \"r9\""},
      {"target: canary\nregions: [r2]\nsizes: [2]\ncount: 1\n",
       absl::StatusCode::kFailedPrecondition,
       "region \"r2\" has no live agent"},
      {"target: canary\nsizes: [2]\ncount: 1\n",  // r2, r3 have no live agent.
       absl::StatusCode::kFailedPrecondition, "has no live agent"},
      {"target: canary\nregions: [r3]\nmodes: [RESPONSE_STREAM]\nsizes: [2]\n"
       "count: 1\n",
       absl::StatusCode::kInvalidArgument, "no URL in the requested modes"},
      {"urls: [{mode: BUFFERED, url: 'http://169.254.169.254/'}]\nsizes: [2]\n"
       "count: 1\n",
       absl::StatusCode::kPermissionDenied, "urls[0].url: target guard"},
      {"urls: [{mode: BUFFERED, url: 'http://evil.example.com/'}]\nsizes: [2]\n"
       "count: 1\n",
       absl::StatusCode::kPermissionDenied, "not in the target allowlist"},
      {"urls: [{mode: BUFFERED, url: 'not a url'}]\nsizes: [2]\ncount: 1\n",
       absl::StatusCode::kInvalidArgument, "urls[0].url"},
      {"urls: [{url: 'https://x.lambda-url.r1.on.aws/'}]\nsizes: [2]\ncount: "
       "1\n",
       absl::StatusCode::kInvalidArgument, "urls[0].mode"},
      {"urls: [{mode: BUFFERED, url: 'https://x.lambda-url.r1.on.aws/'}]\n"
       "regions: [mars]\nsizes: [2]\ncount: 1\n",
       absl::StatusCode::kNotFound, "regions[0]: unknown region \"mars\""},
  };
  for (const BadCase& c : cases) {
    TestSink& sink = *NewSink();
    absl::Status s = Run(c.yaml, &sink);
    EXPECT_EQ(s.code(), c.code) << c.yaml << " -> " << s;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.yaml;
    EXPECT_TRUE(sink.events().empty());
  }
  EXPECT_TRUE(Sent("a1").empty());  // Nothing was dispatched.
}

TEST_F(AdminCoreTest, ExplicitUrlsNeedTheAllowlist) {
  Connect("a1", "r1");
  const std::string yaml =
      "urls: [{mode: BUFFERED, url: 'http://127.0.0.1:9/'}]\nsizes: [2]\n"
      "count: 1\n";
  TestSink& refused = *NewSink();
  EXPECT_EQ(Run(yaml, &refused).code(), absl::StatusCode::kPermissionDenied);
  TargetGuardOptions host_only;
  host_only.allowed_hosts = {"127.0.0.1"};
  MakeCore(host_only);
  TestSink& loopback = *NewSink();
  absl::Status s = Run(yaml, &loopback);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("loopback"));
  TargetGuardOptions demo = host_only;
  demo.allow_loopback = true;
  MakeCore(demo);
  TestSink& ok = *NewSink();
  ASSERT_TRUE(Run(yaml, &ok).ok());
  ASSERT_EQ(Sent("a1").size(), 1u);
  EXPECT_EQ(Sent("a1")[0].region(), "r1");  // Regions of live agents.
  EXPECT_EQ(Sent("a1")[0].urls(0).url(), "http://127.0.0.1:9/");
  // Hosts of registered targets are allowed without a flag.
  MakeCore({});
  TestSink& target_host = *NewSink();
  EXPECT_TRUE(
      Run("urls: [{mode: BUFFERED, url: 'https://b1.lambda-url.r1.on.aws/'}]\n"
          "sizes: [2]\ncount: 1\n",
          &target_host)
          .ok());
}

TEST_F(AdminCoreTest, CancelSendsCancelToBusyAgentsAndEndsTheRun) {
  Connect("a1", "r1");
  Connect("a2", "r1");
  TestSink& sink = *NewSink();
  v1::RunProbeRequest req;
  ASSERT_TRUE(ParseYamlToMessage("target: canary\nregions: [r1]\nsizes: [2]\n"
                                 "count: 100\n",
                                 "r", &req)
                  .ok());
  auto run = core_->RunProbe(req, &sink);
  ASSERT_TRUE(run.ok());
  // a1 finishes its share; a2 is still busy.
  Execute("a1", Sent("a1")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
  (*run)->Cancel();
  ASSERT_TRUE(sink.done());
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kCancelled);
  ASSERT_EQ(Sent("a2").size(), 2u);
  EXPECT_TRUE(Sent("a2")[1].cancel());
  EXPECT_EQ(Sent("a2")[1].adhoc_id(), (*run)->id());
  EXPECT_EQ(Sent("a1").size(), 1u);  // Done agents get no cancel.
  v1::RunProbeEvent::Done done = sink.last_done();
  EXPECT_TRUE(done.cancelled());
  EXPECT_EQ(done.total_probes(), 100u);
  EXPECT_EQ(done.missing_probes(), 100u);
  (*run)->Cancel();  // Idempotent.
  EXPECT_EQ(Sent("a2").size(), 2u);
  // Late results are ignored.
  Execute("a2", Sent("a2")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
}

TEST_F(AdminCoreTest, LostAgentEndsItsShareAndTheRunSaysSo) {
  Connect("a1", "r1");
  Connect("a2", "r1");
  TestSink& sink = *NewSink();
  ASSERT_TRUE(
      Run("target: canary\nregions: [r1]\nsizes: [2]\ncount: 4\n", &sink).ok());
  Execute("a1", Sent("a1")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
  EXPECT_FALSE(sink.done());
  scheduler_->AgentDisconnected("a2", &listener_);
  // The core's timer notices on its next check.
  ASSERT_TRUE(testing::AdvanceUntil(&clock_, kClockThreads,
                                    absl::Milliseconds(200), 100,
                                    [&] { return sink.done(); }));
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(sink.status().message(), HasSubstr("agents lost: a2"));
  v1::RunProbeEvent::Done done = sink.last_done();
  ASSERT_EQ(done.lost_agents_size(), 1);
  EXPECT_EQ(done.lost_agents(0), "a2");
  EXPECT_EQ(done.missing_probes(), 4u);  // 2 rounds x 2 modes on a2.
  EXPECT_EQ(done.total_probes(), 4u);
}

// An agent keeps probing an ad-hoc run across reconnects: a cancel it could
// not receive while LOST reaches it when it is back, once.
TEST_F(AdminCoreTest, CancelMissedWhileLostIsResentWhenTheAgentReconnects) {
  Connect("a1", "r1");
  Connect("a2", "r1");
  TestSink& sink = *NewSink();
  ASSERT_TRUE(
      Run("target: canary\nregions: [r1]\nsizes: [2]\ncount: 4\n", &sink).ok());
  ASSERT_EQ(Sent("a2").size(), 1u);
  const std::string adhoc_id = Sent("a2")[0].adhoc_id();
  Execute("a1", Sent("a1")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
  // a2 is LOST and its stream is gone: the cancel cannot reach it.
  {
    absl::MutexLock lock(&mu_);
    unreachable_.insert("a2");
  }
  scheduler_->AgentDisconnected("a2", &listener_);
  ASSERT_TRUE(testing::AdvanceUntil(&clock_, kClockThreads,
                                    absl::Milliseconds(200), 100,
                                    [&] { return sink.done(); }));
  EXPECT_EQ(Sent("a2").size(), 1u);
  EXPECT_EQ(core_->pending_cancels(), 1u);
  // Another agent connecting changes nothing for a2.
  core_->OnAgentConnected("a1");
  EXPECT_EQ(Sent("a1").size(), 1u);
  // a2 is back.
  {
    absl::MutexLock lock(&mu_);
    unreachable_.erase("a2");
  }
  Connect("a2", "r1");
  core_->OnAgentConnected("a2");
  ASSERT_EQ(Sent("a2").size(), 2u);
  EXPECT_TRUE(Sent("a2")[1].cancel());
  EXPECT_EQ(Sent("a2")[1].adhoc_id(), adhoc_id);
  EXPECT_EQ(core_->pending_cancels(), 0u);
  core_->OnAgentConnected("a2");  // Delivered: not sent again.
  EXPECT_EQ(Sent("a2").size(), 2u);
}

// Cancelled by the operator while an agent is LOST (still unreachable when
// it reconnects the first time): kept until it is delivered.
TEST_F(AdminCoreTest, CancelOfLostAgentWaitsUntilItCanBeDelivered) {
  Connect("a1", "r1");
  TestSink& sink = *NewSink();
  v1::RunProbeRequest req;
  ASSERT_TRUE(ParseYamlToMessage("target: canary\nregions: [r1]\nsizes: [2]\n"
                                 "count: 4\n",
                                 "r", &req)
                  .ok());
  auto run = core_->RunProbe(req, &sink);
  ASSERT_TRUE(run.ok());
  {
    absl::MutexLock lock(&mu_);
    unreachable_.insert("a1");
  }
  (*run)->Cancel();
  ASSERT_TRUE(sink.done());
  EXPECT_EQ(core_->pending_cancels(), 1u);
  core_->OnAgentConnected("a1");  // Still unreachable: kept.
  EXPECT_EQ(core_->pending_cancels(), 1u);
  {
    absl::MutexLock lock(&mu_);
    unreachable_.erase("a1");
  }
  core_->OnAgentConnected("a1");
  ASSERT_EQ(Sent("a1").size(), 2u);
  EXPECT_TRUE(Sent("a1")[1].cancel());
  EXPECT_EQ(core_->pending_cancels(), 0u);
}

TEST_F(AdminCoreTest, UnreachableAgentAtDispatchIsLost) {
  Connect("a1", "r1");
  {
    absl::MutexLock lock(&mu_);
    unreachable_.insert("a1");
  }
  TestSink& sink = *NewSink();
  ASSERT_TRUE(
      Run("target: canary\nregions: [r1]\nsizes: [2]\ncount: 1\n", &sink).ok());
  ASSERT_TRUE(sink.done());
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(AdminCoreTest, RunOutlivingItsDeadlineIsCancelled) {
  Connect("a1", "r1");
  TestSink& sink = *NewSink();
  ASSERT_TRUE(Run("target: canary\nregions: [r1]\nsizes: [2]\ncount: 1\n"
                  "limits: {timeout: 1s}\n",
                  &sink)
                  .ok());
  ASSERT_TRUE(testing::AdvanceUntil(
      &clock_, kClockThreads, absl::Milliseconds(200), 400, [&] {
        scheduler_->AgentHeartbeat("a1", v1::Heartbeat());  // Stays live.
        return sink.done();
      }));
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(Sent("a1").size(), 2u);
  EXPECT_TRUE(Sent("a1")[1].cancel());
}

TEST_F(AdminCoreTest, SlowReaderLosesOutcomeEventsNotSummaries) {
  Connect("a1", "r1");
  TestSink& sink = *NewSink(/*accept_outcomes=*/3);
  ASSERT_TRUE(Run("target: canary\nregions: [r1]\nsizes: [2]\ncount: 5\n"
                  "stream_outcomes: true\n",
                  &sink)
                  .ok());
  Execute("a1", Sent("a1")[0],
          [](v1::InvokeMode, uint64_t, int) { return false; });
  ASSERT_TRUE(sink.done());
  v1::RunProbeEvent::Done done = sink.last_done();
  EXPECT_EQ(done.total_probes(), 10u);
  EXPECT_EQ(done.dropped_outcome_events(), 7u);
  ASSERT_EQ(done.summaries_size(), 2);
}

// ---- Schedules ----

TEST_F(AdminCoreTest, ApplySchedulesIsIdempotentAndValidatesFirst) {
  v1::ApplySchedulesRequest req;
  ASSERT_TRUE(ParseYamlToMessage(
                  "schedules:\n- {id: ladder, target: canary, sizes: [2, 1Ki], "
                  "rate_per_second: 1}\n",
                  "r", &req)
                  .ok());
  auto first = core_->ApplySchedules(req);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->created(), ::testing::ElementsAre("ladder"));
  auto second = core_->ApplySchedules(req);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(second->unchanged(), ::testing::ElementsAre("ladder"));
  EXPECT_THAT(second->regions_without_agents(),
              ::testing::UnorderedElementsAre("r1", "r2", "r3"));
  auto dry = req;
  dry.mutable_schedules(0)->set_rate_per_second(2);
  dry.set_dry_run(true);
  auto d = core_->ApplySchedules(dry);
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(d->updated(), ::testing::ElementsAre("ladder"));
  EXPECT_EQ(core_->ListSchedules({})->schedules(0).rate_per_second(), 1);
}

TEST_F(AdminCoreTest, ApplySchedulesRefusesBadInputAndChangesNothing) {
  const std::vector<BadCase> cases = {
      {"targets: [{name: Canary, regions: [{region: r1, urls: [{mode: "
       "BUFFERED, "
       "url: 'https://x.lambda-url.r1.on.aws/'}]}]}]\n",
       absl::StatusCode::kInvalidArgument, "targets[0].name"},
      {"targets: [{name: t, regions: [{region: r1, urls: [{mode: BUFFERED, "
       "url: 'https://x/'}]}, {region: r1, urls: [{mode: BUFFERED, url: "
       "'https://y/'}]}]}]\n",
       absl::StatusCode::kInvalidArgument,
       "targets[0].regions[1].region: duplicate"},
      {"targets: [{name: t, regions: [{region: r1, urls: [{url: "
       "'https://x/'}]}]}]\n",
       absl::StatusCode::kInvalidArgument,
       "targets[0].regions[0].urls[0].mode"},
      {"targets: [{name: t, regions: [{region: r1, urls: [{mode: BUFFERED, "
       "url: "
       "'ftp://x/'}]}]}]\n",
       absl::StatusCode::kInvalidArgument, "targets[0].regions[0].urls[0].url"},
      {"targets: [{name: t, regions: [{region: r1, urls: [{mode: BUFFERED, "
       "url: "
       "'https://x/'}, {mode: BUFFERED, url: 'https://y/'}]}]}]\n",
       absl::StatusCode::kInvalidArgument, "two URLs for BUFFERED"},
      {"targets: [{name: t}]\n", absl::StatusCode::kInvalidArgument,
       "targets[0].regions"},
      {"schedules: [{id: Bad_Id, target: canary, sizes: [2], rate_per_second: "
       "1}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].id"},
      {"schedules: [{id: a, target: canary, sizes: [2], rate_per_second: 1}, "
       "{id: a, target: canary, sizes: [2], rate_per_second: 1}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[1].id: duplicate"},
      {"schedules: [{id: a, target: nope, sizes: [2], rate_per_second: 1}]\n",
       absl::StatusCode::kInvalidArgument,
       "schedules[0].target: unknown target"},
      {"schedules: [{id: a, target: canary, regions: [r9], sizes: [2], "
       "rate_per_second: 1}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].regions[0]"},
      {"schedules: [{id: a, target: canary, sizes: [0], rate_per_second: 1}]\n",
       absl::StatusCode::kInvalidArgument,
       "schedules[0].sizes[0]: must be > 0"},
      {"schedules: [{id: a, target: canary, sizes: [2], rate_per_second: 1, "
       "modes: [INVOKE_MODE_UNSPECIFIED]}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].modes[0]"},
      {"schedules: [{id: a, target: canary, sizes: [2]}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].rate_per_second"},
      {"schedules: [{id: a, target: canary, sizes: [2], rate_per_second: "
       "5000}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].rate_per_second"},
      {"schedules: [{id: a, target: canary, sizes: [2], rate_per_second: 1, "
       "transport: {http_version: '0.9'}}]\n",
       absl::StatusCode::kInvalidArgument,
       "schedules[0].transport.http_version"},
      {"schedules: [{id: a, target: canary, rate_per_second: 1}]\n",
       absl::StatusCode::kInvalidArgument, "schedules[0].sizes"},
  };
  const std::string before = core_->ListSchedules({})->SerializeAsString();
  for (const BadCase& c : cases) {
    v1::ApplySchedulesRequest req;
    // Some cases are refused by the YAML schema already; the API must refuse
    // the same message built in code.
    absl::Status parsed = ParseYamlToMessage(c.yaml, "r", &req);
    if (!parsed.ok()) {
      EXPECT_THAT(parsed.message(), HasSubstr(c.message)) << c.yaml;
      continue;
    }
    auto r = core_->ApplySchedules(req);
    EXPECT_EQ(r.status().code(), c.code) << c.yaml << " -> " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message)) << c.yaml;
  }
  EXPECT_EQ(core_->ListSchedules({})->SerializeAsString(), before);
  // Built in code: what the YAML schema would have refused.
  v1::ApplySchedulesRequest req;
  v1::Schedule* s = req.add_schedules();
  s->set_id("a");
  s->set_target("canary");
  s->add_sizes(2);
  s->set_rate_per_second(5000);
  EXPECT_THAT(core_->ApplySchedules(req).status().message(),
              HasSubstr("schedules[0].rate_per_second"));
}

TEST_F(AdminCoreTest, DeleteSchedule) {
  v1::DeleteScheduleRequest req;
  EXPECT_THAT(core_->DeleteSchedule(req).message(), HasSubstr("id"));
  EXPECT_EQ(core_->DeleteSchedule(req).code(),
            absl::StatusCode::kInvalidArgument);
  req.set_id(std::string(64, 'a'));
  EXPECT_EQ(core_->DeleteSchedule(req).code(),
            absl::StatusCode::kInvalidArgument);
  req.set_id("nope");
  EXPECT_EQ(core_->DeleteSchedule(req).code(), absl::StatusCode::kNotFound);
  v1::ApplySchedulesRequest apply;
  ASSERT_TRUE(
      ParseYamlToMessage("schedules:\n- {id: x, target: canary, sizes: [2], "
                         "rate_per_second: 1}\n",
                         "r", &apply)
          .ok());
  ASSERT_TRUE(core_->ApplySchedules(apply).ok());
  req.set_id("x");
  EXPECT_TRUE(core_->DeleteSchedule(req).ok());
  EXPECT_EQ(core_->ListSchedules({})->schedules_size(), 0);
}

// ---- Agents ----

TEST_F(AdminCoreTest, ListAgents) {
  Connect("b1", "r2");
  Connect("a1", "r1");
  auto all = core_->ListAgents({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->agents_size(), 2);
  EXPECT_EQ(all->agents(0).agent_id(), "a1");  // Sorted by region, id.
  EXPECT_EQ(all->agents(0).state(), v1::LIVE);
  EXPECT_EQ(all->agents(0).version(), "test");
  v1::ListAgentsRequest r2;
  r2.set_region("r2");
  ASSERT_EQ(core_->ListAgents(r2)->agents_size(), 1);
  r2.set_region("r3");  // Known from the target, no agent: empty, not an error.
  EXPECT_TRUE(core_->ListAgents(r2).ok());
  r2.set_region("mars");
  EXPECT_EQ(core_->ListAgents(r2).status().code(), absl::StatusCode::kNotFound);
  r2.set_region(std::string(65, 'r'));
  EXPECT_EQ(core_->ListAgents(r2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(core_->ListAgents(r2).status().message(), HasSubstr("region"));
}

// ---- Verdicts ----

v1::Verdict MakeVerdict(const std::string& region, v1::VerdictState state,
                        absl::Time t) {
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.mutable_key()->set_region(region);
  v.mutable_key()->set_target("canary");
  v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  v.mutable_key()->set_size_class("1KiB");
  v.set_state(state);
  *v.mutable_since() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
  *v.mutable_updated() = v.since();
  return v;
}

TEST_F(AdminCoreTest, GetVerdictsFromTheStore) {
  const absl::Time t = clock_.Now();
  ASSERT_TRUE(store_->AppendVerdict(MakeVerdict("r1", v1::SUSPECT, t)).ok());
  ASSERT_TRUE(store_
                  ->AppendVerdict(
                      MakeVerdict("r1", v1::REGRESSION, t + absl::Seconds(1)))
                  .ok());
  ASSERT_TRUE(store_->AppendVerdict(MakeVerdict("r2", v1::HEALTHY, t)).ok());
  v1::GetVerdictsRequest req;
  auto r = core_->GetVerdicts(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->verdicts_size(), 1);  // Latest per key, healthy hidden.
  EXPECT_EQ(r->verdicts(0).state(), v1::REGRESSION);
  req.set_include_healthy(true);
  EXPECT_EQ(core_->GetVerdicts(req)->verdicts_size(), 2);
  req.mutable_filter()->set_region("r2");
  EXPECT_EQ(core_->GetVerdicts(req)->verdicts_size(), 1);
  req.mutable_filter()->set_mode(static_cast<v1::InvokeMode>(7));
  EXPECT_THAT(core_->GetVerdicts(req).status().message(),
              HasSubstr("filter.mode"));
  req.mutable_filter()->set_mode(v1::BUFFERED);
  req.mutable_filter()->set_region(std::string(65, 'x'));
  EXPECT_EQ(core_->GetVerdicts(req).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCoreTest, WatchVerdictsSendsCurrentThenTransitions) {
  const absl::Time t = clock_.Now();
  ASSERT_TRUE(store_->AppendVerdict(MakeVerdict("r1", v1::SUSPECT, t)).ok());
  absl::Mutex mu;
  std::vector<v1::Verdict> got;
  v1::WatchVerdictsRequest req;
  req.mutable_filter()->set_region("r1");
  auto sub = core_->WatchVerdicts(req, [&](const v1::Verdict& v) {
    absl::MutexLock lock(&mu);
    got.push_back(v);
  });
  ASSERT_TRUE(sub.ok());
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].state(), v1::SUSPECT);
  }
  clock_.AdvanceTime(absl::Seconds(1));
  ASSERT_TRUE(
      store_->AppendVerdict(MakeVerdict("r2", v1::REGRESSION, clock_.Now()))
          .ok());
  ASSERT_TRUE(
      store_->AppendVerdict(MakeVerdict("r1", v1::REGRESSION, clock_.Now()))
          .ok());
  // The subscription's poller is a third thread on the clock; each step
  // ends with every poll it triggered delivered.
  ASSERT_TRUE(testing::AdvanceUntil(&clock_, kClockThreads + 1,
                                    absl::Milliseconds(500), 4, [&] {
                                      absl::MutexLock lock(&mu);
                                      return got.size() >= 2;
                                    }));
  sub->reset();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(got.size(), 2u);  // r2 is filtered out.
  EXPECT_EQ(got[1].state(), v1::REGRESSION);
  EXPECT_EQ(got[1].key().region(), "r1");

  req.mutable_filter()->set_mode(static_cast<v1::InvokeMode>(9));
  EXPECT_EQ(
      core_->WatchVerdicts(req, [](const v1::Verdict&) {}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCoreTest, AnalyzeChecksTheWindowAndRunsOverTheStore) {
  v1::AnalyzeRequest req;
  *req.mutable_from() = TimeUtil::SecondsToTimestamp(2000);
  *req.mutable_to() = TimeUtil::SecondsToTimestamp(1000);
  EXPECT_THAT(core_->Analyze(req).status().message(),
              HasSubstr("from: must be before to"));
  req.mutable_from()->set_nanos(-5);
  EXPECT_THAT(core_->Analyze(req).status().message(),
              HasSubstr("from: not a valid timestamp"));
  req.Clear();
  // Minutes of a stream: 100 probes a minute, all OK.
  WriteBatch batch;
  for (int m = 0; m < 30; ++m) {
    StreamMinute sm;
    sm.key = {"r1", "canary", v1::RESPONSE_STREAM, 1024, false};
    sm.minute = MinuteOf(clock_.Now()) + m;
    sm.stats.counts[v1::OK] = 100;
    batch.minutes.push_back(sm);
    StreamMinute adhoc = sm;
    adhoc.key.adhoc = true;
    adhoc.stats.counts[v1::HTTP_5XX] = 50;
    batch.minutes.push_back(adhoc);
  }
  ASSERT_TRUE(store_->Commit(batch, nullptr).ok());
  auto report = core_->Analyze(req);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcomes(), 30u * (100 + 150));  // Ad-hoc counted too.
  bool found = false;
  for (const v1::Verdict& v : report->verdicts()) {
    if (v.kind() == v1::STREAM_HEALTH) {
      found = true;
      EXPECT_EQ(v.state(), v1::HEALTHY) << v.ShortDebugString();
      EXPECT_EQ(v.key().size_class(), "1KiB");
    }
  }
  EXPECT_TRUE(found);  // Ad-hoc failures did not feed the verdict.
}

// A standby replica's core: reads from the shared store, changes and probes
// refused naming the leader.
TEST_F(AdminCoreTest, StandbyReadsTheStoreAndRefusesChangesNamingTheLeader) {
  WriteBatch b;
  b.agents.push_back({"a1", "r1", 42, 3, clock_.Now() - absl::Seconds(5)});
  b.agents.push_back({"a2", "r2", 7, 0, clock_.Now() - absl::Minutes(5)});
  ASSERT_TRUE(store_->Commit(b, nullptr).ok());
  ASSERT_TRUE(
      store_->AppendVerdict(MakeVerdict("r1", v1::SUSPECT, clock_.Now())).ok());
  AdminCoreDeps deps;
  deps.verdicts = verdicts_.get();
  deps.clock = &clock_;
  deps.standby_store = store_.get();
  deps.leader_address = [] { return std::string("ctl-0.ctl:7443"); };
  deps.standby_liveness = absl::Seconds(20);
  auto standby = AdminCore::Create({}, deps);
  ASSERT_TRUE(standby.ok()) << standby.status();

  auto schedules = (*standby)->ListSchedules({});
  ASSERT_TRUE(schedules.ok()) << schedules.status();
  auto leader_schedules = core_->ListSchedules({});
  ASSERT_TRUE(leader_schedules.ok());
  ASSERT_GT(leader_schedules->targets_size(), 0);
  EXPECT_EQ(schedules->SerializeAsString(),
            leader_schedules->SerializeAsString());

  auto agents = (*standby)->ListAgents({});
  ASSERT_TRUE(agents.ok()) << agents.status();
  ASSERT_EQ(agents->agents_size(), 2);
  EXPECT_EQ(agents->agents(0).agent_id(), "a1");
  EXPECT_EQ(agents->agents(0).applied_sequence(), 42u);
  EXPECT_EQ(agents->agents(0).dropped_total(), 3u);
  EXPECT_EQ(agents->agents(0).state(), v1::LIVE);
  EXPECT_EQ(agents->agents(1).agent_id(), "a2");
  EXPECT_EQ(agents->agents(1).state(), v1::LOST);
  v1::ListAgentsRequest by_region;
  by_region.set_region("r2");
  EXPECT_EQ((*standby)->ListAgents(by_region)->agents_size(), 1);
  by_region.set_region("r9");
  EXPECT_EQ((*standby)->ListAgents(by_region).status().code(),
            absl::StatusCode::kNotFound);

  v1::GetVerdictsRequest verdicts;
  auto got = (*standby)->GetVerdicts(verdicts);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->verdicts_size(), 1);

  const std::string refusal = "not the leader; leader=ctl-0.ctl:7443";
  absl::Status st = (*standby)->ApplySchedules({}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr(refusal));
  v1::DeleteScheduleRequest del;
  del.set_id("x");
  st = (*standby)->DeleteSchedule(del);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr(refusal));
  v1::RunProbeRequest probe;
  st = (*standby)->RunProbe(probe, NewSink()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr(refusal));
  // Nothing changed.
  EXPECT_EQ(core_->ListSchedules({})->SerializeAsString(),
            leader_schedules->SerializeAsString());
  (*standby)->Shutdown();
}

TEST_F(AdminCoreTest, ReportValidatesAndBuildsFromTheStore) {
  v1::ReportRequest req;
  *req.mutable_from() = TimeUtil::SecondsToTimestamp(1000);
  *req.mutable_to() = TimeUtil::SecondsToTimestamp(2000);
  EXPECT_THAT(core_->Report(req).status().message(), HasSubstr("target"));
  req.set_target("canary");
  req.clear_from();
  EXPECT_THAT(core_->Report(req).status().message(),
              HasSubstr("from: required"));
  *req.mutable_from() = TimeUtil::SecondsToTimestamp(3000);
  EXPECT_THAT(core_->Report(req).status().message(),
              HasSubstr("from: must be before to"));
  *req.mutable_from() = TimeUtil::SecondsToTimestamp(1000);
  req.add_regions("");
  EXPECT_THAT(core_->Report(req).status().message(), HasSubstr("regions[0]"));
  req.clear_regions();
  req.set_max_samples(5000);
  EXPECT_EQ(core_->Report(req).status().code(),
            absl::StatusCode::kInvalidArgument);
  req.set_max_samples(0);

  // 30 minutes of a stream with 2 truncations a minute; one raw failure
  // carries a request id.
  const absl::Time start = clock_.Now();
  WriteBatch batch;
  for (int m = 0; m < 30; ++m) {
    StreamMinute sm;
    sm.key = {"r1", "canary", v1::RESPONSE_STREAM, 1024, false};
    sm.minute = MinuteOf(start) + m;
    sm.stats.counts[v1::OK] = 98;
    sm.stats.counts[v1::TRUNCATED] = 2;
    batch.minutes.push_back(sm);
  }
  v1::Outcome failure;
  failure.set_region("r1");
  failure.set_target("canary");
  failure.set_mode(v1::RESPONSE_STREAM);
  failure.set_requested_bytes(1024);
  failure.set_outcome_class(v1::TRUNCATED);
  failure.set_platform_request_id("req-1");
  *failure.mutable_start_time() = TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(start + absl::Minutes(3)));
  batch.failures.push_back(failure);
  ASSERT_TRUE(store_->Commit(batch, nullptr).ok());
  *req.mutable_from() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(start));
  *req.mutable_to() = TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(start + absl::Hours(1)));
  auto report = core_->Report(req);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->source(), "controller store");
  EXPECT_EQ(report->probes(), 3000u);
  EXPECT_EQ(report->failures(), 60u);
  ASSERT_EQ(report->cells_size(), 1);
  EXPECT_EQ(report->cells(0).periods(0).by_class().at("TRUNCATED"), 60u);
  ASSERT_EQ(report->failing_samples_size(), 1);
  EXPECT_EQ(report->failing_samples(0).platform_request_id(), "req-1");
  // The fleet's URLs make the direct reproduction command.
  bool direct = false;
  for (const std::string& c : report->reproduction().commands()) {
    direct |= c.find("--direct") != std::string::npos;
  }
  EXPECT_TRUE(direct);
  req.set_target("nope");
  EXPECT_EQ(core_->Report(req).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
