// Runs a function periodically on a thread of its own, timed by a Clock.
//
// Run k (k = 1, 2, ...) is due at start + k * period on the clock's monotonic
// scale, where start is when the task was constructed. Deadlines are
// absolute: the time a run takes, or a late wake-up, never shifts the later
// ones. A run that overruns one or more due times makes the task skip them
// (counted by skipped()); runs never overlap and never queue up.
//
// Tests drive a task with a SimulatedClock: after AdvanceTime() past a due
// time, SimulatedClock::AwaitWaiters() returns once the run has finished and
// the thread waits for the next one (tests/testing/sim_time.h,
// StepAndSettle). A task counts as one waiter while it waits.
//
// Example:
//   PeriodicTask pruner(clock, absl::Minutes(10), [this] { Prune(); });
//   ...
//   pruner.Stop();  // or let the destructor do it
//
// Thread-safety: Stop(), runs() and skipped() may be called from any thread
// except from inside `run` (Stop() would wait for itself).
#ifndef FLEETCANARY_COMMON_TIME_PERIODIC_TASK_H_
#define FLEETCANARY_COMMON_TIME_PERIODIC_TASK_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace fleetcanary {

class PeriodicTask {
 public:
  // Starts the thread. REQUIRES: period > 0; `clock` outlives the task.
  PeriodicTask(Clock* clock, absl::Duration period,
               absl::AnyInvocable<void()> run);
  // Stop().
  ~PeriodicTask();

  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Wakes the thread, waits for a run in progress to finish, and joins it.
  // No run starts after Stop() returns. Idempotent.
  void Stop();

  // Runs completed so far.
  uint64_t runs() const;
  // Due times skipped because a run overran them.
  uint64_t skipped() const;

 private:
  void Loop();

  Clock* const clock_;
  const absl::Duration period_;
  absl::AnyInvocable<void()> run_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t runs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t skipped_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration next_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_TIME_PERIODIC_TASK_H_
