// Internal to analysis/report: the steps of BuildIncidentReport
// (report_builder.h) and the types they pass to each other. Not for use
// outside analysis/report.
//
// Each step reads what the earlier ones put into the report and adds its
// own part: findings and period boundaries (report_findings.cc), cells
// (report_cells.cc), platform reconciliation and chart series
// (report_platform.cc), sample probes (report_samples.cc), methods and
// reproduction (report_methods.cc).
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILD_STEPS_H_
#define FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILD_STEPS_H_

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "analysis/report/report_builder.h"
#include "analysis/stream_stats.h"
#include "fleetcanary/v1/report.pb.h"

namespace fleetcanary::report::internal {

// Confidence of the error rate intervals.
inline constexpr double kConfidence = 0.95;

// Every period, in the order of a cell's and a platform row's periods.
inline constexpr std::array<v1::ReportPeriod, 4> kPeriods = {
    v1::REPORT_PERIOD_WHOLE, v1::REPORT_PERIOD_BEFORE, v1::REPORT_PERIOD_DURING,
    v1::REPORT_PERIOD_AFTER};

// Index of a period in kPeriods.
inline int PeriodIndex(v1::ReportPeriod p) { return static_cast<int>(p) - 1; }

// Where the window's periods start and end.
struct Boundaries {
  absl::Time onset = absl::InfiniteFuture();
  absl::Time fix = absl::InfiniteFuture();
  v1::ReportPeriod Of(absl::Time t) const {
    if (t < onset) return v1::REPORT_PERIOD_BEFORE;
    if (t < fix) return v1::REPORT_PERIOD_DURING;
    return v1::REPORT_PERIOD_AFTER;
  }
  // A span [start, end) is BEFORE when it ends by the onset, AFTER when it
  // starts at or after the fix, DURING otherwise.
  v1::ReportPeriod OfSpan(absl::Time start, absl::Time end) const {
    if (end <= onset) return v1::REPORT_PERIOD_BEFORE;
    if (start >= fix) return v1::REPORT_PERIOD_AFTER;
    return v1::REPORT_PERIOD_DURING;
  }
};

// What of the data the report covers: options.target, options.regions
// (empty = all) and the window [options.from, options.to).
struct Scope {
  const ReportOptions& options;
  std::set<std::string> regions;
  bool RegionOk(const std::string& region) const {
    return regions.empty() || regions.count(region) > 0;
  }
  bool InWindow(absl::Time t) const {
    return !(t < options.from || t >= options.to);
  }
};

// A verdict's identity: kind, region, target, mode, size class.
using Identity = std::tuple<int, std::string, std::string, int, std::string>;
Identity IdentityOf(const v1::Verdict& v);

// (region, mode).
using ModeKey = std::pair<std::string, int>;

// Client counts of one region x mode in one minute.
struct ClientMinute {
  uint64_t trials = 0, failures = 0, visible = 0;
};
using ClientMinutes = std::map<ModeKey, std::map<int64_t, ClientMinute>>;

// Platform (Errors, Invocations) per region x mode and first minute.
using PlatformMinutes =
    std::map<ModeKey, std::map<int64_t, std::pair<double, double>>>;

// The [start, end) spans with phantom errors per region x mode.
using PhantomSpans =
    std::map<ModeKey, std::vector<std::pair<absl::Time, absl::Time>>>;

// Adds the findings of r->analysis() (the target's filtered verdicts) to
// `r`, sets its onset and fix time (the fix only when every regression was
// fixed after the onset) and returns the period boundaries they give.
Boundaries AddFindings(double fix_alpha, v1::IncidentReport* r);

// Adds one cell per region x mode x size of `minutes` (with the stream
// verdict's state and counts per period), adds their probes and failures to
// r's totals, and returns the client counts per region x mode and minute.
ClientMinutes AddCells(
    const std::vector<const analysis::StreamMinute*>& minutes,
    const Boundaries& b, const std::string& target, v1::IncidentReport* r);

// Reconciles the target's platform samples in scope with `client` per
// region x mode (adding platform rows and phantom periods to `r`); fills
// `per_minute` and returns the phantom spans. Adds an empty entry to
// `client` for a region x mode with platform samples only.
PhantomSpans AddPlatform(const ReportData& data, const Scope& scope,
                         const Boundaries& b, ClientMinutes* client,
                         PlatformMinutes* per_minute, v1::IncidentReport* r);

// Adds the chart series: per region x mode of `client` and minute.
void AddSeries(const ClientMinutes& client, const PlatformMinutes& per_minute,
               v1::IncidentReport* r);

// Adds the sample probes: failures (phantom periods first, then DURING,
// then the rest) and every outcome inside a phantom span, each list
// evenly spaced in time up to options.max_samples.
void AddSamples(const ReportData& data, const Scope& scope, const Boundaries& b,
                const PhantomSpans& phantom_at, v1::IncidentReport* r);

// The report's methods paragraph for detector settings `d`.
std::string MethodsParagraph(const v1::DetectionConfig& d);

// Adds the reproduction commands (from r's cells; direct ones with the
// target's URLs when `targets` has it), the request and the expected body.
void FillReproduction(const v1::IncidentReport& r,
                      const std::vector<v1::Target>& targets,
                      v1::Reproduction* out);

}  // namespace fleetcanary::report::internal

#endif  // FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILD_STEPS_H_
