// Converges the agent to its AssignmentSet: one Clock-driven timer per
// assignment starts a probe on the ProbeEngine every `interval`, at
// `offset` within the interval (aligned to wall-clock multiples of the
// interval, so the two invoke modes of a pair stay interleaved and agents
// do not align); each outcome is appended to the outbox, then `on_outcome`
// runs (the session sends it).
//
// An assignment that did not change keeps its timer; changed ones are
// re-timed; removed ones stop (probes in flight still complete and are
// kept). A timer that fell more than one interval behind skips the missed
// slots (counted) instead of bursting. An assignment with size rotation
// (rotation_slots > 1) probes only in its turn of the platform-metrics
// periods, away from their edges (the first and last tenth, at most 100 ms).
//
// Thread-safety: all public methods are thread-safe. OnAssignments is the
// session's AssignmentSink.
#ifndef FLEETCANARY_AGENT_SCHEDULE_RUNNER_H_
#define FLEETCANARY_AGENT_SCHEDULE_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/outbox/outbox.h"
#include "agent/probe/probe_engine.h"
#include "agent/session/session_client.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace agent {

struct RunnerOptions {
  std::string agent_id;
  std::string region;
  // Seeds probe ids and payload seeds.
  uint64_t seed = 1;
};

struct RunnerStats {
  uint64_t assignments = 0;
  uint64_t probes_started_total = 0;
  uint64_t outcomes_appended_total = 0;
  uint64_t append_errors_total = 0;
  uint64_t slots_skipped_total = 0;
  uint64_t assignment_version = 0;
  // Clock::MonotonicNow() of the timer thread's last wake-up; it wakes at
  // least every minute (liveness: /healthz).
  absl::Duration last_tick;
};

class Runner : public AssignmentSink {
 public:
  ~Runner() override = default;

  // Starts the timer thread. Dependencies must outlive the runner.
  static absl::StatusOr<std::unique_ptr<Runner>> Create(
      const RunnerOptions& options, ProbeEngine* engine, Outbox* outbox,
      Clock* clock, std::function<void()> on_outcome);

  // Stops starting probes (probes in flight still complete). Idempotent.
  virtual void Stop() = 0;
  // Blocks until every started probe's outcome was handled, or `timeout`.
  virtual bool WaitIdle(absl::Duration timeout) = 0;

  virtual RunnerStats stats() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_SCHEDULE_RUNNER_H_
