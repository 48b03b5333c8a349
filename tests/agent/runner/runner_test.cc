#include "agent/runner/runner.h"

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"

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

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
