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
#include <set>

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

  // Moves time forward by `d` (>= 0) and wakes everyone whose deadline passed.
  void AdvanceTime(absl::Duration d);
  // Number of threads currently blocked in SleepFor/AwaitWithTimeout; lets a
  // test wait until a component is parked before advancing time.
  int waiters();

 private:
  const absl::Time start_;
  // Nanoseconds since start_; read without the lock.
  std::atomic<int64_t> elapsed_ns_{0};
  absl::Mutex mu_;
  // State below is protected by mu_.
  std::multiset<absl::Mutex*> waiter_mutexes_ ABSL_GUARDED_BY(mu_);
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
  // AdvanceTime() calls currently touching waiter mutexes.
  int waking_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_TIME_CLOCK_H_
