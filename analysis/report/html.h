// HTML helpers shared by the incident report's HTML rendering and the
// controller's status page: text escaping, the colour of each verdict state
// and the anchors of the report's rows, so both pages look, escape and link
// alike.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_HTML_H_
#define FLEETCANARY_ANALYSIS_REPORT_HTML_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {

// The id of a region x mode x size row in the incident report's HTML
// ("cell-REGION-buffered|stream-BYTES"): the status page's matrix links there.
std::string ReportCellAnchor(const std::string& region, v1::InvokeMode mode,
                             uint64_t size_bytes);

// Background colour of a verdict state (HEALTHY green ... REGRESSION red).
const char* VerdictStateColor(v1::VerdictState state);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string HtmlEscape(absl::string_view text);

}  // namespace fleetcanary

#endif  // FLEETCANARY_ANALYSIS_REPORT_HTML_H_
