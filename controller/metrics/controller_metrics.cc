#include "controller/metrics/controller_metrics.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/metrics_export.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace controller {
namespace {

constexpr char kPlatformPrefix[] = "platform|";
constexpr char kPhantomPrefix[] = "phantom|";

MetricLabels StreamLabels(const StreamKey& k) {
  return {{"region", k.region},
          {"target", k.target},
          {"mode", ModeLabel(k.mode)},
          {"size_class", FormatBytes(k.size_bytes)}};
}

// Verdict keys spanning every size carry "all", never an empty label.
std::string SizeClassLabel(const std::string& size_class) {
  return size_class.empty() ? "all" : size_class;
}

using Triple = std::tuple<std::string, std::string, std::string>;

}  // namespace

std::string AdhocSizeClass(uint64_t size_bytes,
                           const std::vector<uint64_t>& ladder) {
  return std::find(ladder.begin(), ladder.end(), size_bytes) != ladder.end()
             ? FormatBytes(size_bytes)
             : "other";
}

std::string PlatformCounterName(const std::string& metric,
                                const std::string& region,
                                const std::string& target,
                                v1::InvokeMode mode) {
  return absl::StrCat(kPlatformPrefix, metric, "|", region, "|", target, "|",
                      ModeLabel(mode));
}

std::string PhantomCounterName(const std::string& region,
                               const std::string& target, v1::InvokeMode mode) {
  return absl::StrCat(kPhantomPrefix, region, "|", target, "|",
                      ModeLabel(mode));
}

ControllerMetrics::ControllerMetrics()
    : collectable_(
          std::make_shared<FunctionCollectable>([this] { return Collect(); })) {
}

void ControllerMetrics::Restore(const std::vector<StreamTotal>& totals,
                                const std::map<std::string, double>& counters,
                                const std::vector<AgentRecord>& agents) {
  absl::MutexLock lock(&mu_);
  for (const StreamTotal& t : totals) streams_[t.key].Merge(t.stats);
  for (const auto& [name, value] : counters) counters_[name] += value;
  for (const AgentRecord& a : agents) {
    auto& slot = agent_dropped_[a.agent_id];
    slot.first = a.region;
    slot.second = std::max(slot.second, a.dropped_total);
  }
}

void ControllerMetrics::AddStream(const StreamKey& key,
                                  const StreamStats& delta) {
  absl::MutexLock lock(&mu_);
  streams_[key].Merge(delta);
}

void ControllerMetrics::AddCounter(const std::string& name, double delta) {
  if (!(delta > 0)) return;
  absl::MutexLock lock(&mu_);
  counters_[name] += delta;
}

void ControllerMetrics::SetAgentDropped(const std::string& agent_id,
                                        const std::string& region,
                                        uint64_t dropped_total) {
  absl::MutexLock lock(&mu_);
  auto& slot = agent_dropped_[agent_id];
  slot.first = region;
  slot.second = std::max(slot.second, dropped_total);
}

void ControllerMetrics::SetVerdict(const v1::Verdict& v) {
  absl::MutexLock lock(&mu_);
  verdicts_[{v.kind(), v.key().region(), v.key().target(), v.key().mode(),
             v.key().size_class()}] = v.state();
}

void ControllerMetrics::SetErrorRateUpperBound(const v1::StreamKey& key,
                                               double bound) {
  absl::MutexLock lock(&mu_);
  upper_bounds_[{key.region(), key.target(), key.mode(), key.size_class()}] =
      bound;
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

StreamStats ControllerMetrics::stream(const StreamKey& key) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(key);
  return it == streams_.end() ? StreamStats() : it->second;
}

