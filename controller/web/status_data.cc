#include "controller/web/status_data.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "analysis/report/report_builder.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace {

struct Counts {
  double failures = 0;
  double trials = 0;
};

std::vector<RateSeries> ToSeries(
    const std::map<std::string, std::map<absl::Time, Counts>>& by_label) {
  std::vector<RateSeries> out;
  for (const auto& [label, points] : by_label) {
    RateSeries s;
    s.label = label;
    for (const auto& [t, c] : points) {
      s.points.emplace_back(t, c.trials > 0 ? c.failures / c.trials : 0.0);
    }
    out.push_back(std::move(s));
  }
  return out;
}

int Severity(v1::VerdictState s) {
  switch (s) {
    case v1::REGRESSION:
      return 5;
    case v1::RECOVERING:
      return 4;
    case v1::SUSPECT:
      return 3;
    case v1::FIX_CONFIRMED:
      return 2;
    case v1::HEALTHY:
      return 1;
    default:
      return 0;
  }
}

// Whether verdict `v` is about matrix cell `c`.
bool Covers(const v1::Verdict& v, const MatrixCell& c) {
  const v1::StreamKey& k = v.key();
  if (k.target() != c.target || k.region() != c.region) return false;
  switch (v.kind()) {
    case v1::STREAM_HEALTH:
      return k.mode() == c.mode && k.size_class() == FormatBytes(c.size_bytes);
    case v1::MODE_DIFFERENCE:  // The mode with the higher rate.
      return k.size_class() == FormatBytes(c.size_bytes) &&
             c.mode == (v.evidence().rate_ratio() >= 1 ? v1::RESPONSE_STREAM
                                                       : v1::BUFFERED);
    default:  // PHANTOM_ERRORS, SIZE_TREND, HARD_DOWN: the region x mode.
      return k.mode() == c.mode;
  }
}

// The matrix: the incident report's builder over the page's window, per
// target (its whole-window counts), coloured by the current verdicts.
void FillMatrix(const std::vector<controller::StreamMinute>& minutes,
                const std::vector<v1::PlatformMetricSample>& samples,
                absl::Time from, absl::Time now, StatusPageData* data) {
  std::set<std::string> targets;
  for (const controller::StreamMinute& m : minutes) {
    if (!m.key.adhoc) targets.insert(m.key.target);
  }
  for (const v1::Verdict& v : data->verdicts) {
    if (v.state() != v1::HEALTHY &&
        v.state() != v1::VERDICT_STATE_UNSPECIFIED &&
        std::find(data->incident_targets.begin(), data->incident_targets.end(),
                  v.key().target()) == data->incident_targets.end()) {
      data->incident_targets.push_back(v.key().target());
    }
  }
  report::ReportData input;
  input.minutes = minutes;
  input.platform_samples = samples;
  for (const std::string& target : targets) {
    report::ReportOptions options;
    options.target = target;
    options.from = from;
    options.to = now + absl::Nanoseconds(1);
    options.generated_at = now;
    absl::StatusOr<v1::IncidentReport> r =
        report::BuildIncidentReport(input, options);
    if (!r.ok()) continue;  // NOT_FOUND: nothing of it in the window.
    std::map<std::pair<std::string, int>, double> phantom;
    for (const v1::ReportPlatform& p : r->platform()) {
      const v1::ReportPlatformCounts& whole = p.periods(0);
      if (whole.platform_invocations() > 0) {
        phantom[{p.region(), p.mode()}] = whole.phantom_rate();
      }
    }
    for (const v1::ReportCell& c : r->cells()) {
      MatrixCell m;
      m.target = target;
      m.region = c.region();
      m.mode = c.mode();
      m.size_bytes = c.size_bytes();
      const v1::ReportCounts& whole = c.periods(0);
      m.trials = whole.trials();
      m.failures = whole.failures();
      auto p = phantom.find({c.region(), c.mode()});
      if (p != phantom.end()) m.phantom_rate = p->second;
      for (const v1::Verdict& v : data->verdicts) {
        if (Covers(v, m) && Severity(v.state()) > Severity(m.state)) {
          m.state = v.state();
        }
      }
      data->matrix.push_back(std::move(m));
    }
  }
}

}  // namespace

absl::StatusOr<StatusPageData> CollectStatusPageData(
    controller::Store* store, controller::VerdictSource* verdicts,
    controller::Scheduler* scheduler, absl::Time now, absl::Duration window) {
  StatusPageData data;
  data.now = now;
  const absl::Time from = now - window;
  if (verdicts != nullptr) {
    absl::StatusOr<std::vector<v1::Verdict>> current =
        verdicts->Current(v1::StreamKey(), /*include_healthy=*/true);
    if (!current.ok()) return current.status();
    data.verdicts = std::move(*current);
  }
  absl::StatusOr<std::vector<v1::Verdict>> history =
      store->ListVerdicts(from, 10000);
  if (!history.ok()) return history.status();
  data.transitions = std::move(*history);

  absl::StatusOr<std::vector<controller::StreamMinute>> minutes =
      controller::QueryStreamCounts(store, controller::MinuteOf(from),
                                    controller::MinuteOf(now) + 1);
  if (!minutes.ok()) return minutes.status();
  std::map<std::string, std::map<absl::Time, Counts>> by_mode, by_size;
  for (const controller::StreamMinute& m : *minutes) {
    if (m.key.adhoc) continue;
    const uint64_t probes = m.stats.probes();
    const uint64_t ok = m.stats.counts[v1::OK];
    const uint64_t ours = m.stats.counts[v1::AGENT_ERROR];
    const double trials = static_cast<double>(probes - ours);
    const double failures = static_cast<double>(probes - ok - ours);
    const absl::Time t = absl::FromUnixSeconds(m.minute * 60);
    Counts& c1 =
        by_mode[InvokeModeName(m.key.mode, "buffered") + " (clients)"][t];
    c1.trials += trials;
    c1.failures += failures;
    Counts& c2 = by_size[FormatBytes(m.key.size_bytes)][t];
    c2.trials += trials;
    c2.failures += failures;
    data.probes_total += probes;
  }
  absl::StatusOr<std::vector<v1::PlatformMetricSample>> samples =
      store->QueryPlatformSamples(from, now);
  if (!samples.ok()) return samples.status();
  for (const v1::PlatformMetricSample& s : *samples) {
    if (s.stat() != "Sum") continue;
    const absl::Time t = TimeFromProto(s.period_start());
    Counts& c =
        by_mode[InvokeModeName(s.mode(), "buffered") + " (platform)"][t];
    if (s.metric() == "Errors") c.failures += s.value();
    if (s.metric() == "Invocations") c.trials += s.value();
  }
  FillMatrix(*minutes, *samples, from, now, &data);
  data.rate_by_mode = ToSeries(by_mode);
  data.rate_by_size = ToSeries(by_size);
  if (scheduler != nullptr) data.agents = scheduler->ListAgents("");
  return data;
}

}  // namespace fleetcanary
