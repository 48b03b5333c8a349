#include "common/time/clock.h"

#include <thread>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

TEST(SimulatedClockTest, StartsAtGivenTimeAndAdvancesOnlyWhenTold) {
  const absl::Time start = absl::FromUnixSeconds(1706745600);
  SimulatedClock clock(start);
  EXPECT_EQ(clock.Now(), start);
  EXPECT_EQ(clock.MonotonicNow(), absl::ZeroDuration());
  clock.AdvanceTime(absl::Minutes(3));
  EXPECT_EQ(clock.Now(), start + absl::Minutes(3));
  EXPECT_EQ(clock.MonotonicNow(), absl::Minutes(3));
}

TEST(SimulatedClockTest, SleeperWakesOnlyAfterDeadlinePasses) {
  SimulatedClock clock;
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke = true;
  });
  // Wait (in real time, bounded) until the sleeper is parked.
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(
      absl::Condition(
          +[](SimulatedClock* c) { return c->waiters() == 1; }, &clock),
      absl::Seconds(10)));
  clock.AdvanceTime(absl::Seconds(9));
  EXPECT_FALSE(woke.load());
  clock.AdvanceTime(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.load());
}

TEST(SimulatedClockTest, AwaitReturnsWhenConditionBecomesTrue) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool ready = false;
  std::thread setter;
  {
    absl::MutexLock lock(&mu);
    // The setter can only run while the waiter has released `mu`.
    setter = std::thread([&] {
      absl::MutexLock setter_lock(&mu);
      ready = true;
    });
    EXPECT_TRUE(clock.AwaitWithTimeout(&mu, absl::Condition(&ready),
                                       absl::Hours(1000)));
  }
  setter.join();
}

TEST(SimulatedClockTest, AwaitTimesOutInSimulatedTime) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool never = false;
  bool result = true;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result =
        clock.AwaitWithTimeout(&mu, absl::Condition(&never), absl::Seconds(5));
  });
  absl::Mutex park_mu;
  absl::MutexLock lock(&park_mu);
  ASSERT_TRUE(park_mu.AwaitWithTimeout(
      absl::Condition(
          +[](SimulatedClock* c) { return c->waiters() == 1; }, &clock),
      absl::Seconds(10)));
  clock.AdvanceTime(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(result);
}

TEST(RealClockTest, MonotonicNeverGoesBackwards) {
  Clock* clock = Clock::Real();
  absl::Duration a = clock->MonotonicNow();
  absl::Duration b = clock->MonotonicNow();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace fleetcanary
