// The fleetcanary controller process: store → metrics (restored) → ingest →
// scheduler (fleet file applied) → session hub, served over gRPC
// (AgentSession, CanaryAdmin, health, reflection; CanaryAdmin optionally on
// its own listener) and /metrics, /status, /healthz, /readyz over HTTP.
//
// Readiness: the gRPC health service says SERVING only while the store
// answers and commits. When it is unreachable, read-only or failing over,
// commits fail, nothing is acknowledged (agents keep their outcomes), the
// health service says NOT_SERVING, fleetcanary_store_up is 0 and
// fleetcanary_store_unavailable_total counts the outage; a log line marks
// each transition.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_H_
#define FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc/security.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"
#include "controller/api/admin_core.h"
#include "controller/fleet/scheduler.h"
#include "controller/ingest/ingest.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"
#include "controller/verdicts/verdict_service.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {
namespace controller {

struct ControllerServerOptions {
  // grpc_listen, http_listen, data_dir, heartbeat_interval, retention, ...
  // Defaults: 127.0.0.1:0 for both listeners, heartbeat 10s.
  v1::ControllerConfig config;
  // Targets and schedules applied at start (merged into the stored ones).
  v1::FleetConfig fleet;
  IngestOptions ingest;
  // The store: "" = SQLite at <data_dir>/controller.db; else a URL
  // (sqlite:///path.db, postgresql://user@host:port/db; see OpenStore).
  std::string store_url;
  // How often the store is pinged; while it does not answer (or a commit
  // fails) the gRPC health service reports NOT_SERVING.
  absl::Duration store_check_interval = absl::Seconds(2);
  // Several replicas on one (PostgreSQL) store: when enabled, the process
  // first runs as a standby (gRPC health NOT_SERVING, agent sessions refused
  // with "not the leader; leader=<address>", /metrics with
  // fleetcanary_controller_leader 0, the admin API's reads and /status
  // served from the store, admin changes and probes refused naming the
  // leader, /readyz 503) until it wins the lease, then starts in
  // full with its store fenced at the lease's epoch. Losing the lease calls
  // leader_on_lost (main exits: the replica comes back as a standby).
  bool leader_election = false;
  std::string replica_id;         // Default: hostname-pid.
  std::string advertise_address;  // Default: the bound gRPC address.
  absl::Duration leader_lease = absl::Seconds(10);
  std::function<void()> leader_on_lost;
  // How often retention pruning runs.
  absl::Duration prune_interval = absl::Hours(1);
  // Admin API (CanaryAdmin): bearer tokens (YAML of v1::AdminTokens). Empty:
  // every call is allowed when admin_allow_all (--insecure), else refused.
  std::string admin_tokens_file;
  bool admin_allow_all = false;
  // Which explicit URLs RunProbe may send agents to (hosts of registered
  // targets are always allowed), and which addresses target URLs may name
  // when schedules are applied (--fleet or ApplySchedules): loopback,
  // private and link-local/metadata IP literals are refused unless allowed
  // here (allow_loopback, allow_private, allowed_networks).
  TargetGuardOptions target_guard;
  // gRPC transport: TLS (cert_file/key_file), mTLS for agents with ca_file,
  // or plaintext only when tls.insecure is set (INVALID_ARGUMENT otherwise).
  TlsOptions tls;
  // Regions agents may serve (Hello and certificate); empty = any.
  std::vector<std::string> allowed_regions;
  // Optional second, plaintext listener serving only the gRPC health service
  // (kubelet probes); "" = none.
  std::string health_listen;
  // Agent ids a certificate may claim besides its own name (see
  // AgentSessionAuth::agent_id_pattern); INVALID_ARGUMENT if not a regex.
  std::string agent_id_pattern;
  // Probes per ad-hoc RunProbe at most (INVALID_ARGUMENT beyond).
  uint64_t adhoc_max_probes = 10000;
  // Hardening of the gRPC listener (docs/hardening.md): a connection must
  // finish its TLS/HTTP2 handshake within `handshake_timeout`, idle ones are
  // closed after `max_connection_idle`, at most `max_threads` threads serve
  // it, and messages above `max_message_bytes` are refused.
  absl::Duration handshake_timeout = absl::Seconds(5);
  absl::Duration max_connection_idle = absl::Minutes(5);
  int max_threads = 64;
  int max_message_bytes = 4 << 20;
  // Memory gRPC may use for the agents' connections (read buffers, HTTP/2
  // windows, parsed messages awaiting a reader). Under pressure gRPC shrinks
  // the flow-control windows, so a paused session (ingest flow control)
  // holds little; without it each stream's window grows with the measured
  // bandwidth and the controller's memory grows with the machine's speed.
  int64_t grpc_memory_bytes = int64_t{512} << 20;
  // Largest admin API request (RESOURCE_EXHAUSTED beyond). Bearer tokens
  // are checked on the call's headers before any of it is read
  // (controller/api/admin_gate.h).
  int admin_max_message_bytes = 1 << 20;
  // Hard caps on open connections (controller/server/capped_listener.h):
  // over them a new connection is closed at once, counted in
  // grpc_connections_refused_total and logged once per 10 s. 0 for the main
  // listener = three quarters of the (raised) file-descriptor limit.
  int max_connections = 0;
  int admin_max_connections = 256;
  // The listener guard checks descriptors and accept failures every
  // `self_check_interval` while healthy and every 250 ms while it reports
  // NOT_SERVING (so SERVING returns promptly); 0 disables the guard.
  absl::Duration self_check_interval = absl::Seconds(2);
  // Optional listener serving only the admin API (CanaryAdmin) and health,
  // over server-side TLS (tls.cert_file/key_file) without asking for a client
  // certificate: callers authenticate with bearer tokens. When set, the
  // admin API is served only there, not on grpc_listen (which then carries
  // agent sessions only). "" = the admin API shares grpc_listen.
  std::string admin_listen;
  // An agent that said goodbye (DRAINED) is forgotten this long after,
  // unless it reconnects.
  absl::Duration forget_drained_after = absl::Hours(1);
};

class ControllerServer {
 public:
  virtual ~ControllerServer() = default;

