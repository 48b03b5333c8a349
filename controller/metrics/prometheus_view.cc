#include "controller/metrics/prometheus_view.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/metrics/metrics_export.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace controller {
namespace {

using prometheus::MetricFamily;

// The unlabelled counters exported from MetricsSnapshot::counters, in
// export order: persisted name (the family is "fleetcanary_" + name), help.
constexpr std::pair<const char*, const char*> kNamedCounters[] = {
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
     "errors (the previous process saw part of them)."},
};

// The mode as its label tells it: modes without a label of their own read
// as unspecified, so they match one (region, target, mode) triple.
v1::InvokeMode LabelledMode(v1::InvokeMode mode) {
  return mode == v1::BUFFERED || mode == v1::RESPONSE_STREAM
             ? mode
             : v1::INVOKE_MODE_UNSPECIFIED;
}

TargetMode TripleOf(const std::string& region, const std::string& target,
                    v1::InvokeMode mode) {
  return {region, target, LabelledMode(mode)};
}

MetricLabels StreamLabels(const StreamKey& k) {
  return {{"region", k.region},
          {"target", k.target},
          {"mode", ModeLabel(k.mode)},
          {"size_class", FormatBytes(k.size_bytes)}};
}

MetricLabels TripleLabels(const TargetMode& t) {
  return {
      {"region", t.region}, {"target", t.target}, {"mode", ModeLabel(t.mode)}};
}

// Keys spanning every size carry size_class="all", never an empty label.
MetricLabels SizedStreamLabels(const SizedStream& k) {
  return {{"region", k.region},
          {"target", k.target},
          {"mode", ModeLabel(k.mode)},
          {"size_class", k.size_class.empty() ? "all" : k.size_class}};
}

MetricLabels WithOutcome(MetricLabels labels, int outcome_class) {
  labels.push_back(
      {"outcome", OutcomeLabel(static_cast<v1::OutcomeClass>(outcome_class))});
  return labels;
}

// What the schedules configure, as the view filters by it.
struct Configured {
  // False without a provider: every series ever counted is exported.
  bool filter = false;
  // Scheduled (not ad-hoc) stream keys.
  std::set<StreamKey> scheduled;
  // Size ladder of each configured (region, target, mode).
  absl::flat_hash_map<TargetMode, std::vector<uint64_t>> ladders;
  // Configured (region, target) pairs.
  absl::flat_hash_set<std::pair<std::string, std::string>> pairs;

  bool Keeps(const TargetMode& t) const {
    return !filter || ladders.contains(t);
  }
  bool Keeps(const std::string& region, const std::string& target) const {
    return !filter || pairs.contains({region, target});
  }
};

Configured ConfiguredFrom(const MetricsSnapshot& snapshot) {
  Configured out;
  if (!snapshot.configured) return out;
  out.filter = true;
  for (const ConfiguredStreams& cs : *snapshot.configured) {
    auto& ladder = out.ladders[TripleOf(cs.region, cs.target, cs.mode)];
    for (uint64_t size : cs.sizes) {
      out.scheduled.insert({cs.region, cs.target, cs.mode, size, false});
      ladder.push_back(size);
    }
    out.pairs.insert({cs.region, cs.target});
  }
  return out;
}

// fleetcanary_probes_total, the two latency histograms and received bytes of
// the scheduled streams.
struct ScheduledFamilies {
  MetricFamily probes =
      CounterFamily("fleetcanary_probes_total",
                    "Scheduled probe outcomes committed, by class.");
  MetricFamily ttfb =
      HistogramFamily("fleetcanary_probe_ttfb_seconds",
                      "Time to response headers of scheduled probes.");
  MetricFamily duration =
      HistogramFamily("fleetcanary_probe_duration_seconds",
                      "Total duration of scheduled probes.");
  MetricFamily bytes =
      CounterFamily("fleetcanary_probe_received_bytes_total",
                    "Body bytes received by scheduled probes.");
};

ScheduledFamilies RenderScheduled(const MetricsSnapshot& snapshot,
                                  const Configured& configured) {
  // The configured streams (zero-filled), or without a provider every one
  // counted so far.
  static const StreamStats kZero;
  std::map<StreamKey, const StreamStats*> exported;
  for (const StreamKey& key : configured.scheduled) exported[key] = &kZero;
  for (const auto& [key, stats] : snapshot.streams) {
    if (key.adhoc) continue;
    if (configured.filter && !configured.scheduled.count(key)) continue;
    exported[key] = &stats;
  }
  const std::vector<double> bounds(kLatencyBucketBounds.begin(),
                                   kLatencyBucketBounds.end());
  ScheduledFamilies out;
  for (const auto& [key, stats] : exported) {
    const MetricLabels labels = StreamLabels(key);
    // Zero-filled: every class a probe can end in (not UNSPECIFIED).
    for (int c = 1; c < kNumOutcomeClasses; ++c) {
      if (!configured.filter && stats->counts[c] == 0) continue;
      AddSample(&out.probes, WithOutcome(labels, c), stats->counts[c]);
    }
    AddHistogramSample(&out.ttfb, labels, stats->ttfb.buckets, bounds,
                       stats->ttfb.sum);
    AddHistogramSample(&out.duration, labels, stats->duration.buckets, bounds,
                       stats->duration.sum);
    AddSample(&out.bytes, labels, stats->received_bytes);
  }
  return out;
}

