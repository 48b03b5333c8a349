// Waiting for something another thread or process does.
//
// Tests never sleep to let time pass. When a test needs another thread or
// process to have done something, it waits for that event: a notification or
// condition where the code offers one (absl::Notification, a Mutex condition,
// SimulatedClock::AwaitWaiters), and otherwise WaitUntil, which re-checks a
// condition (a counter reaching a value, a file appearing, a port answering)
// until it holds. The bound is a safety limit against hanging forever, never
// an expectation about speed: pick one far beyond what a slow machine needs.
//
// Thread-safety: `condition` runs on the caller's thread.
#ifndef FLEETCANARY_TESTS_TESTING_WAIT_H_
#define FLEETCANARY_TESTS_TESTING_WAIT_H_

#include <functional>

#include "absl/time/time.h"

namespace fleetcanary {
namespace testing {

// Returns true as soon as `condition()` holds; false if it still does not
// after `bound` of real time. Re-checks with a short back-off (1 ms growing to
// 20 ms), so a condition that becomes true is seen promptly.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration bound = absl::Seconds(60));

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_WAIT_H_
