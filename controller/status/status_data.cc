#include "controller/status/status_data.h"

#include <map>

#include "common/units/units.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace {

using google::protobuf::util::TimeUtil;

struct Counts {
  double failures = 0;
  double trials = 0;
};

std::string ModeLabel(v1::InvokeMode mode) {
  return mode == v1::RESPONSE_STREAM ? "stream" : "buffered";
}

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
      store->QueryStreamMinutes(controller::MinuteOf(from),
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
    Counts& c1 = by_mode[ModeLabel(m.key.mode) + " (clients)"][t];
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
    const absl::Time t =
        absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(s.period_start()));
    Counts& c = by_mode[ModeLabel(s.mode()) + " (platform)"][t];
    if (s.metric() == "Errors") c.failures += s.value();
    if (s.metric() == "Invocations") c.trials += s.value();
  }
  data.rate_by_mode = ToSeries(by_mode);
  data.rate_by_size = ToSeries(by_size);
  if (scheduler != nullptr) data.agents = scheduler->ListAgents("");
  return data;
}

}  // namespace fleetcanary
