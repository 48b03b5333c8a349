#include "tests/testing/wait.h"

#include <algorithm>

#include "common/time/clock.h"

namespace fleetcanary {
namespace testing {

bool WaitUntil(const std::function<bool()>& condition, absl::Duration bound) {
  Clock* clock = Clock::Real();
  const absl::Duration deadline = clock->MonotonicNow() + bound;
  absl::Duration backoff = absl::Milliseconds(1);
  while (!condition()) {
    if (clock->MonotonicNow() > deadline) return false;
    clock->SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(20));
  }
  return true;
}

}  // namespace testing
}  // namespace fleetcanary
