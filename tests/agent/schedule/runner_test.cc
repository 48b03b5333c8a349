#include "agent/schedule/runner.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/adhoc/adhoc.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace agent {
namespace {

// Completes every probe at once with an OK outcome, recording what started.
class FakeEngine : public ProbeEngine {
 public:
  void Start(ProbeRequest r, DoneCallback done) override {
    v1::Outcome o;
    o.set_target(r.target);
    o.set_mode(r.mode);
    o.set_requested_bytes(r.size_bytes);
    o.set_probe_id(r.probe_id);
    o.set_schedule_id(r.schedule_id);
    o.set_outcome_class(v1::OK);
    {
      absl::MutexLock lock(&mu);
      started[std::to_string(r.mode) + "/" + std::to_string(r.size_bytes)]++;
      ids.push_back(r.probe_id);
    }
    done(std::move(o));
  }
  void Shutdown() override {}
  int in_flight() const override { return 0; }
  int Total() {
    absl::MutexLock lock(&mu);
    return static_cast<int>(ids.size());
  }
  // Waits (real time, bounded at 60 s) until `n` probes started.
  bool WaitForTotal(int n) {
    absl::MutexLock lock(&mu);
    struct Arg {
      FakeEngine* e;
      size_t n;
    } arg{this, static_cast<size_t>(n)};
    return mu.AwaitWithTimeout(absl::Condition(
                                   +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                     return a->e->ids.size() >= a->n;
                                   },
                                   &arg),
                               absl::Seconds(60));
  }
  int Count(v1::InvokeMode mode, uint64_t size) {
    absl::MutexLock lock(&mu);
    return started[std::to_string(mode) + "/" + std::to_string(size)];
  }
  absl::Mutex mu;
  std::map<std::string, int> started;
  std::vector<std::string> ids;
};

v1::Assignment Make(v1::InvokeMode mode, uint64_t size, int interval_ms,
                    int offset_ms) {
  v1::Assignment a;
  a.set_schedule_id("s");
  a.set_target("t");
  a.set_region("r");
  a.set_mode(mode);
  a.set_size_bytes(size);
  a.mutable_url()->set_url("http://127.0.0.1:1/");
  a.mutable_interval()->set_nanos(interval_ms * 1000000);
  a.mutable_offset()->set_nanos(offset_ms * 1000000);
  return a;
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OutboxOptions o;
    o.path = ":memory:";
    auto box = Outbox::Create(o);
    ASSERT_TRUE(box.ok());
    outbox_ = std::move(*box);
    auto r = Runner::Create({"a1", "r", 42}, &engine_, outbox_.get(), &clock_,
                            [this] {
                              absl::MutexLock lock(&mu_);
                              ++notified_;
                            });
    ASSERT_TRUE(r.ok());
    runner_ = std::move(*r);
  }
  void TearDown() override { runner_->Stop(); }

  // Advances `total` in `step`s, each once the runner's loop is parked on
  // the clock and until it has parked again; then the engine must have
  // started exactly `expected(elapsed)` probes (waited for, bounded).
  void Advance(absl::Duration total, absl::Duration step,
               const std::function<int(absl::Duration)>& expected) {
    for (absl::Duration d = step; d <= total; d += step) {
      ASSERT_TRUE(testing::StepAndSettle(&clock_, 1, step));
      elapsed_ += step;
      ASSERT_TRUE(engine_.WaitForTotal(expected(elapsed_)))
          << "at " << elapsed_ << " want " << expected(elapsed_) << " got "
          << engine_.Total();
    }
  }

  // Slots of (interval, offset) in (start, start + t], the runner's first
  // slot being the first one strictly after the start (aligned start).
  static int Slots(absl::Duration t, int interval_ms, int offset_ms) {
    const int64_t ms = absl::ToInt64Milliseconds(t);
    if (ms < offset_ms || (offset_ms == 0 && ms < interval_ms)) return 0;
    const int first = offset_ms == 0 ? interval_ms : offset_ms;
    return static_cast<int>((ms - first) / interval_ms) + 1;
  }

  absl::Duration elapsed_;
  SimulatedClock clock_{absl::FromUnixSeconds(1700000000)};
  FakeEngine engine_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Runner> runner_;
  absl::Mutex mu_;
  int notified_ = 0;
};

// The agent's /healthz calls the probe loop stuck after three minutes
// without a wake-up; with nothing to probe it still wakes every minute.
TEST_F(RunnerTest, TimerWakesAtLeastEveryMinuteWithNothingToProbe) {
  // The timer is parked; a minute later it woke and is parked again.
  ASSERT_TRUE(clock_.AwaitWaiters(1));
  const absl::Duration start = clock_.MonotonicNow();
  clock_.AdvanceTime(absl::Seconds(60));
  ASSERT_TRUE(clock_.AwaitWaiters(1));
  EXPECT_TRUE(testing::WaitUntil([&] {
    return runner_->stats().last_tick >= start + absl::Seconds(60);
  })) << "no wake-up within a minute of simulated time";
}

