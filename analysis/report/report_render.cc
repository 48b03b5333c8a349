#include "analysis/report/report_render.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "analysis/intervals.h"
#include "analysis/report/html.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary::report {
namespace {

using google::protobuf::util::TimeUtil;

std::string TimeText(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", TimeFromProto(t),
                          absl::UTCTimeZone());
}

std::string ShortTime(absl::Time t) {
  return absl::FormatTime("%H:%M", t, absl::UTCTimeZone());
}

std::string IntervalText(const v1::TimeInterval& i) {
  if (!i.has_lower() && !i.has_upper()) return "";
  return absl::StrFormat(
      "[%s, %s]%s", TimeText(i.lower()), TimeText(i.upper()),
      i.confidence() > 0 ? absl::StrFormat(" at %g %%", i.confidence() * 100)
                         : "");
}

std::string ModeName(v1::InvokeMode m) {
  return InvokeModeName(m, "all modes");
}

std::string StateName(v1::VerdictState s) {
  return s == v1::VERDICT_STATE_UNSPECIFIED ? "-" : v1::VerdictState_Name(s);
}

std::string PeriodName(v1::ReportPeriod p) {
  switch (p) {
    case v1::REPORT_PERIOD_WHOLE:
      return "whole window";
    case v1::REPORT_PERIOD_BEFORE:
      return "before";
    case v1::REPORT_PERIOD_DURING:
      return "during";
    case v1::REPORT_PERIOD_AFTER:
      return "after";
    default:
      return "?";
  }
}

std::string KeyText(const v1::StreamKey& k) {
  std::vector<std::string> parts;
  parts.push_back(k.region().empty() ? "all regions" : k.region());
  if (k.mode() != v1::INVOKE_MODE_UNSPECIFIED)
    parts.push_back(ModeName(k.mode()));
  if (!k.size_class().empty()) parts.push_back(k.size_class());
  return absl::StrJoin(parts, " / ");
}

std::string DurationText(const google::protobuf::Duration& d, uint64_t n) {
  if (n == 0) return "-";
  const double ms = TimeUtil::DurationToNanoseconds(d) / 1e6;
  return ms >= 1000 ? absl::StrFormat("%.2f s", ms / 1000)
                    : absl::StrFormat("%.1f ms", ms);
}

std::string RateWithInterval(const v1::ReportCounts& c) {
  if (c.trials() == 0) return "-";
  return absl::StrFormat("%s [%s, %s]", FormatRate(c.error_rate()),
                         FormatRate(c.error_rate_interval().lower()),
                         FormatRate(c.error_rate_interval().upper()));
}

std::string ClassesText(const v1::ReportCounts& c) {
  std::vector<std::string> parts;
  std::map<std::string, uint64_t> sorted(c.by_class().begin(),
                                         c.by_class().end());
  for (const auto& [name, n] : sorted) {
    if (name == "OK") continue;
    parts.push_back(absl::StrCat(name, " ", n));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

std::string EvidenceText(const v1::Evidence& e) {
  if (!e.summary().empty()) return e.summary();
  return absl::StrFormat("%d/%d failed (%s)", e.failures(), e.trials(),
                         FormatRate(e.rate()));
}

// Which periods to show: WHOLE alone when there is no onset.
std::vector<v1::ReportPeriod> ShownPeriods(const v1::IncidentReport& r) {
  if (!r.has_onset()) return {v1::REPORT_PERIOD_WHOLE};
  std::vector<v1::ReportPeriod> out = {v1::REPORT_PERIOD_BEFORE,
                                       v1::REPORT_PERIOD_DURING};
  if (r.has_fix_time()) out.push_back(v1::REPORT_PERIOD_AFTER);
  return out;
}

// ---- Markdown -------------------------------------------------------------

std::string MdCell(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"|", "\\|"}, {"\n", " "}});
}

