// Probe engine: one libcurl multi event loop that runs many concurrent canary
// invocations, verifies every body byte as it streams (common/payload), times
// every phase, and classifies each invocation into exactly one OutcomeClass.
//
// Thread-safety: Start() and Shutdown() may be called from any thread. Done
// callbacks run on the engine's own loop thread and must not block.
//
// (Interface agreed between the agent's session/runner and the engine; the
// implementation lives in probe_engine_impl.cc.)
#ifndef FLEETCANARY_AGENT_PROBE_PROBE_ENGINE_H_
#define FLEETCANARY_AGENT_PROBE_PROBE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {

// One invocation to run.
struct ProbeRequest {
  // Function URL base, e.g. "https://abc.lambda-url.us-east-1.on.aws/".
  // The engine appends "canary?bytes=N&chunk=C&gap_ms=G&seed=S".
  std::string url;
  v1::InvokeMode mode = v1::BUFFERED;
  v1::AuthType auth = v1::NONE;
  uint64_t size_bytes = 0;
  uint64_t chunk_bytes = 0;
  absl::Duration chunk_gap = absl::ZeroDuration();
  uint64_t seed = 0;
  // Sent as x-canary-probe-id; must come back.
  std::string probe_id;
  v1::ProbeLimits limits;
  v1::TransportOptions transport;
  // Copied into the Outcome as labels.
  std::string agent_id;
  std::string region;
  std::string target;
  std::string schedule_id;
  std::string adhoc_id;
};

struct ProbeEngineOptions {
  // Most transfers running at once; further Start() calls queue.
  int max_in_flight = 1024;
  // Total connections kept for reuse (keep-alive probes only).
  int max_connections = 4096;
};

class ProbeEngine {
 public:
  using DoneCallback = std::function<void(v1::Outcome)>;

  virtual ~ProbeEngine() = default;

  // Starts the loop thread. `clock` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<ProbeEngine>> Create(
      const ProbeEngineOptions& options, Clock* clock);

  // Queues one invocation; `done` is called exactly once with its Outcome
  // (sequence unset), also when the engine shuts down first (AGENT_ERROR).
  virtual void Start(ProbeRequest request, DoneCallback done) = 0;

  // Aborts everything in flight, runs outstanding callbacks, joins the loop.
  virtual void Shutdown() = 0;

  virtual int in_flight() const = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_PROBE_ENGINE_H_