// fleetcanary_adhoc_probes_total: ad-hoc outcomes merged per exported size
// class, only the classes that happened.
MetricFamily RenderAdhoc(const MetricsSnapshot& snapshot,
                         const Configured& configured) {
  std::map<SizedStream, std::array<uint64_t, kNumOutcomeClasses>> counts;
  for (const auto& [key, stats] : snapshot.streams) {
    if (!key.adhoc) continue;
    std::string size_class = FormatBytes(key.size_bytes);
    if (configured.filter) {
      auto it =
          configured.ladders.find(TripleOf(key.region, key.target, key.mode));
      size_class = AdhocSizeClass(key.size_bytes, it == configured.ladders.end()
                                                      ? std::vector<uint64_t>()
                                                      : it->second);
    }
    auto& sum = counts[{key.region, key.target, key.mode, size_class}];
    for (int c = 0; c < kNumOutcomeClasses; ++c) sum[c] += stats.counts[c];
  }
  MetricFamily out =
      CounterFamily("fleetcanary_adhoc_probes_total",
                    "Ad-hoc probe outcomes committed, by class.");
  for (const auto& [key, sum] : counts) {
    const MetricLabels labels = SizedStreamLabels(key);
    for (int c = 0; c < kNumOutcomeClasses; ++c) {
      if (sum[c] != 0) AddSample(&out, WithOutcome(labels, c), sum[c]);
    }
  }
  return out;
}

// The platform counters and fleetcanary_phantom_errors_total: configured
// triples at 0 unless counted.
std::vector<MetricFamily> RenderPlatform(const MetricsSnapshot& snapshot,
                                         const Configured& configured) {
  std::vector<MetricFamily> out = {
      CounterFamily("fleetcanary_platform_errors_total",
                    "Platform-reported errors (AWS/Lambda Errors, Sum)."),
      CounterFamily("fleetcanary_platform_invocations_total",
                    "Platform-reported invocations (AWS/Lambda Invocations)."),
      CounterFamily("fleetcanary_platform_url_5xx_total",
                    "Platform-reported Function URL 5xx (Url5xxCount)."),
      CounterFamily(
          "fleetcanary_phantom_errors_total",
          "Platform errors that no client observed (reconciled per minute).")};
  // By family: the three PlatformMetric values, then phantom errors.
  std::map<TargetMode, double> values[4];
  for (const auto& [triple, ladder] : configured.ladders) {
    for (auto& v : values) v[triple] = 0;
  }
  for (const auto& [key, value] : snapshot.platform) {
    if (configured.Keeps(key.stream)) {
      values[static_cast<int>(key.metric)][key.stream] = value;
    }
  }
  for (const auto& [key, value] : snapshot.phantom) {
    if (configured.Keeps(key.stream)) values[3][key.stream] = value;
  }
  for (int i = 0; i < 4; ++i) {
    for (const auto& [triple, v] : values[i]) {
      AddSample(&out[i], TripleLabels(triple), v);
    }
  }
  return out;
}

// fleetcanary_verdict (a state set) and fleetcanary_error_rate_upper_bound
// of configured (region, target) pairs.
std::vector<MetricFamily> RenderVerdicts(const MetricsSnapshot& snapshot,
                                         const Configured& configured) {
  MetricFamily verdict = GaugeFamily(
      "fleetcanary_verdict",
      "Verdict state set: 1 for the current state of each stream/kind.");
  for (const auto& [key, state] : snapshot.verdicts) {
    if (!configured.Keeps(key.stream.region, key.stream.target)) continue;
    MetricLabels labels = SizedStreamLabels(key.stream);
    labels.insert(labels.begin(), {"kind", v1::VerdictKind_Name(key.kind)});
    for (int s = v1::HEALTHY; s <= v1::FIX_CONFIRMED; ++s) {
      MetricLabels l = labels;
      l.push_back({"state", v1::VerdictState_Name(s)});
      AddSample(&verdict, l, s == state ? 1 : 0);
    }
  }
  MetricFamily bound =
      GaugeFamily("fleetcanary_error_rate_upper_bound",
                  "Upper confidence bound proven on a stream's error rate.");
  for (const auto& [key, value] : snapshot.error_rate_upper_bounds) {
    if (!configured.Keeps(key.region, key.target)) continue;
    AddSample(&bound, SizedStreamLabels(key), value);
  }
  std::vector<MetricFamily> out;
  out.push_back(std::move(verdict));
  out.push_back(std::move(bound));
  return out;
}

