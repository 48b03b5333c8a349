// Probe engine: one libcurl multi event loop that runs many concurrent canary
// invocations, verifies every body byte as it streams (common/payload), times
// every phase, and classifies each invocation into exactly one OutcomeClass.
//
// Thread-safety: Start() and Shutdown() may be called from any thread. Done
// callbacks run on the engine's own loop thread and must not block; they may
// call Start() but not Shutdown().
//
// How it works: one thread runs libcurl's multi interface in socket-action
// mode over epoll, so thousands of transfers cost O(active sockets) per event.
// Response-side timings (TTFB, first body byte, last byte, total, gaps) and
// the per-probe limits (total timeout, stall limit) use the injected Clock's
// MonotonicNow; connection-phase timings (DNS, connect, TLS, request sent)
// come from libcurl's own monotonic timers for the same invocation.
// Classification is agent/probe/classify.h.
//
// Stall: "no byte for stall_limit" counts every byte that arrives on the
// probe's own connection (response headers trickled one byte at a time
// included), not only complete header lines and decoded body data. A
// keep-alive probe on a shared (reused or multiplexed) connection counts only
// complete header lines and body data.
//
// Target guard (SSRF): with ProbeEngineOptions::guard set, every probe's URL
// must pass TargetGuard::CheckUrl before anything is done, and every address
// libcurl is about to connect to (after DNS) must pass CheckAddress in the
// open-socket hook, before the socket exists. A refusal is AGENT_ERROR with
// detail "target guard: ..." (our policy, never the platform's fault) and no
// connection attempt. Proxies from the environment (http_proxy, ...) are
// never used, so the address checked is the address connected.
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
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/net/target_guard.h"
#include "common/sigv4/sigv4.h"
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
  // AWS_IAM only: the target's role (Target.role_arn); its credentials
  // (ProbeEngineOptions::role_credentials) sign the request instead of the
  // agent's own. Empty = ProbeEngineOptions::credentials.
  std::string role_arn;
};

// The labels of the outcome `r` will produce (probe id, stream, seed), what
// the outbox records before the probe runs (Outbox::MarkStarted).
inline v1::Outcome StartedSkeleton(const ProbeRequest& r) {
  v1::Outcome o;
  o.set_probe_id(r.probe_id);
  o.set_agent_id(r.agent_id);
  o.set_region(r.region);
  o.set_target(r.target);
  o.set_mode(r.mode);
  o.set_requested_bytes(r.size_bytes);
  o.set_schedule_id(r.schedule_id);
  o.set_adhoc_id(r.adhoc_id);
  o.set_seed(r.seed);
  return o;
}

// The outcome of a probe that was not run because its start could not be
// recorded (Outbox::MarkStarted failed, e.g. on a full disk): AGENT_ERROR,
// never counted against the platform. Appending it either keeps that trace or
// counts it as lost, so the probe never vanishes silently.
inline v1::Outcome NotRunOutcome(const ProbeRequest& r,
                                 const absl::Status& why) {
  v1::Outcome o = StartedSkeleton(r);
  o.set_outcome_class(v1::AGENT_ERROR);
  o.set_transfer_end(v1::LOCAL_ABORT);
  o.set_detail(absl::StrCat("not run: its start could not be recorded: ",
                            why.message()));
  return o;
}

struct ProbeEngineOptions {
  // Most transfers running at once; further Start() calls queue.
  int max_in_flight = 1024;
  // Total connections kept for reuse (keep-alive probes only).
  int max_connections = 4096;
  // Longest the loop sleeps between checks of the injected clock's deadlines.
  // Only matters with a SimulatedClock (a real clock wakes the loop exactly).
  absl::Duration max_poll_wait = absl::Milliseconds(50);
  std::string user_agent = "fleetcanary-agent/0.1";
  // libcurl's receive buffer (CURLOPT_BUFFERSIZE, clamped by libcurl to
  // [1 KiB, 512 KiB]) of a running HTTP/1.1 probe whose body is at most
  // small_body_bytes; allocated for each transfer, freed when it ends. 2 KiB
  // takes a 1 KiB canary response (headers and body) in one read and keeps
  // thousands of slow streams small. Bigger bodies, and HTTP/2 probes, keep
  // libcurl's default of 16 KiB: a 1 MiB body came in ~25 % slower with
  // 2 KiB (bench/README.md), and libcurl 7.88 can stall an HTTP/2 stream
  // with a small buffer. Only the pages a response touches become resident,
  // so the memory saved is less than the difference in size.
  long receive_buffer_bytes = 2048;
  uint64_t small_body_bytes = 64 * 1024;
  // Credentials for AuthType AWS_IAM; default: the standard environment
  // variables (sigv4::CredentialsFromEnvironment). An error makes the probe
  // AGENT_ERROR with the error's message.
  std::function<absl::StatusOr<sigv4::Credentials>()> credentials;
  // Credentials of an assumed role, for requests with a role_arn; unset =
  // such requests are AGENT_ERROR. Must not block (return what is held).
  std::function<absl::StatusOr<sigv4::Credentials>(const std::string& role_arn)>
      role_credentials;
  // Which URLs and addresses probes may reach (see above). Null allows
  // everything: only for `canaryctl probe --direct`, where the person at the
  // keyboard chooses the URL. Agents always set one.
  std::shared_ptr<const TargetGuard> guard;
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
  // Invalid requests (bad URL, unknown http_version, unreadable ca_file,
  // size above max_body_bytes, missing credentials) complete as AGENT_ERROR
  // without touching the network. After Shutdown(), `done` runs at once on
  // the calling thread.
  virtual void Start(ProbeRequest request, DoneCallback done) = 0;

  // Aborts everything in flight (AGENT_ERROR, "engine shut down"), runs
  // outstanding callbacks, joins the loop. Idempotent.
  // REQUIRES: not called from a done callback.
  virtual void Shutdown() = 0;

  // Invocations started and not yet completed (queued + running); a probe
  // stops counting just before its done callback runs.
  virtual int in_flight() const = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_PROBE_ENGINE_H_
