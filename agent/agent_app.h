// The fleetcanary agent process: outbox → probe engine → runner → session,
// plus the agent's own HTTP port: /metrics (engine, outbox and session
// counters), /healthz (liveness: serving, not stopped) and /readyz (session
// with the controller up and an AssignmentSet applied; 503 otherwise).
// AWS credentials come from the SDK-order provider chain
// (common/aws/credentials.h), refreshed in the background; they sign
// AWS_IAM probes and CloudWatch reads, and never hold up NONE-auth probes.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_AGENT_AGENT_APP_H_
#define FLEETCANARY_AGENT_AGENT_APP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/outbox/outbox.h"
#include "agent/schedule/runner.h"
#include "agent/session/session_client.h"
#include "common/aws/credentials.h"
#include "common/grpc/security.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {
namespace agent {

struct AgentAppOptions {
  // agent_id, region, controller_address, data_dir (required), bounds,
  // intervals, metrics_listen.
  v1::AgentConfig config;
  // Debug/testing: journal of every produced outcome (see OutboxOptions).
  std::string outcome_journal;
  // Seed of probe ids/payload seeds and backoff jitter.
  uint64_t seed = 1;
  // Transport to the controller (TLS/mTLS, or plaintext with tls.insecure).
  TlsOptions tls;
  // Environment the AWS credential chain and endpoint overrides read
  // (AWS_*); default: the process environment. Tests inject their own.
  aws::EnvLookup aws_env;
};

// The target guard an agent probes through (never allow-all): hosts
// matching *.lambda-url.*.on.aws plus config.target_allow_hosts, and, with
// target_allow_loopback, "localhost", "127.0.0.1", "::1" and the loopback
// ranges; private ranges only with target_allow_private. The controller's
// assignments cannot widen it. INVALID_ARGUMENT naming a bad host.
absl::StatusOr<std::unique_ptr<TargetGuard>> AgentTargetGuard(
    const v1::AgentConfig& config);

class AgentApp {
 public:
  virtual ~AgentApp() = default;

  // Validates the config (INVALID_ARGUMENT naming the field), opens
  // <data_dir>/outbox.db and starts everything. `clock` must outlive it.
  static absl::StatusOr<std::unique_ptr<AgentApp>> BuildAndStart(
      const AgentAppOptions& options, Clock* clock);

  // "host:port" of /metrics, /healthz, /readyz ("" when off).
  virtual std::string http_address() const = 0;

  // Graceful stop: no new probes, in-flight probes finish, the outbox is
  // flushed to the controller (up to `timeout` in all), then everything
  // stops. Returns whether the outbox was emptied. Idempotent.
  virtual bool Drain(absl::Duration timeout) = 0;

  virtual OutboxStats outbox_stats() = 0;
  virtual SessionClientStats session_stats() = 0;
  virtual RunnerStats runner_stats() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_AGENT_APP_H_
