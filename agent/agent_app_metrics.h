// Internal to agent_app: the agent's own Prometheus view (/metrics), as a
// pure function of a snapshot of the engine, runner, outbox, session,
// platform-metrics and credential state. The app takes the snapshot; this
// module only names, documents and labels the figures, so the exposition
// format is testable without starting an agent.
//
// Thread-safety: pure functions.
#ifndef FLEETCANARY_AGENT_AGENT_APP_METRICS_H_
#define FLEETCANARY_AGENT_AGENT_APP_METRICS_H_

#include <prometheus/metric_family.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/outbox/outbox.h"
#include "agent/schedule/runner.h"
#include "agent/session/session_client.h"
#include "common/aws/credentials.h"

namespace fleetcanary {
namespace agent {

// Everything the agent's /metrics shows, read once per scrape.
struct AgentMetricsSnapshot {
  std::string region;  // Label of the agent-wide series.
  RunnerStats runner;
  OutboxStats outbox;
  SessionClientStats session;
  int in_flight = 0;  // Probes in flight in the engine.

  // Platform (CloudWatch) metrics; the loop's series only when it runs.
  bool platform_loop = false;
  uint64_t platform_poll_errors_total = 0;
  absl::Time platform_last_success = absl::InfinitePast();  // Past = never.
  // Each target with CloudWatch configured: whether it is being read
  // (credentials held or unsigned, endpoint allowed), by (region, target).
  struct PlatformTarget {
    std::string region;
    std::string target;
    bool enabled = false;
  };
  std::vector<PlatformTarget> platform_targets;

  // The provider chain's cache, its wall-clock reference, and the sums over
  // every target role's cache.
  aws::CacheStats chain;
  absl::Time now;
  uint64_t role_refreshes_total = 0;
  uint64_t role_refresh_failures_total = 0;
};

// The fleetcanary_agent_* families of `s`, in a fixed order: probes and
// outbox, session, platform metrics, credentials.
std::vector<prometheus::MetricFamily> AgentMetricsView(
    const AgentMetricsSnapshot& s);

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_AGENT_APP_METRICS_H_