TEST_F(RunnerTest, ProbesEachAssignmentAtItsIntervalIntoTheOutbox) {
  v1::AssignmentSet set;
  set.set_version(1);
  *set.add_assignments() = Make(v1::BUFFERED, 2, 100, 0);
  *set.add_assignments() = Make(v1::RESPONSE_STREAM, 2, 100, 50);
  *set.add_assignments() = Make(v1::BUFFERED, 1024, 250, 10);
  runner_->OnAssignments(set);
  Advance(absl::Seconds(1), absl::Milliseconds(10), [](absl::Duration t) {
    return Slots(t, 100, 0) + Slots(t, 100, 50) + Slots(t, 250, 10);
  });
  EXPECT_EQ(engine_.Count(v1::BUFFERED, 2), 10);
  EXPECT_EQ(engine_.Count(v1::RESPONSE_STREAM, 2), 10);
  EXPECT_EQ(engine_.Count(v1::BUFFERED, 1024), 4);
  ASSERT_TRUE(runner_->WaitIdle(absl::Seconds(10)));
  const RunnerStats s = runner_->stats();
  EXPECT_EQ(s.assignments, 3u);
  EXPECT_EQ(s.outcomes_appended_total, s.probes_started_total);
  EXPECT_EQ(outbox_->stats().last_sequence, s.probes_started_total);
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(notified_, static_cast<int>(s.probes_started_total));
}

TEST_F(RunnerTest, ConvergesKeepsUnchangedStopsRemoved) {
  v1::AssignmentSet set;
  set.set_version(1);
  *set.add_assignments() = Make(v1::BUFFERED, 2, 100, 0);
  *set.add_assignments() = Make(v1::RESPONSE_STREAM, 2, 100, 50);
  runner_->OnAssignments(set);
  Advance(
      absl::Milliseconds(500), absl::Milliseconds(10),
      [](absl::Duration t) { return Slots(t, 100, 0) + Slots(t, 100, 50); });
  const int stream_before = engine_.Count(v1::RESPONSE_STREAM, 2);
  EXPECT_EQ(stream_before, 5);
  // Version 2 drops the streaming assignment.
  v1::AssignmentSet next;
  next.set_version(2);
  *next.add_assignments() = Make(v1::BUFFERED, 2, 100, 0);
  runner_->OnAssignments(next);
  const int buffered_before = engine_.Count(v1::BUFFERED, 2);
  const int total_before = engine_.Total();
  // The unchanged buffered timer keeps its phase: 5 more in 500 ms.
  Advance(
      absl::Milliseconds(500), absl::Milliseconds(10),
      [&](absl::Duration t) { return total_before + Slots(t, 100, 0) - 5; });
  EXPECT_EQ(engine_.Count(v1::RESPONSE_STREAM, 2), stream_before);
  EXPECT_EQ(engine_.Count(v1::BUFFERED, 2) - buffered_before, 5);
  EXPECT_EQ(runner_->stats().assignments, 1u);
  // Probe ids are unique.
  absl::MutexLock lock(&engine_.mu);
  std::set<std::string> ids(engine_.ids.begin(), engine_.ids.end());
  EXPECT_EQ(ids.size(), engine_.ids.size());
}

TEST_F(RunnerTest, FallingBehindSkipsInsteadOfBursting) {
  v1::AssignmentSet set;
  *set.add_assignments() = Make(v1::BUFFERED, 2, 100, 0);
  runner_->OnAssignments(set);
  Advance(absl::Milliseconds(200), absl::Milliseconds(10),
          [](absl::Duration t) { return Slots(t, 100, 0); });
  const int before = engine_.Count(v1::BUFFERED, 2);
  ASSERT_EQ(before, 2);
  // One jump over 100 slots.
  ASSERT_TRUE(testing::StepAndSettle(&clock_, 1, absl::Seconds(10)));
  ASSERT_TRUE(engine_.WaitForTotal(before + 1));
  EXPECT_EQ(runner_->stats().slots_skipped_total, 99u);
  EXPECT_EQ(engine_.Count(v1::BUFFERED, 2), before + 1);
  // The next slot is the regular one after the jump, not a burst.
  ASSERT_TRUE(testing::StepAndSettle(&clock_, 1, absl::Milliseconds(100)));
  ASSERT_TRUE(engine_.WaitForTotal(before + 2));
  EXPECT_EQ(engine_.Count(v1::BUFFERED, 2), before + 2);
}

