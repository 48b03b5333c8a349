#include "cli/commands/probe_table.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/ui/table.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {

std::string FormatMs(absl::Duration d) {
  const double ms = absl::ToDoubleMilliseconds(d);
  if (ms >= 1000) return absl::StrFormat("%.2fs", ms / 1000);
  if (ms >= 100) return absl::StrFormat("%.0fms", ms);
  return absl::StrFormat("%.1fms", ms);
}

std::string FormatPercent(double p) {
  return absl::StrFormat("%.2f%%", 100 * p);
}

std::string FormatThroughput(double bytes_per_second) {
  const char* units[] = {"B/s", "KiB/s", "MiB/s", "GiB/s"};
  int u = 0;
  while (bytes_per_second >= 1024 && u < 3) {
    bytes_per_second /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f %s", bytes_per_second, units[u]);
}

std::string RenderSummaryTable(const std::vector<v1::ProbeSummary>& summaries,
                               bool with_region) {
  std::vector<std::string> headers = {
      "MODE",   "SIZE",     "PROBES", "OK",  "FAILURES",  "ERROR",
      "95% CI", "TTFB P50", "P90",    "P99", "THROUGHPUT"};
  std::vector<Align> align = {Align::kLeft,  Align::kRight, Align::kRight,
                              Align::kRight, Align::kLeft,  Align::kRight,
                              Align::kLeft,  Align::kRight, Align::kRight,
                              Align::kRight, Align::kRight};
  if (with_region) {
    headers.insert(headers.begin(), "REGION");
    align.insert(align.begin(), Align::kLeft);
  }
  Table t(headers, align);
  for (const v1::ProbeSummary& s : summaries) {
    std::vector<std::string> failures;
    uint64_t ok = 0;
    // Stable order: by enum value.
    for (int c = v1::OutcomeClass_MIN; c <= v1::OutcomeClass_MAX; ++c) {
      const std::string name =
          v1::OutcomeClass_Name(static_cast<v1::OutcomeClass>(c));
      auto it = s.by_class().find(name);
      if (it == s.by_class().end()) continue;
      if (c == v1::OK) {
        ok = it->second;
      } else {
        failures.push_back(absl::StrCat(name, ":", it->second));
      }
    }
    // No TTFB at all (nothing answered): "-" rather than a fake zero.
    const bool any_ttfb = s.has_ttfb_p99() && DurationFromProto(s.ttfb_p99()) >
                                                  absl::ZeroDuration();
    const auto ttfb = [&](const google::protobuf::Duration& d) {
      return any_ttfb ? FormatMs(DurationFromProto(d)) : std::string("-");
    };
    std::vector<std::string> row = {
        InvokeModeName(s.mode(), "buffered"),
        FormatBytes(s.size_bytes()),
        absl::StrCat(s.probes()),
        absl::StrCat(ok),
        failures.empty() ? "-" : absl::StrJoin(failures, " "),
        FormatPercent(s.error_rate()),
        absl::StrCat("[", FormatPercent(s.error_rate_interval().lower()), ", ",
                     FormatPercent(s.error_rate_interval().upper()), "]"),
        ttfb(s.ttfb_p50()),
        ttfb(s.ttfb_p90()),
        ttfb(s.ttfb_p99()),
        FormatThroughput(s.throughput_bytes_per_second())};
    if (with_region) row.insert(row.begin(), s.region());
    t.AddRow(std::move(row));
  }
  return t.Render();
}

}  // namespace cli
}  // namespace fleetcanary
