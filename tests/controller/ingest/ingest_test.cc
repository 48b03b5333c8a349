#include "controller/ingest/ingest.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/testing/held_batches.h"

namespace fleetcanary {
namespace controller {
namespace {

v1::OutcomeBatch MakeBatch(uint64_t first, int n,
                           v1::OutcomeClass cls = v1::OK) {
  v1::OutcomeBatch b;
  b.set_first_sequence(first);
  for (int i = 0; i < n; ++i) {
    v1::Outcome* o = b.add_outcomes();
    o->set_sequence(first + i);
    o->set_target("t");
    o->set_mode(i % 2 ? v1::BUFFERED : v1::RESPONSE_STREAM);
    o->set_requested_bytes(1024);
    o->set_probe_id(absl::StrCat("p", first + i));
    o->mutable_start_time()->set_seconds(600);
    o->set_outcome_class(cls);
  }
  return b;
}

// Store wrapper whose commits can be made to fail.
class FlakyStore : public Store {
 public:
  explicit FlakyStore(Store* base) : base_(base) {}
  std::atomic<bool> fail{false};
  // Commits, then reports an error: a COMMIT whose answer was lost.
  std::atomic<bool> lose_answer{false};
  absl::Status Commit(const WriteBatch& b, CommitResult* r) override {
    if (fail) return absl::UnavailableError("disk full");
    if (lose_answer) {
      absl::Status s = base_->Commit(b, r);
      if (!s.ok()) return s;
      return absl::UnavailableError("server closed the connection");
    }
    return base_->Commit(b, r);
  }
  absl::StatusOr<std::vector<AgentRecord>> LoadAgents() override {
    return base_->LoadAgents();
  }
  absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() override {
    return base_->LoadStreamTotals();
  }
  absl::StatusOr<std::map<std::string, double>> LoadCounters() override {
    return base_->LoadCounters();
  }
  absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t a, int64_t b) override {
    return base_->QueryStreamMinutes(a, b);
  }
  absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(int64_t a,
                                                           int64_t b) override {
    return base_->QueryStreamHours(a, b);
  }
  absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(absl::Time s,
                                                         size_t l) override {
    return base_->QueryFailures(s, l);
  }
  absl::StatusOr<std::vector<v1::PlatformMetricSample>> QueryPlatformSamples(
      absl::Time a, absl::Time b) override {
    return base_->QueryPlatformSamples(a, b);
  }
  absl::StatusOr<v1::FleetConfig> LoadFleet() override {
    return base_->LoadFleet();
  }
  absl::Status SaveFleet(const std::vector<v1::Target>& t,
                         const std::vector<v1::Schedule>& s,
                         const std::vector<std::string>& d) override {
    return base_->SaveFleet(t, s, d);
  }
  absl::Status AppendVerdict(const v1::Verdict& v) override {
    return base_->AppendVerdict(v);
  }
  absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(absl::Time s,
                                                        size_t l) override {
    return base_->ListVerdicts(s, l);
  }
  absl::Status SaveDetectorState(const std::string& blob) override {
    return base_->SaveDetectorState(blob);
  }
  absl::StatusOr<std::string> LoadDetectorState() override {
    return base_->LoadDetectorState();
  }
  absl::StatusOr<PruneResult> Prune(absl::Time n,
                                    const RetentionOptions& r) override {
    return base_->Prune(n, r);
  }

 private:
  Store* base_;
};

class Recorder : public IngestObserver {
 public:
  void OnCommitted(const CommittedBatch& b) override {
    absl::MutexLock lock(&mu);
    for (const auto& o : b.outcomes) sequences.push_back(o.sequence());
  }
  absl::Mutex mu;
  std::vector<uint64_t> sequences;
};

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = CreateMemoryStore();
    store_ = std::make_unique<FlakyStore>(base_.get());
    Start();
  }
  void Start() {
    metrics_ = std::make_unique<ControllerMetrics>();
    auto ingest = Ingest::Create({}, store_.get(), metrics_.get(), &clock_);
    ASSERT_TRUE(ingest.ok());
    ingest_ = std::move(*ingest);
    ingest_->AddObserver(&recorder_);
  }
  IngestResult Submit(v1::OutcomeBatch b, const std::string& agent = "a1") {
    absl::Mutex mu;
    bool done = false;
    IngestResult result;
    ingest_->SubmitOutcomes(agent, "r1", std::move(b),
                            [&](const IngestResult& r) {
                              absl::MutexLock lock(&mu);
                              result = r;
                              done = true;
                            });
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));
    return result;
  }
  uint64_t Total() {
    auto totals = base_->LoadStreamTotals();
    uint64_t n = 0;
    for (const auto& t : *totals) n += t.stats.probes();
    return n;
  }

  SimulatedClock clock_{absl::FromUnixSeconds(1000)};
  std::unique_ptr<Store> base_;
  std::unique_ptr<FlakyStore> store_;
  std::unique_ptr<ControllerMetrics> metrics_;
  Recorder recorder_;
  std::unique_ptr<Ingest> ingest_;
};