std::string SummaryLines(const v1::IncidentReport& r, bool markdown) {
  std::string out;
  const char* b = markdown ? "**" : "";
  if (r.has_onset()) {
    absl::StrAppend(&out, "- ", b, "Onset", b, ": ", TimeText(r.onset()));
    const std::string i = IntervalText(r.onset_interval());
    if (!i.empty()) absl::StrAppend(&out, ", interval ", i);
    absl::StrAppend(&out, "\n");
  } else {
    absl::StrAppend(&out, "- ", b, "Onset", b,
                    ": no verdict reached REGRESSION in the window\n");
  }
  if (r.has_fix_time()) {
    absl::StrAppend(&out, "- ", b, "Fix", b, ": ", TimeText(r.fix_time()));
    const std::string i = IntervalText(r.fix_interval());
    if (!i.empty()) absl::StrAppend(&out, ", interval ", i);
    absl::StrAppend(&out, " (confirmed for every regression)\n");
  } else if (r.has_onset()) {
    absl::StrAppend(&out, "- ", b, "Fix", b, ": not confirmed\n");
  }
  absl::StrAppend(&out, "- ", b, "Probes", b, ": ", r.probes(), ", failures ",
                  r.failures(), ", regions ", absl::StrJoin(r.regions(), ", "),
                  "\n");
  return out;
}

}  // namespace

std::string FormatRate(double rate) {
  if (rate == 0) return "0 %";
  return absl::StrFormat("%.3g %%", rate * 100);
}

std::string RenderReportJson(const v1::IncidentReport& report) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(report, &text, options);
  return text;
}

