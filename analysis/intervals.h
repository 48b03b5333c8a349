// Confidence intervals for a binomial proportion, and the zero-failure sample
// size (docs/statistics.md §5). Pure functions of counts: no I/O, no clocks, no
// globals; thread-safe.
//
// Special functions come from Boost.Math (regularized incomplete beta inverse,
// normal quantile).
#ifndef FLEETCANARY_ANALYSIS_INTERVALS_H_
#define FLEETCANARY_ANALYSIS_INTERVALS_H_

#include <cstdint>

namespace fleetcanary::analysis {

// A closed interval [lower, upper] for a proportion (or a ratio).
struct RateInterval {
  double lower = 0;
  double upper = 0;
};

// Two-sided Wilson score interval for `failures` out of `trials` at
// `confidence` (e.g. 0.95). trials == 0 gives [0, 1].
// REQUIRES: failures <= trials, 0 < confidence < 1.
RateInterval WilsonInterval(uint64_t failures, uint64_t trials,
                            double confidence);

// Two-sided Clopper-Pearson (exact) interval at `confidence`: the
// (1-confidence)/2 and (1+confidence)/2 quantiles of Beta(k, n-k+1) and
// Beta(k+1, n-k). trials == 0 gives [0, 1].
// REQUIRES: failures <= trials, 0 < confidence < 1.
RateInterval ClopperPearsonInterval(uint64_t failures, uint64_t trials,
                                    double confidence);

// One-sided Clopper-Pearson upper bound at `confidence`: the smallest p with
// P(X <= failures | p) <= 1 - confidence. 1 when trials == 0.
// Example: ClopperPearsonUpperBound(0, 2995, 0.95) < 0.001.
double ClopperPearsonUpperBound(uint64_t failures, uint64_t trials,
                                double confidence);

// Smallest n such that n clean trials prove p < p_star at level alpha:
// n = ceil(ln alpha / ln(1 - p_star)). (p* = 0.001, alpha = 0.05 -> 2995.)
// REQUIRES: 0 < p_star < 1, 0 < alpha < 1.
uint64_t ZeroFailureSampleSize(double p_star, double alpha);

// The `prob` quantile of a Beta(a, b) distribution (e.g. a posterior over a
// rate). REQUIRES: a > 0, b > 0, 0 < prob < 1.
double BetaQuantile(double a, double b, double prob);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_INTERVALS_H_
