// The fleetcanary controller process: store → metrics (restored) → ingest →
// scheduler (fleet file applied) → session hub, served over gRPC
// (AgentSession, CanaryAdmin, health, reflection; CanaryAdmin optionally on
// its own listener) and /metrics, /status, /healthz, /readyz over HTTP.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_H_
#define FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc/security.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"
#include "controller/api/admin_core.h"
#include "controller/ingest/ingest.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/scheduler/scheduler.h"
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
  // How often retention pruning runs.
  absl::Duration prune_interval = absl::Hours(1);
  // Admin API (CanaryAdmin): bearer tokens (YAML of v1::AdminTokens). Empty:
  // every call is allowed when admin_allow_all (--insecure), else refused.
  std::string admin_tokens_file;
  bool admin_allow_all = false;
  // Which explicit URLs RunProbe may send agents to (hosts of registered
  // targets are always allowed).
  TargetGuardOptions target_guard;
  // gRPC transport: TLS (cert_file/key_file), mTLS for agents with ca_file,
  // or plaintext only when tls.insecure is set (INVALID_ARGUMENT otherwise).
  TlsOptions tls;
  // Regions agents may serve (Hello and certificate); empty = any.
  std::vector<std::string> allowed_regions;
  // Optional second, plaintext listener serving only the gRPC health service
  // (kubelet probes); "" = none.
  std::string health_listen;
  // Optional listener serving only the admin API (CanaryAdmin) and health,
  // over server-side TLS (tls.cert_file/key_file) without asking for a client
  // certificate: callers authenticate with bearer tokens. When set, the
  // admin API is served only there, not on grpc_listen (which then carries
  // agent sessions only). "" = the admin API shares grpc_listen.
  std::string admin_listen;
  // How often the store is checked for writes (an empty transaction). While
  // it fails, the health service reports NOT_SERVING on every listener and
  // GET /readyz answers 503.
  absl::Duration store_check_interval = absl::Seconds(10);
  // An agent that said goodbye (DRAINED) is forgotten this long after,
  // unless it reconnects.
  absl::Duration forget_drained_after = absl::Hours(1);
};

class ControllerServer {
 public:
  virtual ~ControllerServer() = default;

  // Opens <data_dir>/controller.db, restores metrics, applies the fleet,
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
