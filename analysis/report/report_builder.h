// Builds the incident evidence report (v1::IncidentReport, docs/report.md)
// from per-minute stream aggregates, raw outcomes with their request ids,
// platform metric samples and the verdict engine's AnalysisReport. One code
// path for both sources: the controller's Report RPC feeds it what the store
// holds, `canaryctl report --file` what ReadReportData() read from an
// exported outcomes file (the `canaryctl analyze` input).
//
// Periods: the onset is the earliest estimated change time of the verdicts
// that reached REGRESSION in the window; the fix time is the latest estimated
// change time of their fix certificates, set only when every one of them
// reached FIX_CONFIRMED. The store keeps minutes, so a minute is BEFORE when
// it ends by the onset, AFTER when it starts at or after the fix, and DURING
// otherwise (the minutes holding the onset and the fix count as during);
// sample probes are placed by their own start. Without an onset every minute
// is BEFORE. The report only reads what the verdicts carry: it never
// re-estimates change times. A REGRESSION whose evidence has no usable
// change time (unset, or not after 1970) is dated by its transition's
// `since` instead.
//
// Counts: trials = every scheduled outcome but AGENT_ERROR; failures =
// analysis::IsStreamHealthFailure; error rate with a 95 % Wilson interval.
// TTFB percentiles are interpolated linearly inside the latency histogram
// bucket that holds the rank (as Prometheus' histogram_quantile). Platform
// counts are per region x mode (CloudWatch has no size dimension) and are
// reconciled with the client at the store's minute resolution: platform
// periods shorter than a minute are summed per minute, longer ones cover
// their minutes; phantom errors of such a bucket = max(0, Errors - client
// failures the platform would see, analysis::IsPlatformVisibleFailure, in
// its minutes), summed. (The live PHANTOM_ERRORS detector reconciles per
// platform period, so with sub-minute periods its counts can be higher.)
// Ad-hoc outcomes are left out everywhere.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILDER_H_
#define FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILDER_H_

#include <cstddef>
#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "analysis/stream_stats.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/report.pb.h"

namespace fleetcanary::report {

// What the report is built from.
struct ReportData {
  // Per-minute aggregates (any order; other targets are ignored).
  std::vector<analysis::StreamMinute> minutes;
  // Raw outcomes with request ids: the store keeps failures only, an
  // outcomes file has every outcome (so phantom samples can include probes
  // the client saw as OK).
  std::vector<v1::Outcome> outcomes;
  std::vector<v1::PlatformMetricSample> platform_samples;
  // The verdict engine's result over the same data.
  v1::AnalysisReport analysis;
  // Registered targets (for the URLs of the reproduction commands); may be
  // empty.
  std::vector<v1::Target> targets;
};

struct ReportOptions {
  // Required.
  std::string target;
  // Empty = every region in the data.
  std::vector<std::string> regions;
  // Window [from, to); infinite bounds = everything in the data.
  absl::Time from = absl::InfinitePast();
  absl::Time to = absl::InfiniteFuture();
  absl::Time generated_at = absl::UnixEpoch();
  std::string source;
  // Detector settings (zero fields = documented defaults).
  v1::DetectionConfig detection;
  // Sample request ids per list at most.
  size_t max_samples = 20;
};

// Errors: INVALID_ARGUMENT "target: ..." when empty, "from: ..." unless
// from < to, or a bad detection config; NOT_FOUND when no scheduled minute
// of the target (and regions) lies in the window.
absl::StatusOr<v1::IncidentReport> BuildIncidentReport(
    const ReportData& data, const ReportOptions& options);

// Reads an exported outcomes file (JSON Lines of v1::AnalysisInputLine, the
// `canaryctl analyze` input) into minutes, outcomes and platform samples, and
// runs the verdict engine over it (analysis::AnalyzeJsonLines) for
// data.analysis. `declared_fix_time` as for analyze (InfinitePast = none).
// Errors: those of AnalyzeJsonLines ("line N: ...").
absl::StatusOr<ReportData> ReadReportData(std::istream& in,
                                          const v1::DetectionConfig& detection,
                                          absl::Time declared_fix_time);

// Quantile q (0 < q < 1) of a latency histogram in seconds, interpolated
// inside the bucket holding rank q * count; the +Inf bucket answers its lower
// bound. Zero for an empty histogram.
double HistogramQuantile(const analysis::LatencyHistogram& histogram, double q);

}  // namespace fleetcanary::report

#endif  // FLEETCANARY_ANALYSIS_REPORT_REPORT_BUILDER_H_
