// RenderReportHtml (report_render.h): one function per section.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "analysis/report/html.h"
#include "analysis/report/report_charts.h"
#include "analysis/report/report_render.h"
#include "analysis/report/report_text.h"
#include "common/units/units.h"

namespace fleetcanary::report {
namespace {

using internal::ClassesText;
using internal::DurationText;
using internal::EvidenceText;
using internal::IntervalText;
using internal::IsShown;
using internal::KeyText;
using internal::ModeName;
using internal::PeriodName;
using internal::RateWithInterval;
using internal::TimeText;
using Rows = std::vector<std::vector<std::string>>;

std::string E(absl::string_view s) { return HtmlEscape(s); }

constexpr char kStyle[] =
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
    "@page{size:A4;margin:14mm}";

std::string StateBadge(v1::VerdictState s) {
  return absl::StrFormat(
      "<span class=\"state\" style=\"background:%s\">%s</span>",
      VerdictStateColor(s), internal::StateName(s));
}

// Markdown-ish tables again, as HTML.
std::string HtmlTable(const std::vector<std::string>& head, const Rows& rows,
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

void AppendHead(const v1::IncidentReport& r, std::string* out) {
  absl::StrAppend(out,
                  "<!DOCTYPE html><html lang=\"en\"><head><meta "
                  "charset=\"utf-8\"><title>Incident evidence report: ",
                  E(r.target()), "</title><style>", kStyle,
                  "</style></head><body>");
  absl::StrAppend(out, "<h1>Incident evidence report: ", E(r.target()),
                  "</h1><p class=\"meta\">Window ", E(TimeText(r.from())),
                  " to ", E(TimeText(r.to())), "; source: ", E(r.source()),
                  "; generated ", E(TimeText(r.generated_at())), ".</p>");
}

void AppendSummary(const v1::IncidentReport& r, std::string* out) {
  absl::StrAppend(out, "<h2>Summary</h2><ul>");
  for (absl::string_view line : absl::StrSplit(internal::SummaryLines(r, false),
                                               '\n', absl::SkipEmpty())) {
    absl::StrAppend(out, "<li>", E(line.substr(2)), "</li>");
  }
  absl::StrAppend(out, "</ul>");
}

// "time [interval]" of an estimated change, or "-" without one.
std::string ChangeText(bool has_time, const google::protobuf::Timestamp& time,
                       const v1::TimeInterval& interval) {
  return has_time ? E(TimeText(time) + " " + IntervalText(interval)) : "-";
}

void AppendFixCertificates(const v1::IncidentReport& r, std::string* out) {
  Rows rows;
  for (const v1::ReportFinding& f : r.findings()) {
    if (!f.has_fix()) continue;
    const v1::FixCertificate& c = f.fix();
    rows.push_back(
        {E(v1::VerdictKind_Name(f.kind())), E(KeyText(f.key())),
         ChangeText(c.has_change_time(), c.change_time(), c.change_interval()),
         absl::StrFormat("%g %%", c.confidence() * 100),
         absl::StrCat(c.probes()), absl::StrCat(c.failures()),
         E("< " + FormatRate(c.proven_upper_bound())),
         E(FormatRate(c.baseline_rate()))});
  }
  if (rows.empty()) return;
  absl::StrAppend(out, "<h3>Fix certificates</h3>",
                  HtmlTable({"verdict", "where", "fix time (interval)",
                             "confidence", "probes since start", "failures",
                             "proven bound", "pre-incident baseline"},
                            rows));
}

void AppendFindings(const v1::IncidentReport& r, std::string* out) {
  if (r.findings_size() == 0) return;
  Rows rows;
  for (const v1::ReportFinding& f : r.findings()) {
    rows.push_back(
        {E(v1::VerdictKind_Name(f.kind())), E(KeyText(f.key())),
         E(TimeText(f.first_seen())), StateBadge(f.worst_state()),
         StateBadge(f.current_state()),
         ChangeText(f.has_change_time(), f.change_time(), f.change_interval()),
         E(EvidenceText(f.evidence()))});
  }
  absl::StrAppend(
      out, HtmlTable({"verdict", "where", "first seen", "worst", "current",
                      "estimated change (interval)", "evidence"},
                     rows));
  AppendFixCertificates(r, out);
}

void AppendCells(const v1::IncidentReport& r,
                 const std::vector<v1::ReportPeriod>& shown, std::string* out) {
  absl::StrAppend(out, "<h2>Per region &times; mode &times; size</h2>");
  Rows rows;
  std::vector<std::string> ids;
  for (const v1::ReportCell& c : r.cells()) {
    bool first = true;
    for (const v1::ReportCounts& p : c.periods()) {
      if (!IsShown(shown, p.period())) continue;
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
  absl::StrAppend(out, HtmlTable({"region", "mode", "size", "verdict", "period",
                                  "probes", "failures", "error rate [95 % CI]",
                                  "TTFB p50", "TTFB p99", "failure classes"},
                                 rows, ids));
}

void AppendPlatform(const v1::IncidentReport& r,
                    const std::vector<v1::ReportPeriod>& shown,
                    std::string* out) {
  absl::StrAppend(out, "<h2>Platform vs client</h2>");
  Rows rows;
  for (const v1::ReportPlatform& p : r.platform()) {
    for (const v1::ReportPlatformCounts& c : p.periods()) {
      if (!IsShown(shown, c.period())) continue;
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
      out, rows.empty()
               ? "<p>No platform metrics in the window.</p>"
               : HtmlTable({"region", "mode", "period", "platform errors",
                            "invocations", "client-visible failures",
                            "phantom errors", "phantom rate"},
                           rows));
}

void AppendSamples(
    const char* title,
    const google::protobuf::RepeatedPtrField<v1::SampleProbe>& list,
    std::string* out) {
  absl::StrAppend(out, "<h2>", title, "</h2>");
  if (list.empty()) {
    absl::StrAppend(out, "<p>None.</p>");
    return;
  }
  Rows rows;
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
  absl::StrAppend(out, HtmlTable({"x-amzn-RequestId", "start", "region", "mode",
                                  "size", "class", "status", "detail"},
                                 rows));
}

void AppendReproductionAndMethods(const v1::IncidentReport& r,
                                  std::string* out) {
  absl::StrAppend(out, "<h2>Reproduction</h2><pre>",
                  E(absl::StrJoin(r.reproduction().commands(), "\n")),
                  "</pre><p><b>Request:</b> ", E(r.reproduction().request()),
                  "</p><p><b>Expected:</b> ",
                  E(r.reproduction().expected_body()), "</p>");
  absl::StrAppend(out, "<h2>Methods</h2><p>", E(r.methods()),
                  "</p></body></html>\n");
}

}  // namespace

std::string RenderReportHtml(const v1::IncidentReport& r) {
  std::string out;
  AppendHead(r, &out);
  AppendSummary(r, &out);
  AppendFindings(r, &out);
  absl::StrAppend(&out, "<h2>Charts</h2>", internal::RateOverTimeChart(r),
                  internal::RateBySizeChart(r), internal::PlatformChart(r));
  const std::vector<v1::ReportPeriod> shown = internal::ShownPeriods(r);
  AppendCells(r, shown, &out);
  AppendPlatform(r, shown, &out);
  AppendSamples("Failing probes (sample request ids)", r.failing_samples(),
                &out);
  AppendSamples("Probes in periods with phantom errors", r.phantom_samples(),
                &out);
  AppendReproductionAndMethods(r, &out);
  return out;
}

}  // namespace fleetcanary::report
