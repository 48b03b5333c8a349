// Dating a single change in a Bernoulli rate (docs/statistics.md §4): the maximum
// likelihood split of a sequence of count bins into "before" and "after", the
// likelihood-ratio statistic against "no change", and an interval for the
// change from the posterior over the split under Jeffreys Beta(1/2, 1/2)
// priors on both rates (uniform prior over the split).
//
// Pure function of counts: no I/O, no clocks, no globals; thread-safe.
#ifndef FLEETCANARY_CONTROLLER_ANALYSIS_CHANGEPOINT_H_
#define FLEETCANARY_CONTROLLER_ANALYSIS_CHANGEPOINT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace fleetcanary::analysis {

// Counts of one time bin (one probe, or one minute of probes).
struct CountBin {
  uint64_t trials = 0;
  uint64_t failures = 0;
};

struct ChangePointEstimate {
  // Bins [0, split) are "before", [split, size) "after"; 1 <= split < size.
  // For one probe per bin, split is the 1-based index of the last probe
  // before the change (for a fix: the last pre-fix failure).
  size_t split = 0;
  double rate_before = 0;
  double rate_after = 0;
  // 2 * (log L(split) - log L(no change)).
  double lr_statistic = 0;
  // Smallest set of splits holding >= `confidence` of the Jeffreys posterior,
  // reported as its hull [interval_lower, interval_upper] (splits).
  size_t interval_lower = 0;
  size_t interval_upper = 0;
  double confidence = 0;
  // The simple rule t_last + ln(1/(1-confidence)) / rate_before, in trials
  // counted from the start of the first bin (0 when rate_before == 0).
  double rule_upper_trials = 0;
};

// Errors: INVALID_ARGUMENT when there are fewer than 2 bins, a bin has
// failures > trials, or 0 < confidence < 1 does not hold.
// Example (docs/statistics.md §4): 10,000 single-probe bins with failures at
// 200, 400, ..., 4000 -> split 4000, lr_statistic 36.71177.
absl::StatusOr<ChangePointEstimate> DateSingleChangePoint(
    const std::vector<CountBin>& bins, double confidence);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_CONTROLLER_ANALYSIS_CHANGEPOINT_H_
