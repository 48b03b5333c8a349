// Dating a single change in a Bernoulli rate (docs/statistics.md §4): the
// maximum likelihood split of a sequence of count bins into "before" and
// "after", the likelihood-ratio statistic against "no change", and a
// profile-likelihood interval for the change: every split whose profile
// log-likelihood is within chi2_1(confidence)/2 of the best, {s : 2
// (logL(s_hat) - logL(s)) <= 3.841} at 95 %, joined with the Jeffreys
// posterior's highest-density set at (1 + confidence)/2 (the profile set alone
// under-covers when failures are rare), and reported as the hull. The estimate
// is always inside; with rare failures the interval is honestly wide. Coverage
// is measured by seeded simulation (tests/analysis/dating_coverage_test.cc).
//
// Pure function of counts: no I/O, no clocks, no globals; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_CHANGEPOINT_H_
#define FLEETCANARY_ANALYSIS_CHANGEPOINT_H_

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
  // Hull [interval_lower, interval_upper] (splits) of the profile-likelihood
  // set at `confidence` and the Jeffreys HPD set at (1 + confidence)/2;
  // interval_lower <= split <= interval_upper. In time, the change lies after
  // bin interval_lower - 1 and at or before bin interval_upper (the first bin
  // after the latest plausible split).
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

#endif  // FLEETCANARY_ANALYSIS_CHANGEPOINT_H_
