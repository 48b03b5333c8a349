// The controller's domain counters and gauges, and their Prometheus view.
//
// Counters are cumulative over the controller's whole history: at startup
// Restore() loads the totals the store kept (stream totals, named counters,
// per-agent drop counts), and afterwards ingest adds exactly what it
// committed, so a counter never goes backwards within a process and survives
// restarts. Families exported (docs/metrics.md is the reference):
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
//   fleetcanary_ingest_{batches,outcomes,duplicates,gaps,commits,
//     commit_errors}_total
//   fleetcanary_sessions_active, fleetcanary_sessions_total,
//   fleetcanary_store_up (1 while the store answers and commits),
//   fleetcanary_store_unavailable_total (transitions to down)
//   fleetcanary_controller_leader (1 on the replica holding the lease)
//   fleetcanary_session_refused_total, fleetcanary_session_fenced_total
//   fleetcanary_agents_lost_total, fleetcanary_agents_recovered_total,
//   fleetcanary_agent_lost_seconds_total, fleetcanary_outcomes_rejected_total
//   fleetcanary_grpc_listener_unhealthy_total,
//   fleetcanary_grpc_listener_restarts_total (docs/hardening.md)
// Label values are bounded: size_class via FormatBytes, mode "buffered" /
// "stream", outcome and state the enum names.
//
// Always there, never stale (once SetConfiguredStreamsProvider is set):
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
// Series count (the cardinality formula, see docs/metrics.md): with S
// configured (region, target, mode, size) streams and M configured
// (region, target, mode) triples,
//   probes_total 13 S + histograms 2 * 18 S + received_bytes S = 50 S
//   platform/phantom counters 4 M, verdicts 5 states per verdict key,
//   ad-hoc at most 13 * (S + M) (the "other" class per triple).
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_
#define FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_

#include <prometheus/collectable.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace controller {

// Names of the persisted counters (keys of Store::LoadCounters()).
inline constexpr char kIngestBatches[] = "ingest_batches_total";
inline constexpr char kIngestOutcomes[] = "ingest_outcomes_total";
inline constexpr char kIngestDuplicates[] = "ingest_duplicates_total";
inline constexpr char kIngestGaps[] = "ingest_gaps_total";
inline constexpr char kIngestCommits[] = "ingest_commits_total";
inline constexpr char kIngestGapsRefused[] = "ingest_gaps_refused_total";
// Per-stream platform totals: PlatformCounterName("Errors", ...).
std::string PlatformCounterName(const std::string& metric,
                                const std::string& region,
                                const std::string& target, v1::InvokeMode mode);
std::string PhantomCounterName(const std::string& region,
                               const std::string& target, v1::InvokeMode mode);

// The streams the applied schedules configure: one (region, target, mode)
// with its size ladder.
struct ConfiguredStreams {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  std::vector<uint64_t> sizes;
};

// size_class label of an ad-hoc probe of `size_bytes`: FormatBytes when one
// of `ladder` (the configured sizes of its region, target and mode), else
// "other".
std::string AdhocSizeClass(uint64_t size_bytes,
                           const std::vector<uint64_t>& ladder);

struct AgentCount {
  std::string region;
  v1::AgentState state = v1::LIVE;
  int64_t count = 0;
};

class ControllerMetrics {
 public:
  ControllerMetrics();

  // Loads persisted totals. Call once, before anything is added.
  void Restore(const std::vector<StreamTotal>& totals,
               const std::map<std::string, double>& counters,
               const std::vector<AgentRecord>& agents);

  // Adds committed per-stream counts.
  void AddStream(const StreamKey& key, const StreamStats& delta);
  // Adds to a named counter (persisted ones above, or process-only ones such
  // as "ingest_commit_errors_total"). Negative deltas are ignored.
  void AddCounter(const std::string& name, double delta);
  // Records an agent's cumulative drop count (kept at its maximum).
  void SetAgentDropped(const std::string& agent_id, const std::string& region,
                       uint64_t dropped_total);
  void SetVerdict(const v1::Verdict& verdict);
  void SetErrorRateUpperBound(const v1::StreamKey& key, double bound);
  void SessionOpened();
  void SessionClosed();
  // Store reachability as last observed (a failed commit or health check
  // sets it down; a transition to down adds to store_unavailable_total).
  void SetStoreUp(bool up);
  // Whether this replica is the leader (holds the lease).
  void SetLeader(bool leader);

  // Live gauges read at scrape time (from the fleet registry).
  void SetAgentCountsProvider(std::function<std::vector<AgentCount>()> fn);
  void SetRegionsWithoutAgentsProvider(
      std::function<std::vector<std::string>()> fn);
  // What the schedules configure (read at scrape time). Without it every
  // stream ever counted is exported, without zero-filled series.
  void SetConfiguredStreamsProvider(
      std::function<std::vector<ConfiguredStreams>()> fn);

  // Reads, for tests and the admin API.
  StreamStats stream(const StreamKey& key) const;
  double counter(const std::string& name) const;
  int64_t sessions_active() const;

  // The Prometheus view; register it with a MetricsHttpServer.
  std::shared_ptr<prometheus::Collectable> collectable() {
    return collectable_;
  }

 private:
  std::vector<prometheus::MetricFamily> Collect() const;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<StreamKey, StreamStats> streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, double> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::string, uint64_t>> agent_dropped_
      ABSL_GUARDED_BY(mu_);
  // (kind, region, target, mode, size_class) -> state.
  std::map<std::tuple<int, std::string, std::string, int, std::string>, int>
      verdicts_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, int, std::string>, double>
      upper_bounds_ ABSL_GUARDED_BY(mu_);
  int64_t sessions_active_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sessions_total_ ABSL_GUARDED_BY(mu_) = 0;
  bool store_up_ ABSL_GUARDED_BY(mu_) = true;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  std::function<std::vector<AgentCount>()> agent_counts_ ABSL_GUARDED_BY(mu_);
  std::function<std::vector<std::string>()> regions_without_agents_
      ABSL_GUARDED_BY(mu_);
  std::function<std::vector<ConfiguredStreams>()> configured_
      ABSL_GUARDED_BY(mu_);

  std::shared_ptr<prometheus::Collectable> collectable_;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_
