// Driving components that run timer threads on a SimulatedClock.
//
// A component with a timer thread parks on the clock between ticks. A test
// that advances time must first know that every such thread is parked, and
// after advancing must wait until each woken thread has done its work and
// parked again; only then is the component's state the result of that step.
// These helpers do exactly that, with SimulatedClock::AwaitWaiters: no real
// time is slept, and the outcome does not depend on the machine's speed.
//
// Thread-safety: call from the test's thread only.
#ifndef FLEETCANARY_TESTS_TESTING_SIM_TIME_H_
#define FLEETCANARY_TESTS_TESTING_SIM_TIME_H_

#include <functional>

#include "absl/time/time.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace testing {

// REQUIRES: exactly `threads` threads wait on `clock` between their ticks.
// Waits until all of them are parked, advances `clock` by `step`, and waits
// until all of them are parked again. Returns false (the test should fail) if
// they do not park within a generous real-time safety bound.
bool StepAndSettle(SimulatedClock* clock, int threads, absl::Duration step);

// Repeats StepAndSettle until `done()` holds or `max_steps` steps were made.
// Returns whether `done()` held.
//
// Example:
//   ASSERT_TRUE(AdvanceUntil(&clock, 3, absl::Milliseconds(200), 100,
//                            [&] { return sink.done(); }));
bool AdvanceUntil(SimulatedClock* clock, int threads, absl::Duration step,
                  int max_steps, const std::function<bool()>& done);

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_SIM_TIME_H_
