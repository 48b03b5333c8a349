// Internal to analysis/report: the incident report's three SVG charts for
// its HTML rendering (report_render.h). Not for use outside analysis/report.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_REPORT_CHARTS_H_
#define FLEETCANARY_ANALYSIS_REPORT_REPORT_CHARTS_H_

#include <string>

#include "fleetcanary/v1/report.pb.h"

namespace fleetcanary::report::internal {

// Error rate over time per region x mode, in buckets of at most ~120 points
// over the window, with the incident, onset and fix intervals shaded.
std::string RateOverTimeChart(const v1::IncidentReport& r);

// Error rate by body size per mode with 95 % Wilson intervals: before
// (dashed) vs during (solid) an incident, else over the whole window.
std::string RateBySizeChart(const v1::IncidentReport& r);

// Platform Errors vs the failures clients saw per region x mode, or a
// "<p>No platform metrics in the window.</p>" paragraph without any.
std::string PlatformChart(const v1::IncidentReport& r);

}  // namespace fleetcanary::report::internal

#endif  // FLEETCANARY_ANALYSIS_REPORT_REPORT_CHARTS_H_
