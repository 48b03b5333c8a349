#include "controller/metrics/controller_metrics.h"

#include <algorithm>
#include <utility>
#include <variant>

#include "common/metrics/metrics_export.h"
#include "controller/metrics/prometheus_view.h"

namespace fleetcanary {
namespace controller {
namespace {

template <typename Map>
double ValueOr0(const Map& map, const typename Map::key_type& key) {
  auto it = map.find(key);
  return it == map.end() ? 0 : it->second;
}

}  // namespace

ControllerMetrics::ControllerMetrics()
    : collectable_(std::make_shared<FunctionCollectable>(
          [this] { return RenderPrometheus(Snapshot()); })) {}

void ControllerMetrics::Restore(const std::vector<StreamTotal>& totals,
                                const std::map<std::string, double>& counters,
                                const std::vector<AgentRecord>& agents) {
  absl::MutexLock lock(&mu_);
  for (const StreamTotal& t : totals) streams_[t.key].Merge(t.stats);
  for (const auto& [name, value] : counters) {
    AddCounterLocked(ParseCounterName(name), value);
  }
  for (const AgentRecord& a : agents) {
    SetAgentDroppedLocked(a.agent_id, a.region, a.dropped_total);
  }
}

void ControllerMetrics::AddStream(const StreamKey& key,
                                  const StreamStats& delta) {
  absl::MutexLock lock(&mu_);
  streams_[key].Merge(delta);
}

void ControllerMetrics::AddCounter(const std::string& name, double delta) {
  if (!(delta > 0)) return;
  const CounterKey key = ParseCounterName(name);
  absl::MutexLock lock(&mu_);
  AddCounterLocked(key, delta);
}

void ControllerMetrics::AddCounterLocked(const CounterKey& key, double delta) {
  if (const auto* platform = std::get_if<PlatformCounter>(&key)) {
    platform_[*platform] += delta;
  } else if (const auto* phantom = std::get_if<PhantomCounter>(&key)) {
    phantom_[*phantom] += delta;
  } else {
    counters_[std::get<std::string>(key)] += delta;
  }
}

void ControllerMetrics::SetAgentDropped(const std::string& agent_id,
                                        const std::string& region,
                                        uint64_t dropped_total) {
  absl::MutexLock lock(&mu_);
  SetAgentDroppedLocked(agent_id, region, dropped_total);
}

void ControllerMetrics::SetAgentDroppedLocked(const std::string& agent_id,
                                              const std::string& region,
                                              uint64_t dropped_total) {
  AgentDrops& drops = agent_dropped_[agent_id];
  drops.region = region;
  drops.dropped_total = std::max(drops.dropped_total, dropped_total);
}

void ControllerMetrics::SetVerdict(const v1::Verdict& v) {
  absl::MutexLock lock(&mu_);
  verdicts_[{v.kind(), SizedStreamOf(v.key())}] = v.state();
}

void ControllerMetrics::SetErrorRateUpperBound(const v1::StreamKey& key,
                                               double bound) {
  absl::MutexLock lock(&mu_);
  upper_bounds_[SizedStreamOf(key)] = bound;
}

void ControllerMetrics::SessionOpened() {
  absl::MutexLock lock(&mu_);
  ++sessions_active_;
  ++sessions_total_;
}

void ControllerMetrics::SessionClosed() {
  absl::MutexLock lock(&mu_);
  --sessions_active_;
}

void ControllerMetrics::SetAgentCountsProvider(
    std::function<std::vector<AgentCount>()> fn) {
  absl::MutexLock lock(&mu_);
  agent_counts_ = std::move(fn);
}

void ControllerMetrics::SetRegionsWithoutAgentsProvider(
    std::function<std::vector<std::string>()> fn) {
  absl::MutexLock lock(&mu_);
  regions_without_agents_ = std::move(fn);
}

void ControllerMetrics::SetConfiguredStreamsProvider(
    std::function<std::vector<ConfiguredStreams>()> fn) {
  absl::MutexLock lock(&mu_);
  configured_ = std::move(fn);
}

void ControllerMetrics::SetIngestLoadProvider(std::function<IngestLoad()> fn) {
  absl::MutexLock lock(&mu_);
  ingest_load_ = std::move(fn);
}

StreamStats ControllerMetrics::stream(const StreamKey& key) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(key);
  return it == streams_.end() ? StreamStats() : it->second;
}

double ControllerMetrics::counter(const std::string& name) const {
  const CounterKey key = ParseCounterName(name);
  absl::MutexLock lock(&mu_);
  if (const auto* platform = std::get_if<PlatformCounter>(&key)) {
    return ValueOr0(platform_, *platform);
  }
  if (const auto* phantom = std::get_if<PhantomCounter>(&key)) {
    return ValueOr0(phantom_, *phantom);
  }
  return ValueOr0(counters_, std::get<std::string>(key));
}

int64_t ControllerMetrics::sessions_active() const {
  absl::MutexLock lock(&mu_);
  return sessions_active_;
}

void ControllerMetrics::SetStoreUp(bool up) {
  absl::MutexLock lock(&mu_);
  if (store_up_ && !up) counters_["store_unavailable_total"] += 1;
  store_up_ = up;
}

void ControllerMetrics::SetLeader(bool leader) {
  absl::MutexLock lock(&mu_);
  leader_ = leader;
}

MetricsSnapshot ControllerMetrics::Snapshot() const {
  std::function<std::vector<AgentCount>()> agent_counts;
  std::function<std::vector<std::string>()> regions_without;
  std::function<std::vector<ConfiguredStreams>()> configured;
  std::function<IngestLoad()> ingest_load;
  {
    absl::MutexLock lock(&mu_);
    agent_counts = agent_counts_;
    regions_without = regions_without_agents_;
    configured = configured_;
    ingest_load = ingest_load_;
  }
  // Providers take their own locks; call them without ours.
  MetricsSnapshot out;
  if (agent_counts) out.agents = agent_counts();
  if (regions_without) out.regions_without_agents = regions_without();
  if (configured) out.configured = configured();
  if (ingest_load) out.ingest = ingest_load();
  absl::MutexLock lock(&mu_);
  out.streams = streams_;
  out.counters = counters_;
  out.platform = platform_;
  out.phantom = phantom_;
  for (const auto& [id, drops] : agent_dropped_) {
    out.dropped_by_region[drops.region] += drops.dropped_total;
  }
  out.verdicts = verdicts_;
  out.error_rate_upper_bounds = upper_bounds_;
  out.sessions_active = sessions_active_;
  out.sessions_total = sessions_total_;
  out.store_up = store_up_;
  out.leader = leader_;
  return out;
}

}  // namespace controller
}  // namespace fleetcanary
