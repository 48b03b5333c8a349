// Internal to analysis/report: a small self-contained SVG line chart (no
// scripts, no external assets) for the incident report's HTML rendering.
// Not for use outside analysis/report.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_SVG_CHART_H_
#define FLEETCANARY_ANALYSIS_REPORT_SVG_CHART_H_

#include <string>
#include <utility>
#include <vector>

namespace fleetcanary::report::internal {

// One series: points (x, y) joined in order, with optional error bars.
struct Line {
  std::string label;
  std::string color;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;
  // Optional error bars, parallel to points: (lower, upper).
  std::vector<std::pair<double, double>> bars;
};

// A shaded x range [x0, x1] (clipped to the plot) with a tooltip label.
struct Band {
  double x0, x1;
  std::string fill;
  std::string label;
};

// An <svg> line chart 760 px wide titled `title` over x in [x_min, x_max]
// (one unit wide when x_max <= x_min) and y from 0 to 1.1 x the largest
// point or bar; x ticks as (position, label); y labels as rates
// (FormatRate) when `y_rate`, else as numbers. The legend wraps into rows
// under the x axis.
std::string Chart(const std::string& title, const std::vector<Line>& lines,
                  const std::vector<Band>& bands, double x_min, double x_max,
                  const std::vector<std::pair<double, std::string>>& x_ticks,
                  bool y_rate);

}  // namespace fleetcanary::report::internal

#endif  // FLEETCANARY_ANALYSIS_REPORT_SVG_CHART_H_