TEST_F(IngestTest, AppliesOnceSkipsDuplicatesCountsGaps) {
  IngestResult r = Submit(MakeBatch(1, 10));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.applied_sequence, 10u);
  EXPECT_EQ(r.applied, 10u);
  // Exact resend: all duplicates.
  r = Submit(MakeBatch(1, 10));
  EXPECT_EQ(r.applied, 0u);
  EXPECT_EQ(r.duplicates, 10u);
  // Partial overlap: 6..15 -> 5 duplicates, 5 applied.
  r = Submit(MakeBatch(6, 10));
  EXPECT_EQ(r.applied, 5u);
  EXPECT_EQ(r.duplicates, 5u);
  EXPECT_EQ(r.applied_sequence, 15u);
  // Gap: 21..25 after 15 -> 5 missing.
  r = Submit(MakeBatch(21, 5));
  EXPECT_EQ(r.gaps, 5u);
  EXPECT_EQ(r.applied, 5u);
  EXPECT_EQ(r.applied_sequence, 25u);
  EXPECT_EQ(Total(), 20u);
  EXPECT_EQ(metrics_->counter(kIngestDuplicates), 15);
  EXPECT_EQ(metrics_->counter(kIngestGaps), 5);
  EXPECT_EQ(metrics_->counter(kIngestOutcomes), 20);
  EXPECT_EQ(metrics_->counter(kIngestBatches), 4);
  absl::MutexLock lock(&recorder_.mu);
  EXPECT_EQ(recorder_.sequences.size(), 20u);
}

TEST_F(IngestTest, RejectsBadSequences) {
  EXPECT_EQ(Submit(MakeBatch(0, 3)).status.code(),
            absl::StatusCode::kInvalidArgument);
  v1::OutcomeBatch b = MakeBatch(1, 3);
  b.mutable_outcomes(2)->set_sequence(9);
  IngestResult r = Submit(b);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("outcomes[2].sequence"), std::string::npos);
  EXPECT_EQ(ingest_->AppliedSequence("a1"), 0u);
  EXPECT_EQ(Total(), 0u);
}

// Without mTLS anyone may claim an agent id. A forged batch that jumps the
// sequence far ahead must not move the watermark: else the real agent's
// next outcomes would all be skipped as "duplicates".
TEST_F(IngestTest, ForgedSequenceJumpIsRefusedAndCountedDurably) {
  ASSERT_TRUE(Submit(MakeBatch(1, 10)).status.ok());
  IngestResult r = Submit(MakeBatch(1000011, 1));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status.message().find("outcomes.first_sequence"),
            std::string::npos)
      << r.status;
  EXPECT_EQ(r.applied_sequence, 10u);
  EXPECT_EQ(ingest_->AppliedSequence("a1"), 10u);
  EXPECT_EQ(metrics_->counter(kIngestGapsRefused), 1);
  EXPECT_EQ(metrics_->counter(kIngestGaps), 0);
  // The real agent goes on: nothing of it is a duplicate.
  r = Submit(MakeBatch(11, 10));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.applied, 10u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(Total(), 20u);
  // Persisted with the commit: a restarted controller still shows it.
  auto counters = base_->LoadCounters();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ((*counters)[kIngestGapsRefused], 1);
}

// A gap the agent's dropped count explains (its outbox overflowed while the
// controller was away) is applied, however large; a small one always is.
TEST_F(IngestTest, GapExplainedByDropsIsApplied) {
  ASSERT_TRUE(Submit(MakeBatch(1, 10)).status.ok());
  v1::OutcomeBatch b = MakeBatch(50011, 5);
  b.set_dropped_total(50000);
  IngestResult r = Submit(b);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.gaps, 50000u);
  EXPECT_EQ(r.applied_sequence, 50015u);
  // Within max_unexplained_gap (1000) of the dropped count: applied.
  r = Submit(MakeBatch(51015, 1));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.gaps, 999u);
  // An agent this store has never seen (a new controller database while
  // the agent kept its outbox) may start anywhere.
  r = Submit(MakeBatch(70001, 3), "a2");
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.applied, 3u);
  EXPECT_EQ(metrics_->counter(kIngestGapsRefused), 0);
}

