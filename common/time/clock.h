// The one source of time in fleetcanary. Nothing outside common/time reads the
// system clock: components take a Clock* so tests can drive time by hand.
//
// Wall time (Now) is for reports, timestamps and minute bucketing; monotonic
// time (MonotonicNow) is for intervals and deadlines.
//
// Thread-safety: every method of every implementation is thread-safe.
#ifndef FLEETCANARY_COMMON_TIME_CLOCK_H_
#define FLEETCANARY_COMMON_TIME_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fleetcanary {

class Clock {
 public:
  virtual ~Clock() = default;

  // Current wall-clock time.
  virtual absl::Time Now() = 0;
  // Time since an arbitrary fixed origin; never goes backwards.
  virtual absl::Duration MonotonicNow() = 0;
  // Blocks until `d` of this clock's time has passed.
  virtual void SleepFor(absl::Duration d) = 0;
  // REQUIRES: `mu` is held. Releases `mu` while waiting until `cond` holds or
  // `timeout` of this clock's time has passed; reacquires it before returning.
  // Returns whether `cond` holds.
  virtual bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                                absl::Duration timeout) = 0;

  // REQUIRES: `mu` is held. Like AwaitWithTimeout, but until an absolute
  // deadline on MonotonicNow()'s scale, so that time passing between
  // computing the deadline and starting to wait is not added to the wait.
  // Timer loops should prefer it.
  virtual bool AwaitUntil(absl::Mutex* mu, const absl::Condition& cond,
                          absl::Duration monotonic_deadline);

  // The process-wide real clock. Never null; never deleted.
  static Clock* Real();
};

// A clock that moves only when told to. Sleepers and waiters wake when
// AdvanceTime() carries the clock past their deadline.
//
// Example:
//   SimulatedClock clock(absl::FromUnixSeconds(1706745600));
//   Component c(&clock);
//   clock.AdvanceTime(absl::Seconds(60));  // c sees one minute pass,
//   instantly.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::UnixEpoch());

  absl::Time Now() override;
  absl::Duration MonotonicNow() override;
  void SleepFor(absl::Duration d) override;
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration timeout) override;
  bool AwaitUntil(absl::Mutex* mu, const absl::Condition& cond,
                  absl::Duration monotonic_deadline) override;

  // Moves time forward by `d` (>= 0) and wakes everyone whose deadline passed.
  // Those waiters stop counting as blocked (waiters()) at once, before they
  // have run again.
  void AdvanceTime(absl::Duration d);
  // Number of threads blocked in SleepFor/AwaitWithTimeout/AwaitUntil that
  // have not been released yet: neither has their deadline passed nor has
  // their condition been seen to hold. A waiter whose condition another
  // thread made true (and released its mutex) no longer counts, even before
  // it has run again.
  int waiters();
  // Blocks the calling thread until at least `n` threads are blocked on this
  // clock (see waiters()), or until `real_timeout` of real time has passed (a
  // safety bound, not a way to let time pass). Returns whether the count was
  // reached. This is how a test knows that a component's timer thread has
  // finished its work and parked again before it advances time.
  //
  // Example:
  //   clock.AdvanceTime(absl::Seconds(1));
  //   ASSERT_TRUE(clock.AwaitWaiters(1));  // the timer ran and waits again
  bool AwaitWaiters(int n, absl::Duration real_timeout = absl::Seconds(60));

 private:
  struct Waiter {
    absl::Mutex* mu;
    int64_t deadline_ns;
    // True while the waiter counts in blocked_; whoever releases it (its
    // condition seen true, or AdvanceTime past its deadline) flips it once.
    std::atomic<bool> counted{false};
  };
  // Stops counting `w` as blocked, once.
  void Release(Waiter* w);

  const absl::Time start_;
  // Nanoseconds since start_; read without the lock.
  std::atomic<int64_t> elapsed_ns_{0};
  // Threads counted as blocked. Changed atomically (a waiter's condition is
  // evaluated under its own mutex, not mu_); read by AwaitWaiters under mu_,
  // which every registration passes through.
  std::atomic<int> blocked_{0};
  absl::Mutex mu_;
  // State below is protected by mu_.
  std::vector<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
  // AdvanceTime() calls currently touching waiter mutexes.
  int waking_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_TIME_CLOCK_H_
