#include "analysis/report/svg_chart.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/report/html.h"
#include "analysis/report/report_render.h"

namespace fleetcanary::report::internal {
namespace {

constexpr int kWidth = 760, kLeft = 64, kRight = 16, kTop = 28;

// Where each line's legend entry goes: entries wrap into rows under the x
// axis.
struct Legend {
  std::vector<std::pair<int, int>> at;  // (x, row) per line.
  int rows = 1;
};

Legend LayOutLegend(const std::vector<Line>& lines) {
  Legend legend;
  int legend_x = kLeft, legend_row = 0;
  for (const Line& l : lines) {
    const int width = 30 + 6 * static_cast<int>(l.label.size());
    if (legend_x > kLeft && legend_x + width > kWidth - kRight) {
      legend_x = kLeft;
      ++legend_row;
    }
    legend.at.emplace_back(legend_x, legend_row);
    legend_x += width;
  }
  legend.rows = legend_row + 1;
  return legend;
}

// The chart's size and its mapping from data to pixels.
struct Frame {
  int bottom = 0, h = 0;
  double x_min = 0, x_max = 1, y_max = 1;
  double X(double x) const {
    return kLeft + (x - x_min) / (x_max - x_min) * (kWidth - kLeft - kRight);
  }
  double Y(double y) const {
    return kTop + (1 - y / y_max) * (h - kTop - bottom);
  }
  int LegendY(int row) const { return h - bottom + 32 + 14 * row; }
};

Frame MakeFrame(const std::vector<Line>& lines, int legend_rows, double x_min,
                double x_max, bool y_rate) {
  Frame f;
  f.bottom = 44 + 14 * legend_rows;
  f.h = 190 + f.bottom;
  double y_max = y_rate ? 0.001 : 1;
  for (const Line& l : lines) {
    for (const auto& p : l.points) y_max = std::max(y_max, p.second);
    for (const auto& b : l.bars) y_max = std::max(y_max, b.second);
  }
  f.y_max = y_max * 1.1;
  if (x_max <= x_min) x_max = x_min + 1;
  f.x_min = x_min;
  f.x_max = x_max;
  return f;
}

void AppendBands(const Frame& f, const std::vector<Band>& bands,
                 std::string* s) {
  for (const Band& b : bands) {
    const double x0 = std::max<double>(f.X(b.x0), kLeft);
    const double x1 = std::min<double>(f.X(b.x1), kWidth - kRight);
    if (x1 <= x0) continue;
    absl::StrAppendFormat(s,
                          "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                          "height=\"%d\" fill=\"%s\"><title>%s</title></rect>",
                          x0, kTop, x1 - x0, f.h - kTop - f.bottom, b.fill,
                          HtmlEscape(b.label));
  }
}

void AppendAxes(const Frame& f,
                const std::vector<std::pair<double, std::string>>& x_ticks,
                bool y_rate, std::string* s) {
  for (int i = 0; i <= 4; ++i) {
    const double y = f.y_max * i / 4;
    absl::StrAppendFormat(
        s,
        "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
        "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%s"
        "</text>",
        kLeft, f.Y(y), kWidth - kRight, f.Y(y), kLeft - 4, f.Y(y) + 3,
        y_rate ? FormatRate(y) : absl::StrFormat("%.3g", y));
  }
  for (size_t i = 0; i < x_ticks.size(); ++i) {
    // The last label ends at its tick so it stays inside the chart.
    absl::StrAppendFormat(
        s,
        "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" "
        "text-anchor=\"%s\">%s</text>",
        f.X(x_ticks[i].first), f.h - f.bottom + 14,
        i + 1 == x_ticks.size() && x_ticks.size() > 1 ? "end" : "middle",
        HtmlEscape(x_ticks[i].second));
  }
}

// The line's path, error bars and dots (dots only up to 40 points).
void AppendSeries(const Frame& f, const Line& l, std::string* s) {
  std::string path;
  for (const auto& [x, y] : l.points) {
    absl::StrAppendFormat(&path, "%s%.1f,%.1f ", path.empty() ? "M" : "L",
                          f.X(x), f.Y(y));
  }
  if (!path.empty()) {
    absl::StrAppendFormat(
        s,
        "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s/>",
        path, l.color, l.dashed ? " stroke-dasharray=\"5,3\"" : "");
  }
  for (size_t i = 0; i < l.bars.size() && i < l.points.size(); ++i) {
    const double x = f.X(l.points[i].first);
    absl::StrAppendFormat(s,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                          "y2=\"%.1f\" stroke=\"%s\"/>",
                          x, f.Y(l.bars[i].first), x, f.Y(l.bars[i].second),
                          l.color);
  }
  for (const auto& [x, y] : l.points) {
    if (l.points.size() > 40) break;
    absl::StrAppendFormat(s,
                          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" "
                          "fill=\"%s\"/>",
                          f.X(x), f.Y(y), l.color);
  }
}

void AppendLegendEntry(const Frame& f, const Line& l,
                       const std::pair<int, int>& at, std::string* s) {
  const auto& [x, row] = at;
  absl::StrAppendFormat(
      s,
      "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
      "stroke-width=\"2\"%s/><text x=\"%d\" y=\"%d\" font-size=\"10\">%s"
      "</text>",
      x, f.LegendY(row), x + 18, f.LegendY(row), l.color,
      l.dashed ? " stroke-dasharray=\"5,3\"" : "", x + 22, f.LegendY(row) + 4,
      HtmlEscape(l.label));
}

}  // namespace

std::string Chart(const std::string& title, const std::vector<Line>& lines,
                  const std::vector<Band>& bands, double x_min, double x_max,
                  const std::vector<std::pair<double, std::string>>& x_ticks,
                  bool y_rate) {
  const Legend legend = LayOutLegend(lines);
  const Frame f = MakeFrame(lines, legend.rows, x_min, x_max, y_rate);
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
      "width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"%s\">"
      "<text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s"
      "</text>",
      kWidth, f.h, kWidth, f.h, HtmlEscape(title), kLeft, HtmlEscape(title));
  AppendBands(f, bands, &s);
  AppendAxes(f, x_ticks, y_rate, &s);
  for (size_t li = 0; li < lines.size(); ++li) {
    AppendSeries(f, lines[li], &s);
    AppendLegendEntry(f, lines[li], legend.at[li], &s);
  }
  absl::StrAppend(&s, "</svg>");
  return s;
}

}  // namespace fleetcanary::report::internal