// Agents, sessions, the store and leadership.
std::vector<MetricFamily> RenderFleet(const MetricsSnapshot& snapshot) {
  std::vector<MetricFamily> out;
  MetricFamily agents =
      GaugeFamily("fleetcanary_agents", "Known agents by region and state.");
  for (const AgentCount& a : snapshot.agents) {
    AddSample(&agents,
              {{"region", a.region}, {"state", v1::AgentState_Name(a.state)}},
              a.count);
  }
  out.push_back(std::move(agents));
  MetricFamily lonely =
      GaugeFamily("fleetcanary_regions_without_agents",
                  "1 for each scheduled region that has no live agent.");
  for (const std::string& r : snapshot.regions_without_agents) {
    AddSample(&lonely, {{"region", r}}, 1);
  }
  out.push_back(std::move(lonely));
  MetricFamily dropped = CounterFamily(
      "fleetcanary_outbox_dropped_total",
      "Outcomes agents dropped from their bounded outbox (never ingested).");
  for (const auto& [region, n] : snapshot.dropped_by_region) {
    AddSample(&dropped, {{"region", region}}, n);
  }
  out.push_back(std::move(dropped));
  out.push_back(GaugeWithSample("fleetcanary_sessions_active",
                                "Agent sessions currently open.", {},
                                snapshot.sessions_active));
  out.push_back(CounterWithSample("fleetcanary_sessions_total",
                                  "Agent sessions opened by this process.", {},
                                  snapshot.sessions_total));
  out.push_back(GaugeWithSample(
      "fleetcanary_store_up",
      "1 while the store answers and commits; 0 while it is unreachable, "
      "read-only or failing over (outcomes are then not acknowledged).",
      {}, snapshot.store_up ? 1 : 0));
  out.push_back(GaugeWithSample(
      "fleetcanary_controller_leader",
      "1 on the controller replica that holds the leader lease (schedules "
      "and runs verdicts), 0 on the others.",
      {}, snapshot.leader ? 1 : 0));
  return out;
}

// Ingest flow control: how close the controller is to pausing the agents'
// streams, and whether it does now.
std::vector<MetricFamily> RenderIngestLoad(const IngestLoad& load) {
  std::vector<MetricFamily> out;
  out.push_back(GaugeWithSample(
      "fleetcanary_ingest_pending_outcomes",
      "Outcomes received and not yet released: queued, being committed, or "
      "held by the verdict engine.",
      {}, load.pending_outcomes));
  out.push_back(GaugeWithSample("fleetcanary_ingest_pending_limit",
                                "Pending outcomes at which ingest saturates.",
                                {}, load.limit));
  out.push_back(GaugeWithSample(
      "fleetcanary_ingest_saturated",
      "1 while ingest is saturated: agent sessions are not read until the "
      "pending outcomes are down to half the limit (agents keep outcomes in "
      "their outboxes meanwhile).",
      {}, load.saturated ? 1 : 0));
  out.push_back(
      CounterWithSample("fleetcanary_ingest_saturations_total",
                        "Times ingest became saturated (by this process).", {},
                        static_cast<double>(load.saturations_total)));
  out.push_back(GaugeWithSample("fleetcanary_ingest_sessions_paused",
                                "Agent sessions waiting for ingest capacity.",
                                {}, load.sessions_paused));
  out.push_back(CounterWithSample(
      "fleetcanary_ingest_session_pauses_total",
      "Times an agent session stopped reading because ingest was saturated "
      "(by this process).",
      {}, static_cast<double>(load.session_pauses_total)));
  return out;
}

// One family per kNamedCounters entry, 0 until counted.
std::vector<MetricFamily> RenderNamedCounters(const MetricsSnapshot& snapshot) {
  std::vector<MetricFamily> out;
  for (const auto& [name, help] : kNamedCounters) {
    auto it = snapshot.counters.find(name);
    out.push_back(
        CounterWithSample(absl::StrCat("fleetcanary_", name), help, {},
                          it == snapshot.counters.end() ? 0 : it->second));
  }
  return out;
}

void Append(std::vector<MetricFamily>* out, std::vector<MetricFamily> more) {
  out->insert(out->end(), std::make_move_iterator(more.begin()),
              std::make_move_iterator(more.end()));
}

}  // namespace

std::string AdhocSizeClass(uint64_t size_bytes,
                           const std::vector<uint64_t>& ladder) {
  return std::find(ladder.begin(), ladder.end(), size_bytes) != ladder.end()
             ? FormatBytes(size_bytes)
             : "other";
}

std::vector<MetricFamily> RenderPrometheus(const MetricsSnapshot& snapshot) {
  const Configured configured = ConfiguredFrom(snapshot);
  ScheduledFamilies scheduled = RenderScheduled(snapshot, configured);
  std::vector<MetricFamily> out;
  out.push_back(std::move(scheduled.probes));
  out.push_back(RenderAdhoc(snapshot, configured));
  out.push_back(std::move(scheduled.ttfb));
  out.push_back(std::move(scheduled.duration));
  out.push_back(std::move(scheduled.bytes));
  Append(&out, RenderPlatform(snapshot, configured));
  Append(&out, RenderVerdicts(snapshot, configured));
  Append(&out, RenderFleet(snapshot));
  Append(&out, RenderIngestLoad(snapshot.ingest));
  Append(&out, RenderNamedCounters(snapshot));
  return out;
}

}  // namespace controller
}  // namespace fleetcanary
