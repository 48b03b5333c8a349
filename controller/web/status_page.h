// The controller's status page: one self-contained HTML document with the
// verdict table (state, evidence) and server-rendered SVG charts — error rate
// over time by invoke mode and by body size, and the verdict timeline — so the
// fleet is readable without Grafana. No scripts, no external assets.
//
// Pure functions over a snapshot; thread-safe.
#ifndef FLEETCANARY_CONTROLLER_WEB_STATUS_PAGE_H_
#define FLEETCANARY_CONTROLLER_WEB_STATUS_PAGE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "analysis/report/html.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {

// One line of a chart: e.g. "stream" or "64KiB", error rate per time bucket.
struct RateSeries {
  std::string label;
  std::vector<std::pair<absl::Time, double>> points;
};

// One cell of the region x mode x size matrix at the top of the page.
struct MatrixCell {
  std::string target;
  std::string region;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  uint64_t size_bytes = 0;
  // Worst current state of the verdicts about this cell: its STREAM_HEALTH,
  // the PHANTOM_ERRORS / SIZE_TREND / HARD_DOWN of its region x mode, the
  // MODE_DIFFERENCE of its size on the mode with the higher rate (stream
  // when the rate ratio stream/buffered is >= 1) (UNSPECIFIED: no verdict
  // yet).
  v1::VerdictState state = v1::VERDICT_STATE_UNSPECIFIED;
  // Client error rate over the page's window.
  uint64_t trials = 0;
  uint64_t failures = 0;
  // Phantom errors per platform invocation of the cell's region x mode
  // (the platform has no size dimension); negative when there are no
  // platform metrics.
  double phantom_rate = -1;
};

struct StatusPageData {
  absl::Time now;
  std::string title = "fleetcanary";
  // Current verdicts (one per stream/comparison) and the transition history.
  std::vector<v1::Verdict> verdicts;
  std::vector<v1::Verdict> transitions;
  // Error rate (failures / probes) over time.
  std::vector<RateSeries> rate_by_mode;
  std::vector<RateSeries> rate_by_size;
  std::vector<v1::AgentInfo> agents;
  // Total probes the page's charts cover, shown in the header.
  uint64_t probes_total = 0;
  // The matrix, ordered by target, region, mode, size. Each cell links to
  // its row in the target's incident report (/report?target=...).
  std::vector<MatrixCell> matrix;
  // Targets with a verdict that is not HEALTHY now: the page links to
  // their incident reports.
  std::vector<std::string> incident_targets;
};

// The whole page (text/html; charset=utf-8).
std::string RenderStatusPage(const StatusPageData& data);

// A line chart of `series` as an <svg> element; y axis from 0 to the largest
// value (at least `min_y_max`), x axis over the points' time range.
std::string RenderRateChartSvg(const std::string& title,
                               const std::vector<RateSeries>& series, int width,
                               int height, double min_y_max = 0.001);

// One row per verdict key, coloured bands for the states it went through.
std::string RenderTimelineSvg(const std::vector<v1::Verdict>& transitions,
                              absl::Time end, int width);

}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_WEB_STATUS_PAGE_H_
