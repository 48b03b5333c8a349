// The controller's domain counters and gauges. They are exported to
// Prometheus by prometheus_view.h (collectable() below).
//
// Counters are cumulative over the controller's whole history: at startup
// Restore() loads the totals the store kept (stream totals, named counters,
// per-agent drop counts), and afterwards ingest adds exactly what it
// committed, so a counter never goes backwards within a process and survives
// restarts. Per-stream platform and phantom totals and verdicts are held
// under the typed keys of metric_keys.h.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_
#define FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_

#include <prometheus/collectable.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "controller/metrics/metric_keys.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace controller {

// Names of the persisted counters (keys of Store::LoadCounters()). Per-stream
// platform and phantom totals are named by metric_keys.h.
inline constexpr char kIngestBatches[] = "ingest_batches_total";
inline constexpr char kIngestOutcomes[] = "ingest_outcomes_total";
inline constexpr char kIngestDuplicates[] = "ingest_duplicates_total";
inline constexpr char kIngestGaps[] = "ingest_gaps_total";
inline constexpr char kIngestCommits[] = "ingest_commits_total";
inline constexpr char kIngestGapsRefused[] = "ingest_gaps_refused_total";

// The streams the applied schedules configure: one (region, target, mode)
// with its size ladder.
struct ConfiguredStreams {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  std::vector<uint64_t> sizes;
};

struct AgentCount {
  std::string region;
  v1::AgentState state = v1::LIVE;
  int64_t count = 0;
};

// Ingest flow control at one instant (see IngestOptions::max_queued_outcomes
// and Ingest::AwaitCapacity).
struct IngestLoad {
  // Outcomes queued, being committed, or held by observers; and the bound at
  // which ingest saturates.
  int64_t pending_outcomes = 0;
  int64_t limit = 0;
  // True from reaching the bound until pending is down to half: sessions
  // stop reading their streams meanwhile.
  bool saturated = false;
  // Transitions into saturation since the process started.
  uint64_t saturations_total = 0;
  // Sessions waiting for capacity now, and times a session was paused.
  int64_t sessions_paused = 0;
  uint64_t session_pauses_total = 0;
};

// Everything the metrics hold at one instant, with the providers' answers:
// what a view renders.
struct MetricsSnapshot {
  std::map<StreamKey, StreamStats> streams;
  // Named counters (kIngestBatches, "session_refused_total", ...), including
  // ones no view exports.
  std::map<std::string, double> counters;
  std::map<PlatformCounter, double> platform;
  std::map<PhantomCounter, double> phantom;
  // Outcomes agents dropped, summed per region.
  std::map<std::string, uint64_t> dropped_by_region;
  std::map<VerdictSeries, v1::VerdictState> verdicts;
  std::map<SizedStream, double> error_rate_upper_bounds;
  int64_t sessions_active = 0;
  int64_t sessions_total = 0;
  bool store_up = true;
  bool leader = false;
  IngestLoad ingest;  // Zero without a provider.
  std::vector<AgentCount> agents;
  std::vector<std::string> regions_without_agents;
  // What the schedules configure; nullopt without a provider.
  std::optional<std::vector<ConfiguredStreams>> configured;
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
  // Adds to a counter by its persisted name: the named ones above, process-
  // only ones such as "ingest_commit_errors_total", or a per-stream name of
  // metric_keys.h. Negative deltas are ignored.
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
  // Ingest flow control (read at scrape time).
  void SetIngestLoadProvider(std::function<IngestLoad()> fn);
  // What the schedules configure (read at scrape time). Without it every
  // stream ever counted is exported, without zero-filled series.
  void SetConfiguredStreamsProvider(
      std::function<std::vector<ConfiguredStreams>()> fn);

  // Reads, for tests and the admin API. counter() takes the persisted name
  // AddCounter takes.
  StreamStats stream(const StreamKey& key) const;
  double counter(const std::string& name) const;
  int64_t sessions_active() const;
  // Everything at once; calls the providers (without holding a lock).
  MetricsSnapshot Snapshot() const;

  // The Prometheus view (prometheus_view.h) of Snapshot(); register it with
  // a MetricsHttpServer.
  std::shared_ptr<prometheus::Collectable> collectable() {
    return collectable_;
  }

 private:
  struct AgentDrops {
    std::string region;
    uint64_t dropped_total = 0;
  };

  void AddCounterLocked(const CounterKey& key, double delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetAgentDroppedLocked(const std::string& agent_id,
                             const std::string& region, uint64_t dropped_total)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<StreamKey, StreamStats> streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, double> counters_ ABSL_GUARDED_BY(mu_);
  std::map<PlatformCounter, double> platform_ ABSL_GUARDED_BY(mu_);
  std::map<PhantomCounter, double> phantom_ ABSL_GUARDED_BY(mu_);
  // By agent id.
  std::map<std::string, AgentDrops> agent_dropped_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictSeries, v1::VerdictState> verdicts_ ABSL_GUARDED_BY(mu_);
  std::map<SizedStream, double> upper_bounds_ ABSL_GUARDED_BY(mu_);
  int64_t sessions_active_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sessions_total_ ABSL_GUARDED_BY(mu_) = 0;
  bool store_up_ ABSL_GUARDED_BY(mu_) = true;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  std::function<std::vector<AgentCount>()> agent_counts_ ABSL_GUARDED_BY(mu_);
  std::function<std::vector<std::string>()> regions_without_agents_
      ABSL_GUARDED_BY(mu_);
  std::function<std::vector<ConfiguredStreams>()> configured_
      ABSL_GUARDED_BY(mu_);
  std::function<IngestLoad()> ingest_load_ ABSL_GUARDED_BY(mu_);

  std::shared_ptr<prometheus::Collectable> collectable_;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_METRICS_CONTROLLER_METRICS_H_
