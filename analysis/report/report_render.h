// Renders a v1::IncidentReport (report_builder.h) for people and tools:
//   - JSON: the proto's JSON mapping (field names as in report.proto), the
//     same numbers as the other formats, for tooling;
//   - Markdown: summary, tables and sample request ids that paste into a
//     support ticket;
//   - HTML: one self-contained document (inline CSS and SVG, no scripts, no
//     external assets) with the charts - error rate over time per mode with
//     the change intervals shaded, error rate vs body size before vs during,
//     platform vs client failures - and print CSS so a browser's "print to
//     PDF" gives a readable document.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_REPORT_RENDER_H_
#define FLEETCANARY_ANALYSIS_REPORT_REPORT_RENDER_H_

#include <cstdint>
#include <string>

#include "fleetcanary/v1/report.pb.h"

namespace fleetcanary::report {

std::string RenderReportJson(const v1::IncidentReport& report);
std::string RenderReportMarkdown(const v1::IncidentReport& report);
std::string RenderReportHtml(const v1::IncidentReport& report);

// "12.5 %" style text for a rate (3 significant digits; "0 %" for zero).
std::string FormatRate(double rate);

}  // namespace fleetcanary::report

#endif  // FLEETCANARY_ANALYSIS_REPORT_REPORT_RENDER_H_