// The real outbox, except that recording a probe's start fails while
// `refuse_starts` is set (what a full disk does).
class StartRefusingOutbox : public Outbox {
 public:
  explicit StartRefusingOutbox(std::unique_ptr<Outbox> real)
      : real_(std::move(real)) {}
  absl::StatusOr<uint64_t> Append(v1::Outcome o) override {
    return real_->Append(std::move(o));
  }
  absl::Status MarkStarted(const v1::Outcome& probe) override {
    if (refuse_starts) {
      return absl::UnavailableError("outbox: disk full (test)");
    }
    return real_->MarkStarted(probe);
  }
  absl::StatusOr<std::vector<v1::Outcome>> ReadAfter(
      uint64_t after, size_t max_count, size_t max_bytes) override {
    return real_->ReadAfter(after, max_count, max_bytes);
  }
  absl::StatusOr<std::vector<v1::Outcome>> ReadForSend(
      uint64_t after, size_t max_count, size_t max_bytes) override {
    return real_->ReadForSend(after, max_count, max_bytes);
  }
  absl::Status Ack(uint64_t sequence) override { return real_->Ack(sequence); }
  void MarkSent(uint64_t sequence) override { real_->MarkSent(sequence); }
  void ResetSent(uint64_t sequence) override { real_->ResetSent(sequence); }
  OutboxStats stats() override { return real_->stats(); }

  std::atomic<bool> refuse_starts{false};

 private:
  std::unique_ptr<Outbox> real_;
};

// A probe whose start cannot be recorded is not run (a crash during it would
// leave neither an outcome nor a count): it ends at once as an AGENT_ERROR
// outcome in the outbox. Once starts can be recorded, probes run again.
TEST(RunnerStartRecordTest, ProbeWhoseStartCannotBeRecordedIsNotRun) {
  OutboxOptions o;
  o.path = ":memory:";
  auto real = Outbox::Create(o);
  ASSERT_TRUE(real.ok());
  StartRefusingOutbox outbox(std::move(*real));
  outbox.refuse_starts = true;
  SimulatedClock clock{absl::FromUnixSeconds(1700000000)};
  FakeEngine engine;
  auto runner =
      Runner::Create({"a1", "r", 42}, &engine, &outbox, &clock, [] {});
  ASSERT_TRUE(runner.ok());
  v1::AssignmentSet set;
  set.set_version(1);
  *set.add_assignments() = Make(v1::BUFFERED, 2, 100, 0);
  (*runner)->OnAssignments(set);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Milliseconds(100)));
  }
  ASSERT_TRUE((*runner)->WaitIdle(absl::Seconds(60)));
  EXPECT_EQ(engine.Total(), 0) << "a probe ran without a recorded start";
  auto stored = outbox.ReadAfter(0, 100, 1 << 20);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 10u);
  for (const v1::Outcome& out : *stored) {
    EXPECT_EQ(out.outcome_class(), v1::AGENT_ERROR);
    EXPECT_EQ(out.schedule_id(), "s");
    EXPECT_NE(out.detail().find("not run: its start could not be recorded"),
              std::string::npos)
        << out.detail();
  }
  EXPECT_EQ((*runner)->stats().outcomes_appended_total, 10u);

  outbox.refuse_starts = false;
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Milliseconds(100)));
  ASSERT_TRUE(engine.WaitForTotal(1));
  (*runner)->Stop();
}

// The same for an ad-hoc run: its probes whose start cannot be recorded end
// as AGENT_ERROR outcomes, are sent live, and the run still completes (the
// probes they free start in the same loop, not by recursion).
TEST(RunnerStartRecordTest, AdhocProbesWhoseStartCannotBeRecordedAreNotRun) {
  OutboxOptions o;
  o.path = ":memory:";
  auto real = Outbox::Create(o);
  ASSERT_TRUE(real.ok());
  StartRefusingOutbox outbox(std::move(*real));
  outbox.refuse_starts = true;
  FakeEngine engine;
  absl::Mutex mu;
  std::vector<v1::AdhocResult> results;
  auto adhoc = AdhocExecutor::Create(
      {"a1", "r", 7}, &engine, &outbox, [] {},
      [&](v1::AdhocResult r) {
        absl::MutexLock lock(&mu);
        results.push_back(std::move(r));
      });
  ASSERT_TRUE(adhoc.ok());
  v1::AdhocProbe p;
  p.set_adhoc_id("run-1");
  p.set_target("t");
  p.set_region("r");
  v1::FunctionUrl* u = p.add_urls();
  u->set_mode(v1::BUFFERED);
  u->set_url("http://127.0.0.1:1/");
  p.add_sizes(2);
  p.set_count(2000);  // Deep enough to overflow a recursive chain.
  p.set_concurrency(1);
  (*adhoc)->OnAdhocProbe(p);
  ASSERT_TRUE((*adhoc)->WaitIdle(absl::Seconds(60)));
  EXPECT_EQ(engine.Total(), 0);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(results.size(), 2000u);
  EXPECT_TRUE(results.back().done());
  for (const v1::AdhocResult& r : results) {
    EXPECT_EQ(r.outcome().outcome_class(), v1::AGENT_ERROR);
  }
  EXPECT_EQ(outbox.stats().last_sequence, 2000u);
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