TEST_F(IngestTest, FailedCommitAppliesNothingAndResendSucceeds) {
  ASSERT_TRUE(Submit(MakeBatch(1, 5)).status.ok());
  store_->fail = true;
  IngestResult r = Submit(MakeBatch(6, 5));
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.applied_sequence, 5u);
  EXPECT_EQ(ingest_->AppliedSequence("a1"), 5u);
  store_->fail = false;
  r = Submit(MakeBatch(6, 5));
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.applied, 5u);
  EXPECT_EQ(Total(), 10u);
}

// A commit that succeeded but whose answer was lost: the agent resends
// (nothing was acknowledged), and ingest, having re-read the watermarks,
// skips the resend instead of applying it twice.
TEST_F(IngestTest, LostCommitAnswerIsNotAppliedTwice) {
  ASSERT_TRUE(Submit(MakeBatch(1, 5)).status.ok());
  store_->lose_answer = true;
  IngestResult r = Submit(MakeBatch(6, 5));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable);
  store_->lose_answer = false;
  EXPECT_EQ(Total(), 10u);      // It did commit.
  r = Submit(MakeBatch(6, 5));  // The agent's resend.
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.duplicates, 5u);
  EXPECT_EQ(r.applied, 0u);
  EXPECT_EQ(r.applied_sequence, 10u);
  EXPECT_EQ(Total(), 10u);
  ASSERT_TRUE(Submit(MakeBatch(11, 1)).status.ok());
  EXPECT_EQ(Total(), 11u);
}

// Every commit attempt is reported (the controller's readiness follows it).
TEST_F(IngestTest, CommitResultsAreReported) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> seen;
  IngestOptions options;
  options.on_commit = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    seen.push_back(s.code());
  };
  ingest_.reset();
  auto ingest = Ingest::Create(options, store_.get(), metrics_.get(), &clock_);
  ASSERT_TRUE(ingest.ok());
  ingest_ = std::move(*ingest);
  ASSERT_TRUE(Submit(MakeBatch(1, 2)).status.ok());
  store_->fail = true;
  EXPECT_FALSE(Submit(MakeBatch(3, 2)).status.ok());
  store_->fail = false;
  ASSERT_TRUE(Submit(MakeBatch(3, 2)).status.ok());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(seen, (std::vector<absl::StatusCode>{absl::StatusCode::kOk,
                                                 absl::StatusCode::kUnavailable,
                                                 absl::StatusCode::kOk}));
}

TEST_F(IngestTest, WatermarksAndMetricsSurviveRestart) {
  ASSERT_TRUE(Submit(MakeBatch(1, 8, v1::HTTP_5XX)).status.ok());
  ingest_->Shutdown();
  ingest_.reset();
  Start();
  auto totals = base_->LoadStreamTotals();
  auto counters = base_->LoadCounters();
  auto agents = base_->LoadAgents();
  metrics_->Restore(*totals, *counters, *agents);
  EXPECT_EQ(ingest_->AppliedSequence("a1"), 8u);
  IngestResult r = Submit(MakeBatch(1, 10, v1::HTTP_5XX));
  EXPECT_EQ(r.duplicates, 8u);
  EXPECT_EQ(r.applied, 2u);
  StreamKey k{"r1", "t", v1::RESPONSE_STREAM, 1024, false};
  EXPECT_EQ(metrics_->stream(k).counts[v1::HTTP_5XX], 5u);
  EXPECT_EQ(metrics_->counter(kIngestOutcomes), 10);
  auto failures = base_->QueryFailures(absl::UnixEpoch(), 100);
  EXPECT_EQ(failures->size(), 10u);
}

TEST_F(IngestTest, ManyAgentsConcurrentlyGroupCommitted) {
  constexpr int kAgents = 20, kBatches = 30, kPer = 50;
  std::atomic<int> done{0};
  std::atomic<int> errors{0};
  for (int b = 0; b < kBatches; ++b) {
    for (int a = 0; a < kAgents; ++a) {
      ingest_->SubmitOutcomes(absl::StrCat("agent", a), "r1",
                              MakeBatch(1 + b * kPer, kPer),
                              [&](const IngestResult& r) {
                                if (!r.status.ok()) ++errors;
                                ++done;
                              });
    }
  }
  ingest_->Flush();
  EXPECT_EQ(done.load(), kAgents * kBatches);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(Total(), uint64_t{kAgents} * kBatches * kPer);
  EXPECT_LT(metrics_->counter(kIngestCommits), kAgents * kBatches);
}

