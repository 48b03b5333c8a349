// Hypothesis tests on counts (docs/statistics.md §2, §3): Fisher's exact test,
// the exact binomial test, the conditional stream-vs-buffered error-split test
// with its SPRT and Beta(1,1)-mixture monitors, the Cochran-Armitage size-trend
// test (asymptotic and exact permutation), and Benjamini-Hochberg.
//
// Pure functions of counts: no I/O, no clocks, no globals; thread-safe.
//
// Two-sided exact p-values use the standard definition: the sum of the
// probabilities of all tables (outcomes) no more likely than the observed one,
// with a relative tolerance of 1e-7 on "no more likely" (as R does).
#ifndef FLEETCANARY_ANALYSIS_TESTS_H_
#define FLEETCANARY_ANALYSIS_TESTS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "analysis/intervals.h"

namespace fleetcanary::analysis {

// Fisher's exact test on the 2x2 table [[a, b], [c, d]], two-sided.
// Example: FisherExactTwoSided(5, 995, 0, 1000) = 0.0621875785.
double FisherExactTwoSided(uint64_t a, uint64_t b, uint64_t c, uint64_t d);

// Exact binomial test of `successes` ~ Bin(trials, p), two-sided.
// REQUIRES: successes <= trials, 0 <= p <= 1.
double BinomialTestTwoSided(uint64_t successes, uint64_t trials, double p);

// pi1 = rr1 * n_s / (rr1 * n_s + n_b): the probability that an error is a
// streaming one when the streaming rate is rr1 times the buffered rate.
double SplitAlternative(uint64_t n_s, uint64_t n_b, double rr1);

// Log-likelihood ratio of the split x_s (streaming errors) vs x_b (buffered
// errors) under pi1 against pi0.
// Example: SplitLogLikelihoodRatio(30, 8, 0.5, 0.75) = 6.6187758.
double SplitLogLikelihoodRatio(uint64_t x_s, uint64_t x_b, double pi0,
                               double pi1);

// Beta(1,1)-mixture likelihood ratio of the split against pi0:
// B(x_s + 1, x_b + 1) / (pi0^x_s (1 - pi0)^x_b). Any-time valid: under H0 it
// exceeds 1/alpha with probability at most alpha, ever (Ville).
double SplitMixtureLikelihoodRatio(uint64_t x_s, uint64_t x_b, double pi0);

// The conditional stream-vs-buffered error-split test (docs/statistics.md §2).
struct ErrorSplit {
  double pi0 = 0;      // n_s / (n_s + n_b).
  double pi_hat = 0;   // x_s / (x_s + x_b); 0 when there are no errors.
  double p_value = 1;  // Exact binomial test of x_s ~ Bin(x_s + x_b, pi0).
  // RR = pi/(1-pi) * n_b/n_s with Clopper-Pearson limits on pi transformed.
  // Infinite when x_b == 0 (the upper limit too).
  double rate_ratio = 0;
  RateInterval rate_ratio_interval;
  double pi1 = 0;         // SplitAlternative(n_s, n_b, rr1).
  double sprt_llr = 0;    // SplitLogLikelihoodRatio(x_s, x_b, pi0, pi1).
  double mixture_lr = 1;  // SplitMixtureLikelihoodRatio(x_s, x_b, pi0).
};
// REQUIRES: x_s <= n_s, x_b <= n_b, n_s > 0, n_b > 0.
ErrorSplit ErrorSplitTest(uint64_t x_s, uint64_t n_s, uint64_t x_b,
                          uint64_t n_b, double confidence, double rr1);

// Cochran-Armitage test for a trend in proportions x_i/n_i over scores s_i
// (docs/statistics.md §3; scores are log2(bytes) for body sizes).
struct TrendTest {
  double z = 0;             // Asymptotic Z; positive = rising with the score.
  double chi2 = 0;          // Z^2.
  double p_two_sided = 1;   // P(chi2_1 >= chi2).
  double p_increasing = 1;  // One-sided, H1: rate increases with the score.
  // True when p_increasing comes from the exact permutation distribution
  // (total failures < kExactTrendBelow); false when from the normal.
  bool exact = false;
};
inline constexpr uint64_t kExactTrendBelow = 20;

// Errors: INVALID_ARGUMENT when sizes differ, fewer than 2 groups, x_i > n_i,
// or no trials. Z is 0 (p = 1) when there is no variation (no failures, all
// failures, or a single distinct score).
absl::StatusOr<TrendTest> CochranArmitage(const std::vector<uint64_t>& x,
                                          const std::vector<uint64_t>& n,
                                          const std::vector<double>& scores);

// Exact one-sided (increasing) permutation p-value of T = sum x_i s_i given
// the margins: under H0 the failures are a uniformly random subset of all
// trials (multivariate hypergeometric), convolved group by group by dynamic
// programming. Cost grows with the number of distinct partial sums; meant for
// small totals (< kExactTrendBelow failures).
absl::StatusOr<double> ExactTrendPValue(const std::vector<uint64_t>& x,
                                        const std::vector<uint64_t>& n,
                                        const std::vector<double>& scores);

// Benjamini-Hochberg step-up procedure at false-discovery rate q.
struct BhResult {
  std::vector<bool> reject;      // In input order.
  std::vector<double> adjusted;  // BH-adjusted p-values, in input order.
};
BhResult BenjaminiHochberg(const std::vector<double>& p_values, double q);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_TESTS_H_
