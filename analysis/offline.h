// Offline analysis for `canaryctl analyze`: reads exported outcomes and
// platform-metric samples as JSON Lines, feeds them through the same
// VerdictEngine the controller runs live, and returns an AnalysisReport.
//
// Input format: one JSON object per line, each a v1::AnalysisInputLine in the
// protobuf JSON mapping - exactly one of
//   {"outcome": {...v1::Outcome...}}
//   {"platform_sample": {...v1::PlatformMetricSample...}}
// so one file can carry both (blank lines are skipped). Outcomes must be in
// non-decreasing start_time; platform samples may come in any order, re-read
// and duplicated (one value per period, replay.h). Outcomes with an adhoc_id
// are counted (and explain platform errors) but never feed stream verdicts;
// AGENT_ERROR outcomes are never counted against the platform. The
// reconciliation of platform Errors with client outcomes is replay.h's, the
// same as the live service's and the store-backed Analyze's.
//
// Bounded: lines longer than max_line_bytes and inputs with more than
// max_records records are refused.
//
// Thread-safe (no shared state).
#ifndef FLEETCANARY_ANALYSIS_OFFLINE_H_
#define FLEETCANARY_ANALYSIS_OFFLINE_H_

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis {

struct AnalyzeOptions {
  // Detector settings; zero fields take the documented defaults.
  v1::DetectionConfig detection;
  // Declared fix time: fix confirmation counts only probes after it.
  std::optional<absl::Time> declared_fix_time;
  // Streams sharing the false-alarm budget (0 = those in the input).
  int expected_streams = 0;
  size_t max_line_bytes = 1 << 20;
  uint64_t max_records = 50'000'000;
};

// Reads `in` to the end and analyzes it.
// Errors: INVALID_ARGUMENT "line N: ..." for bad JSON, unknown fields or enum
// values, an unknown or unspecified mode, a missing region/target/time,
// negative counts or values, times out of order, over-long lines;
// RESOURCE_EXHAUSTED past max_records; INVALID_ARGUMENT for a bad config.
absl::StatusOr<v1::AnalysisReport> AnalyzeJsonLines(
    std::istream& in, const AnalyzeOptions& options);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_OFFLINE_H_