std::string RenderReportMarkdown(const v1::IncidentReport& r) {
  std::string out =
      absl::StrCat("# Incident evidence report: ", r.target(), "\n\n");
  absl::StrAppend(&out, "Window ", TimeText(r.from()), " to ", TimeText(r.to()),
                  "; source: ", r.source(), "; generated ",
                  TimeText(r.generated_at()), ".\n\n## Summary\n\n",
                  SummaryLines(r, true), "\n");
  if (r.findings_size() > 0) {
    absl::StrAppend(&out,
                    "| verdict | where | first seen | worst | current | "
                    "estimated change (interval) | evidence |\n"
                    "|---|---|---|---|---|---|---|\n");
    for (const v1::ReportFinding& f : r.findings()) {
      absl::StrAppend(&out, "| ", v1::VerdictKind_Name(f.kind()), " | ",
                      KeyText(f.key()), " | ", TimeText(f.first_seen()), " | ",
                      StateName(f.worst_state()), " | ",
                      StateName(f.current_state()), " | ",
                      f.has_change_time() ? TimeText(f.change_time()) : "-",
                      " ", IntervalText(f.change_interval()), " | ",
                      MdCell(EvidenceText(f.evidence())), " |\n");
    }
    bool any_fix = false;
    for (const v1::ReportFinding& f : r.findings()) any_fix |= f.has_fix();
    if (any_fix) {
      absl::StrAppend(&out,
                      "\n### Fix certificates\n\n| verdict | where | fix time "
                      "(interval) | confidence | probes since start | "
                      "failures | proven bound | pre-incident baseline |\n"
                      "|---|---|---|---|---|---|---|---|\n");
      for (const v1::ReportFinding& f : r.findings()) {
        if (!f.has_fix()) continue;
        const v1::FixCertificate& c = f.fix();
        absl::StrAppend(
            &out, "| ", v1::VerdictKind_Name(f.kind()), " | ", KeyText(f.key()),
            " | ", c.has_change_time() ? TimeText(c.change_time()) : "-", " ",
            IntervalText(c.change_interval()), " | ",
            absl::StrFormat("%g %%", c.confidence() * 100), " | ", c.probes(),
            " | ", c.failures(), " | < ", FormatRate(c.proven_upper_bound()),
            " | ", FormatRate(c.baseline_rate()), " |\n");
      }
    }
  }
  absl::StrAppend(&out,
                  "\n## Per region x mode x size\n\n| region | mode | size | "
                  "period | probes | failures | error rate [95 % CI] | TTFB "
                  "p50 | TTFB p99 | failure classes |\n"
                  "|---|---|---|---|---|---|---|---|---|---|\n");
  const std::vector<v1::ReportPeriod> shown = ShownPeriods(r);
  for (const v1::ReportCell& c : r.cells()) {
    for (const v1::ReportCounts& p : c.periods()) {
      if (std::find(shown.begin(), shown.end(), p.period()) == shown.end()) {
        continue;
      }
      absl::StrAppend(&out, "| ", c.region(), " | ", ModeName(c.mode()), " | ",
                      c.size_class(), " | ", PeriodName(p.period()), " | ",
                      p.probes(), " | ", p.failures(), " | ",
                      RateWithInterval(p), " | ",
                      DurationText(p.ttfb_p50(), p.ttfb_count()), " | ",
                      DurationText(p.ttfb_p99(), p.ttfb_count()), " | ",
                      ClassesText(p), " |\n");
    }
  }
  absl::StrAppend(&out,
                  "\n## Platform vs client\n\n| region | mode | period | "
                  "platform errors | invocations | client-visible failures | "
                  "phantom errors | phantom rate |\n"
                  "|---|---|---|---|---|---|---|---|\n");
  for (const v1::ReportPlatform& p : r.platform()) {
    for (const v1::ReportPlatformCounts& c : p.periods()) {
      if (std::find(shown.begin(), shown.end(), c.period()) == shown.end()) {
        continue;
      }
      absl::StrAppend(&out, "| ", p.region(), " | ", ModeName(p.mode()), " | ",
                      PeriodName(c.period()), " | ", c.platform_errors(), " | ",
                      c.platform_invocations(), " | ",
                      c.client_visible_failures(), " | ", c.phantom_errors(),
                      " | ", FormatRate(c.phantom_rate()), " |\n");
    }
  }
  if (r.platform_size() == 0) {
    absl::StrAppend(&out, "\nNo platform metrics in the window.\n");
  }
  auto samples =
      [&](const char* title,
          const google::protobuf::RepeatedPtrField<v1::SampleProbe>& list) {
        absl::StrAppend(&out, "\n## ", title, "\n\n");
        if (list.empty()) {
          absl::StrAppend(&out, "None.\n");
          return;
        }
        absl::StrAppend(&out,
                        "| x-amzn-RequestId | start | region | mode | size | "
                        "class | status | detail |\n"
                        "|---|---|---|---|---|---|---|---|\n");
        for (const v1::SampleProbe& s : list) {
          absl::StrAppend(
              &out, "| `",
              s.platform_request_id().empty() ? "(none)"
                                              : s.platform_request_id(),
              "` | ", TimeText(s.start_time()), " | ", s.region(), " | ",
              ModeName(s.mode()), " | ", FormatBytes(s.size_bytes()), " | ",
              v1::OutcomeClass_Name(s.outcome_class()), " | ", s.status(),
              " | ", MdCell(s.detail()), " |\n");
        }
      };
  samples("Failing probes (sample request ids)", r.failing_samples());
  samples("Probes in periods with phantom errors", r.phantom_samples());
  absl::StrAppend(&out, "\n## Reproduction\n\n```\n",
                  absl::StrJoin(r.reproduction().commands(), "\n"),
                  "\n```\n\nRequest: ", r.reproduction().request(),
                  "\n\nExpected: ", r.reproduction().expected_body(),
                  "\n\n## Methods\n\n", r.methods(), "\n");
  return out;
}

// ---- HTML -----------------------------------------------------------------

