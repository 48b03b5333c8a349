#include "analysis/report/report_charts.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "analysis/intervals.h"
#include "analysis/report/report_text.h"
#include "analysis/report/svg_chart.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary::report::internal {
namespace {

constexpr const char* kModeColor[] = {"#555555", "#1f77b4", "#d62728"};
const char* ModeColor(v1::InvokeMode m) {
  return kModeColor[std::clamp(static_cast<int>(m), 0, 2)];
}

// Time axis ticks over [from, to].
std::vector<std::pair<double, std::string>> TimeTicks(absl::Time from,
                                                      absl::Time to) {
  std::vector<std::pair<double, std::string>> out;
  const double span = absl::ToDoubleSeconds(to - from);
  for (int i = 0; i <= 6; ++i) {
    const absl::Time t = from + absl::Seconds(span * i / 6);
    out.emplace_back(absl::ToUnixSeconds(t),
                     span < 3600
                         ? absl::FormatTime("%H:%M:%S", t, absl::UTCTimeZone())
                         : ShortTime(t));
  }
  return out;
}

double UnixSeconds(const google::protobuf::Timestamp& t) {
  return static_cast<double>(absl::ToUnixSeconds(TimeFromProto(t)));
}

std::vector<Band> IncidentBands(const v1::IncidentReport& r) {
  std::vector<Band> bands;
  if (!r.has_onset()) return bands;
  const double end = UnixSeconds(r.has_fix_time() ? r.fix_time() : r.to());
  bands.push_back(
      {UnixSeconds(r.onset()), end, "#fde0dc", "during the incident"});
  if (r.has_onset_interval()) {
    bands.push_back({UnixSeconds(r.onset_interval().lower()),
                     UnixSeconds(r.onset_interval().upper()), "#f4a6a0",
                     "onset interval"});
  }
  if (r.has_fix_interval()) {
    bands.push_back({UnixSeconds(r.fix_interval().lower()),
                     UnixSeconds(r.fix_interval().upper()), "#b9d7f0",
                     "fix interval"});
  }
  return bands;
}

// Minutes per chart point so a chart has at most ~120 points.
int64_t BucketMinutes(const v1::IncidentReport& r) {
  const int64_t minutes =
      absl::ToInt64Minutes(TimeFromProto(r.to()) - TimeFromProto(r.from())) + 1;
  return std::max<int64_t>(1, (minutes + 119) / 120);
}

// A chart over the report's window with the incident bands shaded.
std::string TimeChart(const v1::IncidentReport& r, const std::string& title,
                      const std::vector<Line>& lines, bool y_rate) {
  const absl::Time from = TimeFromProto(r.from()), to = TimeFromProto(r.to());
  return Chart(title, lines, IncidentBands(r), absl::ToUnixSeconds(from),
               absl::ToUnixSeconds(to), TimeTicks(from, to), y_rate);
}

// One line per mode x period: failures / trials per body size, at the
// size's position in `pos`.
Line SizeLine(const v1::IncidentReport& r, v1::InvokeMode mode,
              v1::ReportPeriod period, const std::map<uint64_t, int>& pos) {
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> n;
  for (const v1::ReportCell& c : r.cells()) {
    if (c.mode() != mode) continue;
    for (const v1::ReportCounts& p : c.periods()) {
      if (p.period() != period) continue;
      n[c.size_bytes()].first += p.failures();
      n[c.size_bytes()].second += p.trials();
    }
  }
  Line l;
  l.label = absl::StrCat(ModeName(mode), " ", PeriodName(period));
  l.color = ModeColor(mode);
  l.dashed = period == v1::REPORT_PERIOD_BEFORE;
  for (const auto& [size, c] : n) {
    if (c.second == 0) continue;
    l.points.emplace_back(pos.at(size),
                          static_cast<double>(c.first) / c.second);
    const analysis::RateInterval ci =
        analysis::WilsonInterval(c.first, c.second, 0.95);
    l.bars.emplace_back(ci.lower, ci.upper);
  }
  return l;
}

}  // namespace

