// The JSON rendering and FormatRate (report_render.h). The Markdown and HTML
// renderings are in markdown_render.cc and html_render.cc, over the shared
// text of report_text.h; the HTML charts in report_charts.cc over
// svg_chart.h.
#include "analysis/report/report_render.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_format.h"

namespace fleetcanary::report {

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

}  // namespace fleetcanary::report