namespace {

struct Line {
  std::string label;
  std::string color;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;
  // Optional error bars, parallel to points: (lower, upper).
  std::vector<std::pair<double, double>> bars;
};
struct Band {
  double x0, x1;
  std::string fill;
  std::string label;
};

constexpr const char* kModeColor[] = {"#555555", "#1f77b4", "#d62728"};
const char* ModeColor(v1::InvokeMode m) {
  return kModeColor[std::clamp(static_cast<int>(m), 0, 2)];
}

// A line chart; x ticks as (position, label).
std::string Chart(const std::string& title, const std::vector<Line>& lines,
                  const std::vector<Band>& bands, double x_min, double x_max,
                  const std::vector<std::pair<double, std::string>>& x_ticks,
                  bool y_rate) {
  const int w = 760, left = 64, right = 16, top = 28;
  // Legend entries wrap into rows under the x axis.
  std::vector<std::pair<int, int>> legend_at;  // (x, row) per line.
  int legend_x = left, legend_row = 0;
  for (const Line& l : lines) {
    const int width = 30 + 6 * static_cast<int>(l.label.size());
    if (legend_x > left && legend_x + width > w - right) {
      legend_x = left;
      ++legend_row;
    }
    legend_at.emplace_back(legend_x, legend_row);
    legend_x += width;
  }
  const int bottom = 44 + 14 * (legend_row + 1);
  const int h = 190 + bottom;
  double y_max = y_rate ? 0.001 : 1;
  for (const Line& l : lines) {
    for (const auto& p : l.points) y_max = std::max(y_max, p.second);
    for (const auto& b : l.bars) y_max = std::max(y_max, b.second);
  }
  y_max *= 1.1;
  if (x_max <= x_min) x_max = x_min + 1;
  auto X = [&](double x) {
    return left + (x - x_min) / (x_max - x_min) * (w - left - right);
  };
  auto Y = [&](double y) { return top + (1 - y / y_max) * (h - top - bottom); };
  auto LegendY = [&](int row) { return h - bottom + 32 + 14 * row; };
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
      "width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"%s\">"
      "<text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s"
      "</text>",
      w, h, w, h, HtmlEscape(title), left, HtmlEscape(title));
  for (const Band& b : bands) {
    const double x0 = std::max<double>(X(b.x0), left);
    const double x1 = std::min<double>(X(b.x1), w - right);
    if (x1 <= x0) continue;
    absl::StrAppendFormat(&s,
                          "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                          "height=\"%d\" fill=\"%s\"><title>%s</title></rect>",
                          x0, top, x1 - x0, h - top - bottom, b.fill,
                          HtmlEscape(b.label));
  }
  for (int i = 0; i <= 4; ++i) {
    const double y = y_max * i / 4;
    absl::StrAppendFormat(
        &s,
        "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
        "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%s"
        "</text>",
        left, Y(y), w - right, Y(y), left - 4, Y(y) + 3,
        y_rate ? FormatRate(y) : absl::StrFormat("%.3g", y));
  }
  for (size_t i = 0; i < x_ticks.size(); ++i) {
    // The last label ends at its tick so it stays inside the chart.
    absl::StrAppendFormat(
        &s,
        "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" "
        "text-anchor=\"%s\">%s</text>",
        X(x_ticks[i].first), h - bottom + 14,
        i + 1 == x_ticks.size() && x_ticks.size() > 1 ? "end" : "middle",
        HtmlEscape(x_ticks[i].second));
  }
  for (size_t li = 0; li < lines.size(); ++li) {
    const Line& l = lines[li];
    std::string path;
    for (const auto& [x, y] : l.points) {
      absl::StrAppendFormat(&path, "%s%.1f,%.1f ", path.empty() ? "M" : "L",
                            X(x), Y(y));
    }
    if (!path.empty()) {
      absl::StrAppendFormat(
          &s,
          "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s/>",
          path, l.color, l.dashed ? " stroke-dasharray=\"5,3\"" : "");
    }
    for (size_t i = 0; i < l.bars.size() && i < l.points.size(); ++i) {
      const double x = X(l.points[i].first);
      absl::StrAppendFormat(&s,
                            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                            "y2=\"%.1f\" stroke=\"%s\"/>",
                            x, Y(l.bars[i].first), x, Y(l.bars[i].second),
                            l.color);
    }
    for (const auto& [x, y] : l.points) {
      if (l.points.size() > 40) break;
      absl::StrAppendFormat(&s,
                            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" "
                            "fill=\"%s\"/>",
                            X(x), Y(y), l.color);
    }
    absl::StrAppendFormat(
        &s,
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
        "stroke-width=\"2\"%s/><text x=\"%d\" y=\"%d\" font-size=\"10\">%s"
        "</text>",
        legend_at[li].first, LegendY(legend_at[li].second),
        legend_at[li].first + 18, LegendY(legend_at[li].second), l.color,
        l.dashed ? " stroke-dasharray=\"5,3\"" : "", legend_at[li].first + 22,
        LegendY(legend_at[li].second) + 4, HtmlEscape(l.label));
  }
  absl::StrAppend(&s, "</svg>");
  return s;
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

std::vector<Band> IncidentBands(const v1::IncidentReport& r) {
  std::vector<Band> bands;
  if (!r.has_onset()) return bands;
  const double end = static_cast<double>(absl::ToUnixSeconds(
      TimeFromProto(r.has_fix_time() ? r.fix_time() : r.to())));
  bands.push_back(
      {static_cast<double>(absl::ToUnixSeconds(TimeFromProto(r.onset()))), end,
       "#fde0dc", "during the incident"});
  if (r.has_onset_interval()) {
    bands.push_back({static_cast<double>(absl::ToUnixSeconds(
                         TimeFromProto(r.onset_interval().lower()))),
                     static_cast<double>(absl::ToUnixSeconds(
                         TimeFromProto(r.onset_interval().upper()))),
                     "#f4a6a0", "onset interval"});
  }
  if (r.has_fix_interval()) {
    bands.push_back({static_cast<double>(absl::ToUnixSeconds(
                         TimeFromProto(r.fix_interval().lower()))),
                     static_cast<double>(absl::ToUnixSeconds(
                         TimeFromProto(r.fix_interval().upper()))),
                     "#b9d7f0", "fix interval"});
  }
  return bands;
}

// Minutes per chart point so a chart has at most ~120 points.
int64_t BucketMinutes(const v1::IncidentReport& r) {
  const int64_t minutes =
      absl::ToInt64Minutes(TimeFromProto(r.to()) - TimeFromProto(r.from())) + 1;
  return std::max<int64_t>(1, (minutes + 119) / 120);
}

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
  const absl::Time from = TimeFromProto(r.from()), to = TimeFromProto(r.to());
  return Chart(absl::StrCat("Error rate over time (", bucket,
                            "-minute buckets); shaded: incident, onset and "
                            "fix intervals"),
               lines, IncidentBands(r), absl::ToUnixSeconds(from),
               absl::ToUnixSeconds(to), TimeTicks(from, to), true);
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
  std::vector<Line> lines;
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    for (v1::ReportPeriod period :
         incident ? std::vector<v1::ReportPeriod>{v1::REPORT_PERIOD_BEFORE,
                                                  v1::REPORT_PERIOD_DURING}
                  : std::vector<v1::ReportPeriod>{v1::REPORT_PERIOD_WHOLE}) {
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
        l.points.emplace_back(pos[size],
                              static_cast<double>(c.first) / c.second);
        const analysis::RateInterval ci =
            analysis::WilsonInterval(c.first, c.second, 0.95);
        l.bars.emplace_back(ci.lower, ci.upper);
      }
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
  const absl::Time from = TimeFromProto(r.from()), to = TimeFromProto(r.to());
  return Chart(absl::StrCat("Platform Errors vs failures clients saw (per ",
                            bucket, " min); the gap is phantom errors"),
               lines, IncidentBands(r), absl::ToUnixSeconds(from),
               absl::ToUnixSeconds(to), TimeTicks(from, to), false);
}

