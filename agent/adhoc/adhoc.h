// Runs the controller's ad-hoc probes (ControllerMessage.adhoc_probe) on the
// agent's ProbeEngine, next to the scheduled probing and without touching it.
//
// One job per adhoc_id: `count` probes per URL (mode) x size, interleaved
// round by round (every mode and size once per round) so the modes are
// concurrent controls, at most `concurrency` in flight. Every outcome (with
// adhoc_id set) is appended to the outbox like any outcome, so it reaches
// the controller exactly once even across reconnects, and is also sent live
// as an AdhocResult; the job's last result has done = true. An AdhocProbe
// with cancel = true stops starting probes at once; the probes in flight
// complete, then done is sent. A second AdhocProbe for a running id is
// ignored. Bounded: at most `max_jobs` jobs and `max_probes_per_job` probes.
//
// Thread-safety: all methods are thread-safe. Callbacks run on the engine's
// loop thread (send_result, on_outcome) and must not block.
#ifndef FLEETCANARY_AGENT_ADHOC_ADHOC_H_
#define FLEETCANARY_AGENT_ADHOC_ADHOC_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/outbox/outbox.h"
#include "agent/probe/probe_engine.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace agent {

struct AdhocExecutorOptions {
  std::string agent_id;
  std::string region;
  // Seeds probe ids and payload seeds.
  uint64_t seed = 1;
  int max_jobs = 64;
  uint64_t max_probes_per_job = 1000000;
  uint32_t max_concurrency = 1000;
};

struct AdhocExecutorStats {
  uint64_t jobs_total = 0;
  uint64_t jobs_cancelled_total = 0;
  uint64_t jobs_refused_total = 0;
  uint64_t probes_started_total = 0;
  uint64_t probes_done_total = 0;
  int running_jobs = 0;
};

class AdhocExecutor {
 public:
  using ResultSink = std::function<void(v1::AdhocResult result)>;

  virtual ~AdhocExecutor() = default;

  // Dependencies must outlive the executor. `on_outcome` runs after each
  // outbox append (the session sends it); `send_result` sends the live
  // AdhocResult.
  static absl::StatusOr<std::unique_ptr<AdhocExecutor>> Create(
      const AdhocExecutorOptions& options, ProbeEngine* engine, Outbox* outbox,
      std::function<void()> on_outcome, ResultSink send_result);

  // Starts (or, with cancel, stops) a job. Never blocks.
  virtual void OnAdhocProbe(const v1::AdhocProbe& probe) = 0;

  // Cancels every job and starts nothing more. Idempotent.
  virtual void Stop() = 0;
  // Blocks until no ad-hoc probe is in flight, or `timeout` (real time).
  virtual bool WaitIdle(absl::Duration timeout) = 0;

  virtual AdhocExecutorStats stats() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_ADHOC_ADHOC_H_
