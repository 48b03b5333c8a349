#include "controller/web/status_page.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string KeyLabel(const v1::Verdict& v) {
  std::vector<std::string> parts = {v1::VerdictKind_Name(v.kind())};
  for (const std::string& p :
       {v.key().region(), v.key().target(), InvokeModeName(v.key().mode(), ""),
        v.key().size_class()}) {
    if (!p.empty()) parts.push_back(p);
  }
  return absl::StrJoin(parts, " ");
}

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", t, absl::UTCTimeZone());
}

std::string EvidenceText(const v1::Evidence& e) {
  std::vector<std::string> parts;
  if (e.trials() > 0) {
    parts.push_back(absl::StrCat(e.failures(), "/", e.trials(), " failed"));
  }
  if (e.control_trials() > 0) {
    parts.push_back(absl::StrCat("control ", e.control_failures(), "/",
                                 e.control_trials()));
  }
  if (!e.statistic_name().empty()) {
    parts.push_back(absl::StrFormat("%s=%.4g (threshold %.4g)",
                                    e.statistic_name(), e.statistic(),
                                    e.threshold()));
  }
  if (e.p_value() > 0) parts.push_back(absl::StrFormat("p=%.3g", e.p_value()));
  if (e.likelihood_ratio() > 0) {
    parts.push_back(absl::StrFormat("LR=%.4g", e.likelihood_ratio()));
  }
  if (e.rate_ratio() > 0) {
    parts.push_back(absl::StrFormat("RR=%.3g [%.3g, %.3g]", e.rate_ratio(),
                                    e.rate_ratio_interval().lower(),
                                    e.rate_ratio_interval().upper()));
  }
  if (e.platform_errors() > 0 || e.platform_invocations() > 0) {
    parts.push_back(absl::StrFormat(
        "platform errors %.0f / invocations %.0f, "
        "client failures %d",
        e.platform_errors(), e.platform_invocations(), e.client_failures()));
  }
  if (e.has_change_time() && e.change_time().seconds() > 0) {
    parts.push_back(
        absl::StrCat("change at ", FormatUtc(TimeFromProto(e.change_time()))));
  }
  if (e.proven_upper_bound() > 0) {
    parts.push_back(
        absl::StrFormat("rate < %.3g proven", e.proven_upper_bound()));
  }
  if (!e.summary().empty()) parts.push_back(e.summary());
  return absl::StrJoin(parts, "; ");
}

}  // namespace

std::string RenderRateChartSvg(const std::string& title,
                               const std::vector<RateSeries>& series, int width,
                               int height, double min_y_max) {
  const int left = 64, right = 130, top = 28, bottom = 30;
  const int plot_w = std::max(10, width - left - right);
  const int plot_h = std::max(10, height - top - bottom);
  absl::Time t0 = absl::InfiniteFuture(), t1 = absl::InfinitePast();
  double y_max = min_y_max;
  size_t points = 0;
  for (const RateSeries& s : series) {
    for (const auto& [t, v] : s.points) {
      t0 = std::min(t0, t);
      t1 = std::max(t1, t);
      y_max = std::max(y_max, v);
      ++points;
    }
  }
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" "
      "data-series=\"%d\" data-points=\"%d\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\">"
      "<title>%s</title>"
      "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"bold\">%s</text>"
      "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
      "stroke=\"#ccc\"/>",
      series.size(), points, width, height, width, height, HtmlEscape(title),
      left, HtmlEscape(title), left, top, plot_w, plot_h);
  // Y grid and labels (rates as percentages).
  for (int i = 0; i <= 4; ++i) {
    double v = y_max * i / 4;
    int y = top + plot_h - static_cast<int>(plot_h * i / 4.0);
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e5e5e5\"/>"
        "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">%.3g%%"
        "</text>",
        left, y, left + plot_w, y, left - 4, y + 3, v * 100);
  }
  if (points == 0) {
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%d\" font-size=\"12\" "
                          "fill=\"#888\">no probes yet</text></svg>",
                          left + 10, top + plot_h / 2);
    return svg;
  }
  double span = std::max(1e-9, absl::ToDoubleSeconds(t1 - t0));
  absl::StrAppendFormat(
      &svg,
      "<text x=\"%d\" y=\"%d\" font-size=\"10\">%s</text>"
      "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">%s</text>",
      left, height - 8, FormatUtc(t0), left + plot_w, height - 8,
      FormatUtc(t1));
  for (size_t i = 0; i < series.size(); ++i) {
    const RateSeries& s = series[i];
    const char* color = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
    std::vector<std::string> coords;
    for (const auto& [t, v] : s.points) {
      double x = left + plot_w * absl::ToDoubleSeconds(t - t0) / span;
      double y = top + plot_h - plot_h * v / y_max;
      coords.push_back(absl::StrFormat("%.1f,%.1f", x, y));
    }
    absl::StrAppendFormat(
        &svg,
        "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
        "stroke-width=\"1.5\" points=\"%s\"/>"
        "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
        "<text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>",
        color, absl::StrJoin(coords, " "), left + plot_w + 10,
        top + 4 + 16 * static_cast<int>(i), color, left + plot_w + 24,
        top + 13 + 16 * static_cast<int>(i), HtmlEscape(s.label));
  }
  svg += "</svg>";
  return svg;
}

