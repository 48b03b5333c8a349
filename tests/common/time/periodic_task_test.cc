#include "common/time/periodic_task.h"

#include <atomic>

#include "common/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace {

constexpr absl::Duration kPeriod = absl::Seconds(10);

TEST(PeriodicTaskTest, RunsOncePerPeriodAndNotBefore) {
  SimulatedClock clock;
  std::atomic<int> runs{0};
  PeriodicTask task(&clock, kPeriod, [&] { ++runs; });
  ASSERT_TRUE(
      testing::StepAndSettle(&clock, 1, kPeriod - absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 0);
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(testing::StepAndSettle(&clock, 1, kPeriod));
  }
  EXPECT_EQ(runs.load(), 6);
  EXPECT_EQ(task.runs(), 6u);
  EXPECT_EQ(task.skipped(), 0u);
}

TEST(PeriodicTaskTest, ASlowRunDoesNotShiftTheSchedule) {
  SimulatedClock clock;
  std::atomic<int> runs{0};
  // The first run takes 4 s of the clock's time; the second is still due at
  // 2 periods from the start, 6 s after the first run ended.
  PeriodicTask task(&clock, kPeriod, [&] {
    if (++runs == 1) clock.AdvanceTime(absl::Seconds(4));
  });
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, kPeriod));
  EXPECT_EQ(runs.load(), 1);
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1,
                                     absl::Seconds(6) - absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 1);
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(task.skipped(), 0u);
}

TEST(PeriodicTaskTest, AnOverrunSkipsDueTimesInsteadOfCatchingUp) {
  SimulatedClock clock;
  std::atomic<int> runs{0};
  // The first run ends at 3.5 periods: the runs due at 2 and 3 periods are
  // skipped, the next is due at 4 periods.
  PeriodicTask task(&clock, kPeriod, [&] {
    if (++runs == 1) clock.AdvanceTime(2.5 * kPeriod);
  });
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, kPeriod));
  EXPECT_EQ(task.skipped(), 2u);
  ASSERT_TRUE(
      testing::StepAndSettle(&clock, 1, 0.5 * kPeriod - absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 1);
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Nanoseconds(1)));
  EXPECT_EQ(runs.load(), 2);
}

TEST(PeriodicTaskTest, ARunThatEndsExactlyOnTheNextDueTimeRunsAgainAtOnce) {
  SimulatedClock clock;
  std::atomic<int> runs{0};
  PeriodicTask task(&clock, kPeriod, [&] {
    if (++runs == 1) clock.AdvanceTime(kPeriod);
  });
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, kPeriod));
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(task.skipped(), 0u);
}

TEST(PeriodicTaskTest, StopEndsTheWaitAndNoRunFollows) {
  SimulatedClock clock;
  std::atomic<int> runs{0};
  PeriodicTask task(&clock, kPeriod, [&] { ++runs; });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  task.Stop();
  task.Stop();  // Idempotent.
  clock.AdvanceTime(10 * kPeriod);
  EXPECT_EQ(runs.load(), 0);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(PeriodicTaskTest, RunsOnTheRealClock) {
  // A short period on the real clock: the task runs again and again until
  // stopped (the wait is for the event, bounded only against a hang).
  absl::Mutex mu;
  int runs = 0;
  PeriodicTask task(Clock::Real(), absl::Milliseconds(1), [&] {
    absl::MutexLock lock(&mu);
    ++runs;
  });
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(
                                      +[](int* n) { return *n >= 3; }, &runs),
                                  absl::Seconds(60)));
}

}  // namespace
}  // namespace fleetcanary
