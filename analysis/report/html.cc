#include "analysis/report/html.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto/invoke_mode.h"

namespace fleetcanary {

std::string ReportCellAnchor(const std::string& region, v1::InvokeMode mode,
                             uint64_t size_bytes) {
  return absl::StrCat("cell-", region, "-", InvokeModeName(mode, "buffered"),
                      "-", size_bytes);
}

const char* VerdictStateColor(v1::VerdictState state) {
  switch (state) {
    case v1::HEALTHY:
      return "#2ca02c";
    case v1::SUSPECT:
      return "#f2c12e";
    case v1::REGRESSION:
      return "#d62728";
    case v1::RECOVERING:
      return "#ff7f0e";
    case v1::FIX_CONFIRMED:
      return "#1f77b4";
    default:
      return "#999999";
  }
}

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace fleetcanary