std::string RenderTimelineSvg(const std::vector<v1::Verdict>& transitions,
                              absl::Time end, int width) {
  // Group transitions by key, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const v1::Verdict*>> rows;
  absl::Time t0 = end;
  for (const v1::Verdict& v : transitions) {
    std::string key = KeyLabel(v);
    if (rows.find(key) == rows.end()) order.push_back(key);
    rows[key].push_back(&v);
    t0 = std::min(t0, TimeFromProto(v.since()));
  }
  const int left = 260, right = 20, row_h = 20, top = 28;
  const int plot_w = std::max(10, width - left - right);
  const int height =
      top + row_h * static_cast<int>(std::max<size_t>(1, order.size())) + 24;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" "
      "data-rows=\"%d\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\"><title>verdict timeline</title>"
      "<text x=\"4\" y=\"18\" font-size=\"14\" font-weight=\"bold\">"
      "Verdict timeline</text>",
      order.size(), width, height, width, height);
  if (order.empty()) {
    absl::StrAppendFormat(
        &svg,
        "<text x=\"%d\" y=\"%d\" font-size=\"12\" "
        "fill=\"#888\">no verdict transitions yet</text></svg>",
        left, top + 14);
    return svg;
  }
  double span = std::max(1e-9, absl::ToDoubleSeconds(end - t0));
  auto x_of = [&](absl::Time t) {
    return left + plot_w * absl::ToDoubleSeconds(t - t0) / span;
  };
  for (size_t r = 0; r < order.size(); ++r) {
    int y = top + row_h * static_cast<int>(r);
    absl::StrAppendFormat(&svg,
                          "<text x=\"4\" y=\"%d\" font-size=\"11\">%s</text>",
                          y + 14, HtmlEscape(order[r]));
    const auto& list = rows[order[r]];
    for (size_t i = 0; i < list.size(); ++i) {
      absl::Time from = TimeFromProto(list[i]->since());
      absl::Time to =
          i + 1 < list.size() ? TimeFromProto(list[i + 1]->since()) : end;
      double x0 = x_of(from), x1 = std::max(x0 + 1, x_of(to));
      absl::StrAppendFormat(
          &svg,
          "<rect class=\"band\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
          "height=\"%d\" fill=\"%s\"><title>%s from %s</title></rect>",
          x0, y + 3, x1 - x0, row_h - 6, VerdictStateColor(list[i]->state()),
          v1::VerdictState_Name(list[i]->state()), FormatUtc(from));
    }
  }
  absl::StrAppendFormat(
      &svg,
      "<text x=\"%d\" y=\"%d\" font-size=\"10\">%s</text>"
      "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">%s</text>"
      "</svg>",
      left, height - 6, FormatUtc(t0), left + plot_w, height - 6,
      FormatUtc(end));
  return svg;
}

// The region x mode x size matrix: one table per target, a row per region x
// mode, a column per size; colour = verdict state, text = client error rate
// and phantom rate, each cell a link to its row of the incident report.
std::string RenderMatrix(const StatusPageData& data) {
  std::string html = "<h2>Region &times; mode &times; size</h2>";
  if (!data.incident_targets.empty()) {
    absl::StrAppend(&html, "<p class=\"incident\">Current incident: ");
    for (size_t i = 0; i < data.incident_targets.size(); ++i) {
      const std::string& t = data.incident_targets[i];
      absl::StrAppend(
          &html, i > 0 ? ", " : "",
          "<a class=\"report-link\" href=\"/report?target=", HtmlEscape(t),
          "\">evidence report for ", HtmlEscape(t), "</a>");
    }
    absl::StrAppend(&html, "</p>");
  }
  if (data.matrix.empty()) {
    return absl::StrCat(html, "<p>No scheduled probes in the window.</p>");
  }
  std::map<std::string, std::vector<const MatrixCell*>> by_target;
  for (const MatrixCell& c : data.matrix) by_target[c.target].push_back(&c);
  for (const auto& [target, cells] : by_target) {
    std::vector<uint64_t> sizes;
    for (const MatrixCell* c : cells) sizes.push_back(c->size_bytes);
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    std::map<std::pair<std::string, int>, std::map<uint64_t, const MatrixCell*>>
        rows;
    for (const MatrixCell* c : cells) {
      rows[{c->region, c->mode}][c->size_bytes] = c;
    }
    absl::StrAppend(&html, "<table class=\"matrix\"><thead><tr><th>",
                    HtmlEscape(target), "</th>");
    for (uint64_t s : sizes) {
      absl::StrAppend(&html, "<th>", FormatBytes(s), "</th>");
    }
    absl::StrAppend(&html, "</tr></thead><tbody>");
    for (const auto& [row, by_size] : rows) {
      absl::StrAppend(
          &html, "<tr><th>", HtmlEscape(row.first), " ",
          InvokeModeName(static_cast<v1::InvokeMode>(row.second), ""), "</th>");
      for (uint64_t s : sizes) {
        auto it = by_size.find(s);
        if (it == by_size.end()) {
          absl::StrAppend(&html, "<td></td>");
          continue;
        }
        const MatrixCell& c = *it->second;
        const std::string rate =
            c.trials > 0
                ? absl::StrFormat("%.3g %%", 100.0 * c.failures / c.trials)
                : "-";
        const std::string phantom =
            c.phantom_rate >= 0
                ? absl::StrFormat("%.3g %%", 100.0 * c.phantom_rate)
                : "-";
        absl::StrAppendFormat(
            &html,
            "<td class=\"cell\" style=\"background:%s\" title=\"%s\"><a "
            "href=\"/report?target=%s#%s\">err %s<br>phantom %s</a></td>",
            VerdictStateColor(c.state),
            c.state == v1::VERDICT_STATE_UNSPECIFIED
                ? "no verdict"
                : v1::VerdictState_Name(c.state),
            HtmlEscape(target),
            HtmlEscape(ReportCellAnchor(c.region, c.mode, c.size_bytes)), rate,
            phantom);
      }
      absl::StrAppend(&html, "</tr>");
    }
    absl::StrAppend(&html, "</tbody></table>");
  }
  return html;
}