std::string RateOverTimeChart(const v1::IncidentReport& r) {
  const int64_t bucket = BucketMinutes(r);
  std::vector<Line> lines;
  int dashed = 0;
  for (const v1::ReportSeries& s : r.series()) {
    std::map<int64_t, std::pair<uint64_t, uint64_t>> buckets;
    for (const auto& p : s.points()) {
      const int64_t b = p.minute().seconds() / 60 / bucket * bucket * 60;
      buckets[b].first += p.failures();
      buckets[b].second += p.trials();
    }
    Line l;
    l.label = absl::StrCat(s.region(), " ", ModeName(s.mode()));
    l.color = ModeColor(s.mode());
    l.dashed = (dashed++ / 2) % 2 == 1;
    for (const auto& [t, n] : buckets) {
      l.points.emplace_back(
          static_cast<double>(t + bucket * 30),  // The bucket's middle.
          n.second > 0 ? static_cast<double>(n.first) / n.second : 0);
    }
    lines.push_back(std::move(l));
  }
  return TimeChart(r,
                   absl::StrCat("Error rate over time (", bucket,
                                "-minute buckets); shaded: incident, onset and "
                                "fix intervals"),
                   lines, true);
}

std::string RateBySizeChart(const v1::IncidentReport& r) {
  std::set<uint64_t> sizes;
  for (const v1::ReportCell& c : r.cells()) sizes.insert(c.size_bytes());
  std::map<uint64_t, int> pos;
  std::vector<std::pair<double, std::string>> ticks;
  for (uint64_t s : sizes) {
    const int i = static_cast<int>(pos.size());
    pos[s] = i;
    ticks.emplace_back(i, FormatBytes(s));
  }
  const bool incident = r.has_onset();
  const std::vector<v1::ReportPeriod> periods =
      incident ? std::vector<v1::ReportPeriod>{v1::REPORT_PERIOD_BEFORE,
                                               v1::REPORT_PERIOD_DURING}
               : std::vector<v1::ReportPeriod>{v1::REPORT_PERIOD_WHOLE};
  std::vector<Line> lines;
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    for (v1::ReportPeriod period : periods) {
      Line l = SizeLine(r, mode, period, pos);
      if (!l.points.empty()) lines.push_back(std::move(l));
    }
  }
  return Chart(incident ? "Error rate by body size: before (dashed) vs during "
                          "(solid), 95 % Wilson intervals"
                        : "Error rate by body size, 95 % Wilson intervals",
               lines, {}, -0.5, std::max<double>(sizes.size(), 1) - 0.5, ticks,
               true);
}

std::string PlatformChart(const v1::IncidentReport& r) {
  const int64_t bucket = BucketMinutes(r);
  std::vector<Line> lines;
  for (const v1::ReportSeries& s : r.series()) {
    std::map<int64_t, std::pair<double, double>> buckets;
    bool any_platform = false;
    for (const auto& p : s.points()) {
      const int64_t b = p.minute().seconds() / 60 / bucket * bucket * 60;
      buckets[b].first += p.platform_errors();
      buckets[b].second += p.visible_failures();
      any_platform |= p.platform_invocations() > 0 || p.platform_errors() > 0;
    }
    if (!any_platform) continue;
    Line platform, client;
    platform.label =
        absl::StrCat(s.region(), " ", ModeName(s.mode()), " platform Errors");
    client.label =
        absl::StrCat(s.region(), " ", ModeName(s.mode()), " client-visible");
    platform.color = client.color = ModeColor(s.mode());
    client.dashed = true;
    for (const auto& [t, v] : buckets) {
      platform.points.emplace_back(t + bucket * 30, v.first);
      client.points.emplace_back(t + bucket * 30, v.second);
    }
    lines.push_back(std::move(platform));
    lines.push_back(std::move(client));
  }
  if (lines.empty()) return "<p>No platform metrics in the window.</p>";
  return TimeChart(r,
                   absl::StrCat("Platform Errors vs failures clients saw (per ",
                                bucket, " min); the gap is phantom errors"),
                   lines, false);
}

}  // namespace fleetcanary::report::internal