double ControllerMetrics::counter(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second;
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

std::vector<prometheus::MetricFamily> ControllerMetrics::Collect() const {
  std::function<std::vector<AgentCount>()> agent_counts;
  std::function<std::vector<std::string>()> regions_without;
  std::function<std::vector<ConfiguredStreams>()> configured_fn;
  {
    absl::MutexLock lock(&mu_);
    agent_counts = agent_counts_;
    regions_without = regions_without_agents_;
    configured_fn = configured_;
  }
  // Providers take their own locks; call them without ours.
  std::vector<AgentCount> agents;
  if (agent_counts) agents = agent_counts();
  std::vector<std::string> lonely;
  if (regions_without) lonely = regions_without();
  // What the schedules configure: scheduled stream keys, (region, target,
  // mode) triples with their ladders, (region, target) pairs.
  const bool filter = static_cast<bool>(configured_fn);
  std::set<StreamKey> scheduled;
  std::map<Triple, std::vector<uint64_t>> ladders;
  std::set<std::pair<std::string, std::string>> pairs;
  if (filter) {
    for (const ConfiguredStreams& cs : configured_fn()) {
      const Triple t{cs.region, cs.target, ModeLabel(cs.mode)};
      auto& ladder = ladders[t];
      for (uint64_t size : cs.sizes) {
        scheduled.insert({cs.region, cs.target, cs.mode, size, false});
        ladder.push_back(size);
      }
      pairs.insert({cs.region, cs.target});
    }
  }

  auto probes = CounterFamily("fleetcanary_probes_total",
                              "Scheduled probe outcomes committed, by class.");
  auto adhoc = CounterFamily("fleetcanary_adhoc_probes_total",
                             "Ad-hoc probe outcomes committed, by class.");
  auto ttfb = HistogramFamily("fleetcanary_probe_ttfb_seconds",
                              "Time to response headers of scheduled probes.");
  auto duration = HistogramFamily("fleetcanary_probe_duration_seconds",
                                  "Total duration of scheduled probes.");
  auto bytes = CounterFamily("fleetcanary_probe_received_bytes_total",
                             "Body bytes received by scheduled probes.");
  auto platform_errors =
      CounterFamily("fleetcanary_platform_errors_total",
                    "Platform-reported errors (AWS/Lambda Errors, Sum).");
  auto platform_invocations =
      CounterFamily("fleetcanary_platform_invocations_total",
                    "Platform-reported invocations (AWS/Lambda Invocations).");
  auto platform_5xx =
      CounterFamily("fleetcanary_platform_url_5xx_total",
                    "Platform-reported Function URL 5xx (Url5xxCount).");
  auto phantom = CounterFamily(
      "fleetcanary_phantom_errors_total",
      "Platform errors that no client observed (reconciled per minute).");
  auto verdict = GaugeFamily(
      "fleetcanary_verdict",
      "Verdict state set: 1 for the current state of each stream/kind.");
  auto bound =
      GaugeFamily("fleetcanary_error_rate_upper_bound",
                  "Upper confidence bound proven on a stream's error rate.");
  auto agents_family =
      GaugeFamily("fleetcanary_agents", "Known agents by region and state.");
  auto lonely_family =
      GaugeFamily("fleetcanary_regions_without_agents",
                  "1 for each scheduled region that has no live agent.");
  auto dropped = CounterFamily(
      "fleetcanary_outbox_dropped_total",
      "Outcomes agents dropped from their bounded outbox (never ingested).");
  auto sessions_active = GaugeFamily("fleetcanary_sessions_active",
                                     "Agent sessions currently open.");
  auto sessions_total = CounterFamily("fleetcanary_sessions_total",
                                      "Agent sessions opened by this process.");
  std::vector<prometheus::MetricFamily> ingest;
  for (const auto& [name, help] :
       std::vector<std::pair<std::string, std::string>>{
           {kIngestBatches, "Outcome batches received."},
           {kIngestOutcomes, "Outcomes applied (exactly once)."},
           {kIngestDuplicates, "Resent outcomes skipped as already applied."},
           {kIngestGaps, "Sequence numbers never received (agent drops)."},
           {kIngestCommits, "Store transactions committed by ingest."},
           {kIngestGapsRefused,
            "Outcome batches refused because they skip more sequence "
            "numbers than the agent's dropped count explains (forged or "
            "corrupt; the watermark is kept)."},
           {"ingest_commit_errors_total", "Store transactions that failed."},
           {"ingest_platform_samples_total", "Platform samples stored."},
           {"store_unavailable_total",
            "Times the store became unreachable or refused writes."},
           {"session_refused_total",
            "Agent sessions refused: no valid client certificate, a Hello "
            "not matching it, or a region not allowed."},
           {"agents_lost_total",
            "Times an agent was marked LOST (disconnected or silent)."},
           {"agents_recovered_total",
            "Times a LOST agent came back (heartbeat or reconnect)."},
           {"agent_lost_seconds_total",
            "Seconds agents spent LOST before they came back."},
           {"session_fenced_total",
            "Agent sessions closed because a newer session for the same "
            "agent id was welcomed (one live session per agent)."},
           {"grpc_listener_unhealthy_total",
            "Times the gRPC listener went unhealthy (short of file "
            "descriptors or a failed accept); health said NOT_SERVING."},
           {"grpc_connections_refused_total",
            "Connections closed on accept because a gRPC listener had "
            "its maximum open (--grpc_max_connections)."},
           {"grpc_listener_restarts_total",
            "Times the gRPC listeners were rebuilt after they stopped "
            "accepting."},
           {"outcomes_rejected_total",
            "Outcomes refused: not for a stream assigned to the agent, nor "
            "for one of its ad-hoc runs."},
           {"store_check_failures_total",
            "Periodic store write checks that failed (the controller is "
            "not ready meanwhile)."},
           {"retention_runs_total", "Retention runs that completed."},
           {"retention_runs_failed_total",
            "Retention runs that failed (old rows stay until the next run)."},
           {"retention_rows_deleted_total",
            "Rows removed by retention (raw failures, verdicts, platform "
            "samples, hourly aggregates, and per-minute aggregates rolled "
            "up)."},
           {"retention_minutes_rolled_up_total",
            "Per-minute aggregate rows rolled up into hourly aggregates."},
           {"detector_state_saves_total",
            "Detector states (baselines, CUSUMs, fix tests) saved to the "
            "store."},
           {"detector_state_save_failures_total",
            "Detector-state saves the store refused (the previous save "
            "stays; retried next interval)."},
           {"detector_state_restores_total",
            "Times a controller continued from a saved detector state."},
           {"detector_state_discarded_total",
            "Saved detector states not used at start (another detection "
            "config, another format, unreadable): verdicts started from "
            "HEALTHY."},
           {"detector_state_unseen_outcomes_total",
            "Outcomes committed after the last detector-state save that a "
            "restarted controller's detectors never saw."},
           {"reconcile_before_start_total",
            "Platform samples and outcomes of periods that began before this "
            "controller process started: not reconciled into phantom "
            "errors (the previous process saw part of them)."}}) {
    ingest.push_back(CounterFamily(absl::StrCat("fleetcanary_", name), help));
  }

  const std::vector<double> bounds(kLatencyBucketBounds.begin(),
                                   kLatencyBucketBounds.end());
  absl::MutexLock lock(&mu_);
  // Scheduled streams: the configured ones (zero-filled), or without a
  // provider every one counted so far.
  static const StreamStats kZero;
  std::map<StreamKey, const StreamStats*> exported;
  for (const StreamKey& key : scheduled) exported[key] = &kZero;
  // Ad-hoc: merged per exported size class.
  std::map<std::tuple<std::string, std::string, int, std::string>,
           std::array<uint64_t, kNumOutcomeClasses>>
      adhoc_counts;
  for (const auto& [key, stats] : streams_) {
    if (key.adhoc) {
      std::string size_class = FormatBytes(key.size_bytes);
      if (filter) {
        auto it = ladders.find({key.region, key.target, ModeLabel(key.mode)});
        size_class = AdhocSizeClass(
            key.size_bytes,
            it == ladders.end() ? std::vector<uint64_t>() : it->second);
      }
      auto& counts =
          adhoc_counts[{key.region, key.target, key.mode, size_class}];
      for (int c = 0; c < kNumOutcomeClasses; ++c) counts[c] += stats.counts[c];
      continue;
    }
    if (filter && !scheduled.count(key)) continue;  // No longer configured.
    exported[key] = &stats;
  }
  for (const auto& [key, stats] : exported) {
    const MetricLabels labels = StreamLabels(key);
    // Zero-filled: every class a probe can end in (not UNSPECIFIED).
    for (int c = 1; c < kNumOutcomeClasses; ++c) {
      if (!filter && stats->counts[c] == 0) continue;
      MetricLabels l = labels;
      l.push_back({"outcome", OutcomeLabel(static_cast<v1::OutcomeClass>(c))});
      AddSample(&probes, l, stats->counts[c]);
    }
    AddHistogramSample(&ttfb, labels, stats->ttfb.buckets, bounds,
                       stats->ttfb.sum);
    AddHistogramSample(&duration, labels, stats->duration.buckets, bounds,
                       stats->duration.sum);
    AddSample(&bytes, labels, stats->received_bytes);
  }
  for (const auto& [k, counts] : adhoc_counts) {
    const MetricLabels labels = {
        {"region", std::get<0>(k)},
        {"target", std::get<1>(k)},
        {"mode", ModeLabel(static_cast<v1::InvokeMode>(std::get<2>(k)))},
        {"size_class", std::get<3>(k)}};
    for (int c = 0; c < kNumOutcomeClasses; ++c) {
      if (counts[c] == 0) continue;
      MetricLabels l = labels;
      l.push_back({"outcome", OutcomeLabel(static_cast<v1::OutcomeClass>(c))});
      AddSample(&adhoc, l, counts[c]);
    }
  }
  // Platform and phantom counters: configured triples at 0 unless counted.
  std::map<Triple, double> platform_values[3];
  std::map<Triple, double> phantom_values;
  for (const auto& [t, ladder] : ladders) {
    for (auto& m : platform_values) m[t] = 0;
    phantom_values[t] = 0;
  }
  auto keep = [&](const Triple& t) { return !filter || ladders.count(t); };
  for (const auto& [name, value] : counters_) {
    if (name.rfind(kPlatformPrefix, 0) == 0) {
      std::vector<std::string> p = absl::StrSplit(name, '|');
      if (p.size() != 5) continue;
      const Triple t{p[2], p[3], p[4]};
      if (!keep(t)) continue;
      if (p[1] == "Errors") {
        platform_values[0][t] = value;
      } else if (p[1] == "Invocations") {
        platform_values[1][t] = value;
      } else if (p[1] == "Url5xxCount") {
        platform_values[2][t] = value;
      }
    } else if (name.rfind(kPhantomPrefix, 0) == 0) {
      std::vector<std::string> p = absl::StrSplit(name, '|');
      if (p.size() != 4) continue;
      const Triple t{p[1], p[2], p[3]};
      if (keep(t)) phantom_values[t] = value;
    } else {
      for (auto& f : ingest) {
        if (f.name == absl::StrCat("fleetcanary_", name)) {
          AddSample(&f, {}, value);
        }
      }
    }
  }
  for (auto& f : ingest) {
    if (f.metric.empty()) AddSample(&f, {}, 0);
  }
  auto triple_labels = [](const Triple& t) -> MetricLabels {
    return {{"region", std::get<0>(t)},
            {"target", std::get<1>(t)},
            {"mode", std::get<2>(t)}};
  };
  prometheus::MetricFamily* platform_families[3] = {
      &platform_errors, &platform_invocations, &platform_5xx};
  for (int i = 0; i < 3; ++i) {
    for (const auto& [t, v] : platform_values[i]) {
      AddSample(platform_families[i], triple_labels(t), v);
    }
  }
  for (const auto& [t, v] : phantom_values) {
    AddSample(&phantom, triple_labels(t), v);
  }
  auto keep_pair = [&](const std::string& region, const std::string& target) {
    return !filter || pairs.count({region, target});
  };
  for (const auto& [k, state] : verdicts_) {
    if (!keep_pair(std::get<1>(k), std::get<2>(k))) continue;
    for (int s = v1::HEALTHY; s <= v1::FIX_CONFIRMED; ++s) {
      AddSample(
          &verdict,
          {{"kind", v1::VerdictKind_Name(std::get<0>(k))},
           {"region", std::get<1>(k)},
           {"target", std::get<2>(k)},
           {"mode", ModeLabel(static_cast<v1::InvokeMode>(std::get<3>(k)))},
           {"size_class", SizeClassLabel(std::get<4>(k))},
           {"state", v1::VerdictState_Name(s)}},
          s == state ? 1 : 0);
    }
  }
  for (const auto& [k, value] : upper_bounds_) {
    if (!keep_pair(std::get<0>(k), std::get<1>(k))) continue;
    AddSample(&bound,
              {{"region", std::get<0>(k)},
               {"target", std::get<1>(k)},
               {"mode", ModeLabel(static_cast<v1::InvokeMode>(std::get<2>(k)))},
               {"size_class", SizeClassLabel(std::get<3>(k))}},
              value);
  }
  for (const AgentCount& a : agents) {
    AddSample(&agents_family,
              {{"region", a.region}, {"state", v1::AgentState_Name(a.state)}},
              a.count);
  }
  for (const std::string& r : lonely) {
    AddSample(&lonely_family, {{"region", r}}, 1);
  }
  std::map<std::string, uint64_t> dropped_by_region;
  for (const auto& [id, slot] : agent_dropped_) {
    dropped_by_region[slot.first] += slot.second;
  }
  for (const auto& [region, n] : dropped_by_region) {
    AddSample(&dropped, {{"region", region}}, n);
  }
  AddSample(&sessions_active, {}, sessions_active_);
  AddSample(&sessions_total, {}, sessions_total_);
  auto store_up = GaugeFamily(
      "fleetcanary_store_up",
      "1 while the store answers and commits; 0 while it is unreachable, "
      "read-only or failing over (outcomes are then not acknowledged).");
  AddSample(&store_up, {}, store_up_ ? 1 : 0);
  auto leader = GaugeFamily(
      "fleetcanary_controller_leader",
      "1 on the controller replica that holds the leader lease (schedules "
      "and runs verdicts), 0 on the others.");
  AddSample(&leader, {}, leader_ ? 1 : 0);

  std::vector<prometheus::MetricFamily> out;
  for (auto* f : {&probes, &adhoc, &ttfb, &duration, &bytes, &platform_errors,
                  &platform_invocations, &platform_5xx, &phantom, &verdict,
                  &bound, &agents_family, &lonely_family, &dropped,
                  &sessions_active, &sessions_total, &store_up, &leader}) {
    out.push_back(std::move(*f));
  }
  for (auto& f : ingest) out.push_back(std::move(f));
  return out;
}

}  // namespace controller
}  // namespace fleetcanary
