#include "agent/agent_app_metrics.h"

#include <utility>

#include "common/metrics/metrics_export.h"

namespace fleetcanary {
namespace agent {
namespace {

// Appends single-sample families labelled with the agent's region.
class FamilyWriter {
 public:
  FamilyWriter(const std::string& region,
               std::vector<prometheus::MetricFamily>* out)
      : labels_{{"region", region}}, out_(out) {}

  void Counter(const char* name, const char* help, double v) {
    out_->push_back(CounterWithSample(name, help, labels_, v));
  }
  void Gauge(const char* name, const char* help, double v) {
    out_->push_back(GaugeWithSample(name, help, labels_, v));
  }

 private:
  const MetricLabels labels_;
  std::vector<prometheus::MetricFamily>* const out_;
};

void AddProbeAndOutboxFamilies(const AgentMetricsSnapshot& s, FamilyWriter* w) {
  const RunnerStats& r = s.runner;
  const OutboxStats& o = s.outbox;
  w->Counter("fleetcanary_agent_probes_started_total", "Probes started.",
             r.probes_started_total);
  w->Counter("fleetcanary_agent_outcomes_appended_total",
             "Outcomes committed to the outbox.", r.outcomes_appended_total);
  w->Counter("fleetcanary_agent_outbox_append_errors_total",
             "Outcomes the outbox failed to store.", r.append_errors_total);
  w->Counter("fleetcanary_agent_slots_skipped_total",
             "Probe slots skipped because the timer fell behind.",
             r.slots_skipped_total);
  w->Gauge("fleetcanary_agent_in_flight", "Probes in flight.", s.in_flight);
  w->Gauge("fleetcanary_agent_assignments", "Assigned probe streams.",
           r.assignments);
  w->Gauge("fleetcanary_agent_outbox_depth", "Outcomes awaiting an Ack.",
           o.depth);
  w->Gauge("fleetcanary_agent_outbox_bytes", "Bytes awaiting an Ack.", o.bytes);
  w->Counter("fleetcanary_agent_outbox_dropped_total",
             "Outcomes dropped by the outbox bound (never sent).",
             o.dropped_total);
  w->Gauge("fleetcanary_agent_outbox_acked_sequence",
           "Highest sequence acknowledged by the controller.",
           o.acked_sequence);
}

void AddSessionFamilies(const SessionClientStats& s, FamilyWriter* w) {
  w->Gauge("fleetcanary_agent_session_connected",
           "1 while a session with the controller is established.",
           s.connected ? 1 : 0);
  w->Counter("fleetcanary_agent_session_reconnects_total",
             "Session streams that ended.", s.reconnects_total);
  w->Counter("fleetcanary_agent_session_batches_sent_total",
             "Outcome batches sent.", s.batches_sent_total);
  w->Counter("fleetcanary_agent_session_outcomes_sent_total",
             "Outcomes sent (including resends).", s.outcomes_sent_total);
  w->Counter("fleetcanary_agent_session_acks_total", "Acks received.",
             s.acks_total);
  w->Counter("fleetcanary_agent_platform_samples_sent_total",
             "Platform metric samples sent to the controller.",
             s.platform_samples_sent_total);
  w->Counter("fleetcanary_agent_platform_samples_dropped_total",
             "Platform metric samples dropped while disconnected.",
             s.platform_samples_dropped_total);
}

void AddPlatformFamilies(const AgentMetricsSnapshot& s, FamilyWriter* w,
                         std::vector<prometheus::MetricFamily>* out) {
  if (s.platform_loop) {
    w->Counter("fleetcanary_agent_platform_poll_errors_total",
               "Failed CloudWatch reads.", s.platform_poll_errors_total);
    const absl::Time last = s.platform_last_success;
    w->Gauge("fleetcanary_agent_platform_last_success_timestamp_seconds",
             "Wall time of the last successful CloudWatch read (0 = never).",
             last == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(last));
  }
  auto f = GaugeFamily(
      "fleetcanary_agent_platform_metrics_enabled",
      "1 while the CloudWatch metrics of a target that has them "
      "configured are being read (credentials held or unsigned, endpoint "
      "allowed), 0 when reading is off.");
  for (const AgentMetricsSnapshot::PlatformTarget& t : s.platform_targets) {
    AddSample(&f, {{"region", t.region}, {"target", t.target}},
              t.enabled ? 1 : 0);
  }
  out->push_back(std::move(f));
}

void AddCredentialFamilies(const AgentMetricsSnapshot& s, FamilyWriter* w) {
  const aws::CacheStats& cs = s.chain;
  w->Gauge("fleetcanary_agent_credentials_expiry_seconds",
           "Seconds until the held AWS credentials expire (-1 = long-term "
           "keys; 0 = none or expired).",
           !cs.has_credentials ? 0
           : cs.expiration == absl::InfiniteFuture()
               ? -1
               : absl::ToDoubleSeconds(cs.expiration - s.now));
  w->Counter("fleetcanary_agent_credentials_refreshes_total",
             "AWS credentials fetched by the provider chain and for targets' "
             "roles.",
             cs.refreshes_total + s.role_refreshes_total);
  w->Counter("fleetcanary_agent_credentials_refresh_failures_total",
             "Failed AWS credential fetches, chain and targets' roles (old "
             "credentials kept until they expire).",
             cs.refresh_failures_total + s.role_refresh_failures_total);
}

}  // namespace

std::vector<prometheus::MetricFamily> AgentMetricsView(
    const AgentMetricsSnapshot& s) {
  std::vector<prometheus::MetricFamily> out;
  FamilyWriter w(s.region, &out);
  AddProbeAndOutboxFamilies(s, &w);
  AddSessionFamilies(s.session, &w);
  AddPlatformFamilies(s, &w, &out);
  AddCredentialFamilies(s, &w);
  return out;
}

}  // namespace agent
}  // namespace fleetcanary
