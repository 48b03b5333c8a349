#include "common/time/clock.h"

#include <atomic>
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
  ASSERT_TRUE(clock.AwaitWaiters(1));  // the sleeper is parked
  clock.AdvanceTime(absl::Seconds(9));
  EXPECT_EQ(clock.waiters(), 1);
  EXPECT_FALSE(woke.load());
  clock.AdvanceTime(absl::Seconds(1));
  EXPECT_EQ(clock.waiters(), 0);  // due at once, before it has run again
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
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.AdvanceTime(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(result);
}

TEST(SimulatedClockTest, AwaitWaitersSeesATimerParkAgainAfterEachTick) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool stopping = false;
  std::atomic<int> ticks{0};
  std::thread timer([&] {
    absl::MutexLock lock(&mu);
    while (!clock.AwaitWithTimeout(&mu, absl::Condition(&stopping),
                                   absl::Seconds(1))) {
      ++ticks;
    }
  });
  for (int i = 1; i <= 50; ++i) {
    ASSERT_TRUE(clock.AwaitWaiters(1));
    clock.AdvanceTime(absl::Seconds(1));
    ASSERT_TRUE(clock.AwaitWaiters(1));
    EXPECT_EQ(ticks.load(), i);
  }
  {
    absl::MutexLock lock(&mu);
    stopping = true;
  }
  timer.join();
}

TEST(SimulatedClockTest, InfiniteTimeoutNeverOverflowsTheDeadline) {
  SimulatedClock clock(absl::FromUnixSeconds(1706745600));
  clock.AdvanceTime(absl::Hours(1));
  absl::Mutex mu;
  bool ready = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(clock.AwaitWithTimeout(&mu, absl::Condition(&ready),
                                       absl::InfiniteDuration()));
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.AdvanceTime(absl::Hours(24 * 365));
  EXPECT_EQ(clock.waiters(), 1);  // still waiting: its deadline is infinite
  {
    absl::MutexLock lock(&mu);
    ready = true;
  }
  waiter.join();
}

TEST(SimulatedClockTest, AwaitWaitersGivesUpAfterItsRealTimeBound) {
  SimulatedClock clock;
  EXPECT_FALSE(clock.AwaitWaiters(1, absl::Milliseconds(1)));
}

TEST(RealClockTest, MonotonicNeverGoesBackwards) {
  Clock* clock = Clock::Real();
  absl::Duration a = clock->MonotonicNow();
  absl::Duration b = clock->MonotonicNow();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace fleetcanary
