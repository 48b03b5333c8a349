// The Prometheus view of the controller's metrics: renders a MetricsSnapshot
// as metric families, with the shared helpers of common/metrics/.
//
// Families exported (docs/metrics.md is the reference):
//   fleetcanary_probes_total{region,target,mode,size_class,outcome}
//   fleetcanary_adhoc_probes_total{region,target,mode,size_class,outcome}
//   fleetcanary_probe_ttfb_seconds / _duration_seconds (histograms)
//   fleetcanary_probe_received_bytes_total
//   fleetcanary_platform_errors_total / _invocations_total / _url_5xx_total
//     {region,target,mode}
//   fleetcanary_phantom_errors_total{region,target,mode}
//   fleetcanary_verdict{kind,region,target,mode,size_class,state} (state set)
//   fleetcanary_error_rate_upper_bound{region,target,mode,size_class}
//   fleetcanary_agents{region,state},
//   fleetcanary_regions_without_agents{region}
//   fleetcanary_outbox_dropped_total{region}
//   fleetcanary_sessions_active, fleetcanary_sessions_total,
//   fleetcanary_store_up (1 while the store answers and commits),
//   fleetcanary_controller_leader (1 on the replica holding the lease),
//   fleetcanary_ingest_{pending_outcomes,pending_limit,saturated,
//   sessions_paused} and fleetcanary_ingest_{saturations,session_pauses}_total
//   (flow control; see IngestLoad)
//   and one unlabelled counter per named counter, always present (0 until
//   counted): fleetcanary_ingest_{batches,outcomes,duplicates,gaps,commits,
//   gaps_refused,commit_errors,platform_samples}_total,
//   fleetcanary_store_unavailable_total (transitions to down),
//   fleetcanary_session_refused_total, fleetcanary_session_fenced_total,
//   fleetcanary_agents_lost_total, fleetcanary_agents_recovered_total,
//   fleetcanary_agent_lost_seconds_total, fleetcanary_outcomes_rejected_total,
//   fleetcanary_grpc_listener_unhealthy_total,
//   fleetcanary_grpc_connections_refused_total,
//   fleetcanary_grpc_listener_restarts_total (docs/hardening.md),
//   fleetcanary_store_check_failures_total, fleetcanary_retention_*_total,
//   fleetcanary_detector_state_*_total,
//   fleetcanary_reconcile_before_start_total.
// Label values are bounded: size_class via FormatBytes, mode "buffered" /
// "stream", outcome and state the enum names.
//
// Always there, never stale (once the snapshot carries configured streams):
//   - every (region, target, mode, size) stream the schedules configure is
//     exported from the first scrape, each outcome class at 0 until it
//     happens, histograms and byte counters at 0, and the platform/phantom
//     counters of each (region, target, mode) at 0;
//   - series of streams no schedule configures any more (deleted schedules,
//     removed regions or sizes) are no longer exported; their totals stay in
//     the store and come back if the stream is configured again;
//   - ad-hoc probes of a size no schedule of the target uses are exported
//     with size_class="other", so ad-hoc sizes cannot grow the series count;
//   - verdict and bound series of keys that span all sizes carry
//     size_class="all" (never an empty label beside per-size series).
// Without configured streams every series ever counted is exported, and
// outcome classes only once counted.
// Series count (the cardinality formula, see docs/metrics.md): with S
// configured (region, target, mode, size) streams and M configured
// (region, target, mode) triples,
//   probes_total 13 S + histograms 2 * 18 S + received_bytes S = 50 S
//   platform/phantom counters 4 M, verdicts 5 states per verdict key,
//   ad-hoc at most 13 * (S + M) (the "other" class per triple).
//
// Thread-safety: plain functions on caller-owned values.
#ifndef FLEETCANARY_CONTROLLER_METRICS_PROMETHEUS_VIEW_H_
#define FLEETCANARY_CONTROLLER_METRICS_PROMETHEUS_VIEW_H_

#include <prometheus/metric_family.h>

#include <cstdint>
#include <string>
#include <vector>

#include "controller/metrics/controller_metrics.h"

namespace fleetcanary {
namespace controller {

// Every family above, in a fixed order, series sorted by their keys.
std::vector<prometheus::MetricFamily> RenderPrometheus(
    const MetricsSnapshot& snapshot);

// size_class label of an ad-hoc probe of `size_bytes`: FormatBytes when one
// of `ladder` (the configured sizes of its region, target and mode), else
// "other".
std::string AdhocSizeClass(uint64_t size_bytes,
                           const std::vector<uint64_t>& ladder);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_METRICS_PROMETHEUS_VIEW_H_