std::string RenderStatusPage(const StatusPageData& data) {
  std::string html = absl::StrCat(
      "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"refresh\" content=\"5\">"
      "<title>",
      HtmlEscape(data.title),
      " status</title><style>"
      "body{font-family:sans-serif;margin:1.5em;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}"
      "td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;"
      "text-align:left;vertical-align:top}"
      "th{background:#f3f3f3}.state{font-weight:bold;color:#fff;"
      "padding:2px 6px;border-radius:3px}"
      "td.cell{text-align:center;min-width:6em}td.cell a{color:#fff;"
      "text-decoration:none;font-weight:bold}"
      "</style></head><body><h1>",
      HtmlEscape(data.title), "</h1><p>As of ", FormatUtc(data.now),
      " UTC &middot; ", data.probes_total, " probes charted &middot; ",
      data.agents.size(), " agents</p>", RenderMatrix(data));
  // Verdict table: the non-healthy first.
  std::vector<const v1::Verdict*> sorted;
  for (const v1::Verdict& v : data.verdicts) sorted.push_back(&v);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const v1::Verdict* a, const v1::Verdict* b) {
                     return (a->state() != v1::HEALTHY) >
                            (b->state() != v1::HEALTHY);
                   });
  absl::StrAppend(&html,
                  "<h2>Verdicts</h2><table id=\"verdicts\"><thead><tr>"
                  "<th>kind</th><th>region</th><th>target</th><th>mode</th>"
                  "<th>size</th><th>state</th><th>since</th><th>evidence</th>"
                  "</tr></thead><tbody>");
  if (sorted.empty()) {
    absl::StrAppend(&html, "<tr><td colspan=\"8\">no verdicts yet</td></tr>");
  }
  for (const v1::Verdict* v : sorted) {
    absl::StrAppendFormat(
        &html,
        "<tr class=\"verdict\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
        "<td>%s</td><td><span class=\"state\" style=\"background:%s\">%s"
        "</span></td><td>%s</td><td>%s</td></tr>",
        v1::VerdictKind_Name(v->kind()), HtmlEscape(v->key().region()),
        HtmlEscape(v->key().target()), InvokeModeName(v->key().mode(), ""),
        HtmlEscape(v->key().size_class()), VerdictStateColor(v->state()),
        v1::VerdictState_Name(v->state()),
        v->since().seconds() > 0 ? FormatUtc(TimeFromProto(v->since())) : "",
        HtmlEscape(EvidenceText(v->evidence())));
  }
  absl::StrAppend(&html, "</tbody></table><h2>Error rate</h2>");
  absl::StrAppend(&html, RenderRateChartSvg("Error rate by invoke mode",
                                            data.rate_by_mode, 900, 260));
  absl::StrAppend(&html, "<br>");
  absl::StrAppend(&html, RenderRateChartSvg("Error rate by body size",
                                            data.rate_by_size, 900, 260));
  absl::StrAppend(&html, "<h2>Timeline</h2>",
                  RenderTimelineSvg(data.transitions, data.now, 900));
  absl::StrAppend(
      &html,
      "<h2>Agents</h2><table id=\"agents\"><thead><tr><th>agent</th>"
      "<th>region</th><th>state</th><th>assignments</th>"
      "<th>outbox</th><th>dropped</th></tr></thead><tbody>");
  for (const v1::AgentInfo& a : data.agents) {
    absl::StrAppendFormat(
        &html,
        "<tr><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td>"
        "<td>%d</td></tr>",
        HtmlEscape(a.agent_id()), HtmlEscape(a.region()),
        v1::AgentState_Name(a.state()), a.assignments(), a.outbox_depth(),
        a.dropped_total());
  }
  absl::StrAppend(&html, "</tbody></table></body></html>\n");
  return html;
}

}  // namespace fleetcanary