TEST_F(IngestTest, PlatformSamplesCountRevisionsOnce) {
  v1::PlatformMetricBatch p;
  auto* s = p.add_samples();
  s->set_target("t");
  s->set_mode(v1::RESPONSE_STREAM);
  s->set_metric("Errors");
  s->set_stat("Sum");
  s->mutable_period_start()->set_seconds(600);
  s->set_value(2);
  auto submit = [&] {
    absl::Mutex mu;
    bool done = false;
    ingest_->SubmitPlatform("a1", "r1", p, [&](const IngestResult&) {
      absl::MutexLock l(&mu);
      done = true;
    });
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(&done));
  };
  submit();
  p.mutable_samples(0)->set_value(3);  // Revised datapoint.
  submit();
  submit();
  const std::string name =
      PlatformCounterName("Errors", "r1", "t", v1::RESPONSE_STREAM);
  EXPECT_EQ(metrics_->counter(name), 3);
  EXPECT_EQ((*base_->LoadCounters())[name], 3);
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// Flow control: outcomes queued, being committed or held by an observer
// count toward max_queued_outcomes; past it AwaitCapacity says "stop" and
// calls back, once, when the count is down to half.
TEST_F(IngestTest, SaturatesWhileObserversHoldBatchesAndResumesAtHalf) {
  ingest_->Shutdown();
  IngestOptions options;
  options.max_queued_outcomes = 10;
  auto ingest = Ingest::Create(options, store_.get(), metrics_.get(), &clock_);
  ASSERT_TRUE(ingest.ok());
  ingest_ = std::move(*ingest);
  testing::HeldBatches holder;
  ingest_->AddObserver(&holder);
  std::atomic<int> resumed{0};
  auto resume = [&] { ++resumed; };

  EXPECT_TRUE(ingest_->AwaitCapacity(resume));
  ASSERT_TRUE(Submit(MakeBatch(1, 4)).status.ok());
  EXPECT_TRUE(ingest_->AwaitCapacity(resume));  // 4 of 10 held.
  IngestLoad load = metrics_->Snapshot().ingest;
  EXPECT_EQ(load.pending_outcomes, 4);
  EXPECT_EQ(load.limit, 10);
  EXPECT_FALSE(load.saturated);
  EXPECT_EQ(load.saturations_total, 0u);

  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(Submit(MakeBatch(5, 6)).status.ok());
  // 10 held: saturated. Commits and acks go on (nothing is refused).
  EXPECT_FALSE(ingest_->AwaitCapacity(resume));
  EXPECT_FALSE(ingest_->AwaitCapacity(resume));
  ASSERT_TRUE(Submit(MakeBatch(11, 2)).status.ok());
  EXPECT_EQ(ingest_->AppliedSequence("a1"), 12u);
  EXPECT_EQ(resumed, 0);
  // Never silent: the metrics and one log line say the sessions wait.
  load = metrics_->Snapshot().ingest;
  EXPECT_EQ(load.pending_outcomes, 12);
  EXPECT_TRUE(load.saturated);
  EXPECT_EQ(load.saturations_total, 1u);
  EXPECT_EQ(load.sessions_paused, 2);
  EXPECT_EQ(load.session_pauses_total, 2u);
  // The observer lets go: at most half pending (the writer may still hold
  // the last batch for a moment), each waiter called exactly once.
  holder.Drop();
  EXPECT_EQ(resumed, 2);
  EXPECT_TRUE(ingest_->AwaitCapacity(resume));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(CountOf(log, "event=ingest_saturated"), 1) << log;
  EXPECT_EQ(CountOf(log, "event=ingest_resumed"), 1) << log;
  EXPECT_NE(log.find("sessions_resumed=2"), std::string::npos) << log;
  load = metrics_->Snapshot().ingest;
  EXPECT_LE(load.pending_outcomes, 5);
  EXPECT_FALSE(load.saturated);
  EXPECT_EQ(load.sessions_paused, 0);
  EXPECT_EQ(load.session_pauses_total, 2u);

  // Shutdown wakes whoever still waits.
  ASSERT_TRUE(Submit(MakeBatch(13, 10)).status.ok());
  EXPECT_FALSE(ingest_->AwaitCapacity(resume));
  ingest_->Shutdown();
  EXPECT_EQ(resumed, 3);
  holder.Drop();
  EXPECT_EQ(resumed, 3);
  EXPECT_EQ(metrics_->Snapshot().ingest.saturations_total, 2u);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
