#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace testing {

bool StepAndSettle(SimulatedClock* clock, int threads, absl::Duration step) {
  if (!clock->AwaitWaiters(threads)) return false;
  clock->AdvanceTime(step);
  return clock->AwaitWaiters(threads);
}

bool AdvanceUntil(SimulatedClock* clock, int threads, absl::Duration step,
                  int max_steps, const std::function<bool()>& done) {
  for (int i = 0; i < max_steps && !done(); ++i) {
    if (!StepAndSettle(clock, threads, step)) return false;
  }
  return done();
}

}  // namespace testing
}  // namespace fleetcanary