  // Opens the store (store_url, else <data_dir>/controller.db), restores
  // metrics, applies the fleet,
  // binds both listeners and starts serving. `clock` must outlive it.
  // Errors name the failing setting (e.g. "grpc_listen: cannot bind ...").
  static absl::StatusOr<std::unique_ptr<ControllerServer>> BuildAndStart(
      const ControllerServerOptions& options, Clock* clock);

  // "host:port" actually bound.
  virtual std::string grpc_address() const = 0;
  virtual std::string http_address() const = 0;
  // "host:port" of the health listener ("" when none).
  virtual std::string health_address() const = 0;
  // "host:port" of the admin listener ("" when none).
  virtual std::string admin_address() const = 0;
  // False while the last store check failed (readiness).
  virtual bool store_healthy() const = 0;

  virtual Scheduler* scheduler() = 0;
  virtual Ingest* ingest() = 0;
  virtual Store* store() = 0;
  // Whether this replica is the leader (always true without election).
  virtual bool is_leader() = 0;
  virtual ControllerMetrics* metrics() = 0;
  // Live verdicts (the admin API's VerdictSource; DeclareFix).
  virtual VerdictService* verdicts() = 0;
  // The admin API's core (RunProbe, schedules, agents, verdicts).
  virtual AdminCore* admin() = 0;

  // Graceful stop: refuse new streams, commit and acknowledge what was
  // received, send Drain, close sessions, stop the servers. Idempotent.
  virtual void Drain(absl::Duration timeout) = 0;
  // Blocks until Drain() finished.
  virtual void Wait() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_H_