std::string StateBadge(v1::VerdictState s) {
  return absl::StrFormat(
      "<span class=\"state\" style=\"background:%s\">%s</span>",
      VerdictStateColor(s), StateName(s));
}

// Markdown-ish tables again, as HTML.
std::string HtmlTable(const std::vector<std::string>& head,
                      const std::vector<std::vector<std::string>>& rows,
                      const std::vector<std::string>& row_ids = {}) {
  std::string s = "<table><thead><tr>";
  for (const std::string& h : head) absl::StrAppend(&s, "<th>", h, "</th>");
  absl::StrAppend(&s, "</tr></thead><tbody>");
  for (size_t i = 0; i < rows.size(); ++i) {
    absl::StrAppend(&s, i < row_ids.size() && !row_ids[i].empty()
                            ? absl::StrCat("<tr id=\"", row_ids[i], "\">")
                            : "<tr>");
    for (const std::string& c : rows[i])
      absl::StrAppend(&s, "<td>", c, "</td>");
    absl::StrAppend(&s, "</tr>");
  }
  absl::StrAppend(&s, "</tbody></table>");
  return s;
}

}  // namespace

std::string RenderReportHtml(const v1::IncidentReport& r) {
  const auto E = [](absl::string_view s) { return HtmlEscape(s); };
  std::string out = absl::StrCat(
      "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>Incident evidence report: ",
      E(r.target()),
      "</title><style>"
      "body{font:13px/1.45 system-ui,sans-serif;margin:24px;color:#222}"
      "h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px "
      "solid #ccc}table{border-collapse:collapse;margin:8px 0;width:100%}"
      "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;"
      "vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}"
      ".state{color:#fff;padding:1px 5px;border-radius:3px;font-weight:bold}"
      "code,pre{font-family:ui-monospace,monospace;font-size:12px}"
      "pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;"
      "word-break:break-all}svg{max-width:100%;height:auto;display:block;"
      "margin:8px 0}.meta{color:#555}"
      "@media print{body{margin:0;font-size:10px}h2{break-after:avoid}"
      "table,svg,pre{break-inside:avoid}tr{break-inside:avoid}"
      "a{color:inherit;text-decoration:none}}"
      "@page{size:A4;margin:14mm}"
      "</style></head><body>");
  absl::StrAppend(&out, "<h1>Incident evidence report: ", E(r.target()),
                  "</h1><p class=\"meta\">Window ", E(TimeText(r.from())),
                  " to ", E(TimeText(r.to())), "; source: ", E(r.source()),
                  "; generated ", E(TimeText(r.generated_at())), ".</p>");
  absl::StrAppend(&out, "<h2>Summary</h2><ul>");
  for (absl::string_view line :
       absl::StrSplit(SummaryLines(r, false), '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "<li>", E(line.substr(2)), "</li>");
  }
  absl::StrAppend(&out, "</ul>");
  if (r.findings_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const v1::ReportFinding& f : r.findings()) {
      rows.push_back({E(v1::VerdictKind_Name(f.kind())), E(KeyText(f.key())),
                      E(TimeText(f.first_seen())), StateBadge(f.worst_state()),
                      StateBadge(f.current_state()),
                      f.has_change_time() ? E(TimeText(f.change_time()) + " " +
                                              IntervalText(f.change_interval()))
                                          : "-",
                      E(EvidenceText(f.evidence()))});
    }
    absl::StrAppend(
        &out, HtmlTable({"verdict", "where", "first seen", "worst", "current",
                         "estimated change (interval)", "evidence"},
                        rows));
    rows.clear();
    for (const v1::ReportFinding& f : r.findings()) {
      if (!f.has_fix()) continue;
      const v1::FixCertificate& c = f.fix();
      rows.push_back({E(v1::VerdictKind_Name(f.kind())), E(KeyText(f.key())),
                      c.has_change_time() ? E(TimeText(c.change_time()) + " " +
                                              IntervalText(c.change_interval()))
                                          : "-",
                      absl::StrFormat("%g %%", c.confidence() * 100),
                      absl::StrCat(c.probes()), absl::StrCat(c.failures()),
                      E("< " + FormatRate(c.proven_upper_bound())),
                      E(FormatRate(c.baseline_rate()))});
    }
    if (!rows.empty()) {
      absl::StrAppend(&out, "<h3>Fix certificates</h3>",
                      HtmlTable({"verdict", "where", "fix time (interval)",
                                 "confidence", "probes since start", "failures",
                                 "proven bound", "pre-incident baseline"},
                                rows));
    }
  }
  absl::StrAppend(&out, "<h2>Charts</h2>", RateOverTimeChart(r),
                  RateBySizeChart(r), PlatformChart(r));

  absl::StrAppend(&out, "<h2>Per region &times; mode &times; size</h2>");
  const std::vector<v1::ReportPeriod> shown = ShownPeriods(r);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> ids;
  for (const v1::ReportCell& c : r.cells()) {
    bool first = true;
    for (const v1::ReportCounts& p : c.periods()) {
      if (std::find(shown.begin(), shown.end(), p.period()) == shown.end()) {
        continue;
      }
      ids.push_back(
          first ? ReportCellAnchor(c.region(), c.mode(), c.size_bytes()) : "");
      first = false;
      rows.push_back({E(c.region()), E(ModeName(c.mode())), E(c.size_class()),
                      StateBadge(c.state()), E(PeriodName(p.period())),
                      absl::StrCat(p.probes()), absl::StrCat(p.failures()),
                      E(RateWithInterval(p)),
                      E(DurationText(p.ttfb_p50(), p.ttfb_count())),
                      E(DurationText(p.ttfb_p99(), p.ttfb_count())),
                      E(ClassesText(p))});
    }
  }
  absl::StrAppend(
      &out, HtmlTable({"region", "mode", "size", "verdict", "period", "probes",
                       "failures", "error rate [95 % CI]", "TTFB p50",
                       "TTFB p99", "failure classes"},
                      rows, ids));
  absl::StrAppend(&out, "<h2>Platform vs client</h2>");
  rows.clear();
  for (const v1::ReportPlatform& p : r.platform()) {
    for (const v1::ReportPlatformCounts& c : p.periods()) {
      if (std::find(shown.begin(), shown.end(), c.period()) == shown.end()) {
        continue;
      }
      rows.push_back({E(p.region()), E(ModeName(p.mode())),
                      E(PeriodName(c.period())),
                      absl::StrFormat("%g", c.platform_errors()),
                      absl::StrFormat("%g", c.platform_invocations()),
                      absl::StrCat(c.client_visible_failures()),
                      absl::StrFormat("%g", c.phantom_errors()),
                      E(FormatRate(c.phantom_rate()))});
    }
  }
  absl::StrAppend(
      &out, rows.empty()
                ? "<p>No platform metrics in the window.</p>"
                : HtmlTable({"region", "mode", "period", "platform errors",
                             "invocations", "client-visible failures",
                             "phantom errors", "phantom rate"},
                            rows));
  auto samples =
      [&](const char* title,
          const google::protobuf::RepeatedPtrField<v1::SampleProbe>& list) {
        absl::StrAppend(&out, "<h2>", title, "</h2>");
        if (list.empty()) {
          absl::StrAppend(&out, "<p>None.</p>");
          return;
        }
        std::vector<std::vector<std::string>> rows;
        for (const v1::SampleProbe& s : list) {
          rows.push_back({absl::StrCat("<code>",
                                       E(s.platform_request_id().empty()
                                             ? "(none)"
                                             : s.platform_request_id()),
                                       "</code>"),
                          E(TimeText(s.start_time())), E(s.region()),
                          E(ModeName(s.mode())), E(FormatBytes(s.size_bytes())),
                          E(v1::OutcomeClass_Name(s.outcome_class())),
                          absl::StrCat(s.status()), E(s.detail())});
        }
        absl::StrAppend(
            &out, HtmlTable({"x-amzn-RequestId", "start", "region", "mode",
                             "size", "class", "status", "detail"},
                            rows));
      };
  samples("Failing probes (sample request ids)", r.failing_samples());
  samples("Probes in periods with phantom errors", r.phantom_samples());
  absl::StrAppend(&out, "<h2>Reproduction</h2><pre>",
                  E(absl::StrJoin(r.reproduction().commands(), "\n")),
                  "</pre><p><b>Request:</b> ", E(r.reproduction().request()),
                  "</p><p><b>Expected:</b> ",
                  E(r.reproduction().expected_body()), "</p>");
  absl::StrAppend(&out, "<h2>Methods</h2><p>", E(r.methods()),
                  "</p></body></html>\n");
  return out;
}

}  // namespace fleetcanary::report
