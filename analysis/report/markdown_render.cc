// RenderReportMarkdown (report_render.h): one function per section.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
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
using internal::StateName;
using internal::TimeText;

std::string MdCell(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"|", "\\|"}, {"\n", " "}});
}

void AppendHeader(const v1::IncidentReport& r, std::string* out) {
  absl::StrAppend(out, "# Incident evidence report: ", r.target(), "\n\n");
  absl::StrAppend(out, "Window ", TimeText(r.from()), " to ", TimeText(r.to()),
                  "; source: ", r.source(), "; generated ",
                  TimeText(r.generated_at()), ".\n\n## Summary\n\n",
                  internal::SummaryLines(r, true), "\n");
}

void AppendFixCertificates(const v1::IncidentReport& r, std::string* out) {
  bool any_fix = false;
  for (const v1::ReportFinding& f : r.findings()) any_fix |= f.has_fix();
  if (!any_fix) return;
  absl::StrAppend(out,
                  "\n### Fix certificates\n\n| verdict | where | fix time "
                  "(interval) | confidence | probes since start | "
                  "failures | proven bound | pre-incident baseline |\n"
                  "|---|---|---|---|---|---|---|---|\n");
  for (const v1::ReportFinding& f : r.findings()) {
    if (!f.has_fix()) continue;
    const v1::FixCertificate& c = f.fix();
    absl::StrAppend(
        out, "| ", v1::VerdictKind_Name(f.kind()), " | ", KeyText(f.key()),
        " | ", c.has_change_time() ? TimeText(c.change_time()) : "-", " ",
        IntervalText(c.change_interval()), " | ",
        absl::StrFormat("%g %%", c.confidence() * 100), " | ", c.probes(),
        " | ", c.failures(), " | < ", FormatRate(c.proven_upper_bound()), " | ",
        FormatRate(c.baseline_rate()), " |\n");
  }
}

void AppendFindings(const v1::IncidentReport& r, std::string* out) {
  if (r.findings_size() == 0) return;
  absl::StrAppend(out,
                  "| verdict | where | first seen | worst | current | "
                  "estimated change (interval) | evidence |\n"
                  "|---|---|---|---|---|---|---|\n");
  for (const v1::ReportFinding& f : r.findings()) {
    absl::StrAppend(out, "| ", v1::VerdictKind_Name(f.kind()), " | ",
                    KeyText(f.key()), " | ", TimeText(f.first_seen()), " | ",
                    StateName(f.worst_state()), " | ",
                    StateName(f.current_state()), " | ",
                    f.has_change_time() ? TimeText(f.change_time()) : "-", " ",
                    IntervalText(f.change_interval()), " | ",
                    MdCell(EvidenceText(f.evidence())), " |\n");
  }
  AppendFixCertificates(r, out);
}

void AppendCells(const v1::IncidentReport& r,
                 const std::vector<v1::ReportPeriod>& shown, std::string* out) {
  absl::StrAppend(out,
                  "\n## Per region x mode x size\n\n| region | mode | size | "
                  "period | probes | failures | error rate [95 % CI] | TTFB "
                  "p50 | TTFB p99 | failure classes |\n"
                  "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const v1::ReportCell& c : r.cells()) {
    for (const v1::ReportCounts& p : c.periods()) {
      if (!IsShown(shown, p.period())) continue;
      absl::StrAppend(out, "| ", c.region(), " | ", ModeName(c.mode()), " | ",
                      c.size_class(), " | ", PeriodName(p.period()), " | ",
                      p.probes(), " | ", p.failures(), " | ",
                      RateWithInterval(p), " | ",
                      DurationText(p.ttfb_p50(), p.ttfb_count()), " | ",
                      DurationText(p.ttfb_p99(), p.ttfb_count()), " | ",
                      ClassesText(p), " |\n");
    }
  }
}

void AppendPlatform(const v1::IncidentReport& r,
                    const std::vector<v1::ReportPeriod>& shown,
                    std::string* out) {
  absl::StrAppend(out,
                  "\n## Platform vs client\n\n| region | mode | period | "
                  "platform errors | invocations | client-visible failures | "
                  "phantom errors | phantom rate |\n"
                  "|---|---|---|---|---|---|---|---|\n");
  for (const v1::ReportPlatform& p : r.platform()) {
    for (const v1::ReportPlatformCounts& c : p.periods()) {
      if (!IsShown(shown, c.period())) continue;
      absl::StrAppend(out, "| ", p.region(), " | ", ModeName(p.mode()), " | ",
                      PeriodName(c.period()), " | ", c.platform_errors(), " | ",
                      c.platform_invocations(), " | ",
                      c.client_visible_failures(), " | ", c.phantom_errors(),
                      " | ", FormatRate(c.phantom_rate()), " |\n");
    }
  }
  if (r.platform_size() == 0) {
    absl::StrAppend(out, "\nNo platform metrics in the window.\n");
  }
}

void AppendSamples(
    const char* title,
    const google::protobuf::RepeatedPtrField<v1::SampleProbe>& list,
    std::string* out) {
  absl::StrAppend(out, "\n## ", title, "\n\n");
  if (list.empty()) {
    absl::StrAppend(out, "None.\n");
    return;
  }
  absl::StrAppend(out,
                  "| x-amzn-RequestId | start | region | mode | size | "
                  "class | status | detail |\n"
                  "|---|---|---|---|---|---|---|---|\n");
  for (const v1::SampleProbe& s : list) {
    absl::StrAppend(
        out, "| `",
        s.platform_request_id().empty() ? "(none)" : s.platform_request_id(),
        "` | ", TimeText(s.start_time()), " | ", s.region(), " | ",
        ModeName(s.mode()), " | ", FormatBytes(s.size_bytes()), " | ",
        v1::OutcomeClass_Name(s.outcome_class()), " | ", s.status(), " | ",
        MdCell(s.detail()), " |\n");
  }
}

void AppendReproductionAndMethods(const v1::IncidentReport& r,
                                  std::string* out) {
  absl::StrAppend(out, "\n## Reproduction\n\n```\n",
                  absl::StrJoin(r.reproduction().commands(), "\n"),
                  "\n```\n\nRequest: ", r.reproduction().request(),
                  "\n\nExpected: ", r.reproduction().expected_body(),
                  "\n\n## Methods\n\n", r.methods(), "\n");
}

}  // namespace

std::string RenderReportMarkdown(const v1::IncidentReport& r) {
  std::string out;
  AppendHeader(r, &out);
  AppendFindings(r, &out);
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
