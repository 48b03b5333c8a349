#include "analysis/changepoint.h"

#include <algorithm>
#include <boost/math/distributions/chi_squared.hpp>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "analysis/math_policy.h"

namespace fleetcanary::analysis {
namespace {

// Maximized Bernoulli log-likelihood of k failures in n trials.
double MaxLogLik(double k, double n) {
  if (n <= 0) return 0;
  double out = 0;
  if (k > 0) out += k * std::log(k / n);
  if (n - k > 0) out += (n - k) * std::log((n - k) / n);
  return out;
}

// Log marginal likelihood under a Jeffreys Beta(1/2, 1/2) prior.
double LogJeffreysMarginal(double k, double n) {
  return std::lgamma(k + 0.5) + std::lgamma(n - k + 0.5) - std::lgamma(n + 1) -
         std::log(M_PI);
}

// Total trials and failures over `bins`, stored in `*total_n` and `*total_k`;
// InvalidArgument if fewer than 2 bins, `confidence` is outside (0, 1) or a
// bin has more failures than trials.
absl::Status ValidateAndTotal(const std::vector<CountBin>& bins,
                              double confidence, double* total_n,
                              double* total_k) {
  if (bins.size() < 2) {
    return absl::InvalidArgumentError("change point: needs at least 2 bins");
  }
  if (!(confidence > 0 && confidence < 1)) {
    return absl::InvalidArgumentError("change point: confidence not in (0,1)");
  }
  for (size_t i = 0; i < bins.size(); ++i) {
    if (bins[i].failures > bins[i].trials) {
      return absl::InvalidArgumentError(
          absl::StrCat("change point: bin ", i, " has failures > trials"));
    }
    *total_n += static_cast<double>(bins[i].trials);
    *total_k += static_cast<double>(bins[i].failures);
  }
  return absl::OkStatus();
}

// Evaluates every split s = 1 .. bins.size()-1: fills profile[s-1] (maximized
// log-likelihood) and log_post[s-1] (Jeffreys log marginal), and sets
// out->split and the two rates at the first maximiser. Returns the maximum.
double ScanSplits(const std::vector<CountBin>& bins, double total_n,
                  double total_k, std::vector<double>& profile,
                  std::vector<double>& log_post, ChangePointEstimate* out) {
  double best = -INFINITY;
  double n1 = 0, k1 = 0;
  for (size_t s = 1; s <= profile.size(); ++s) {
    n1 += static_cast<double>(bins[s - 1].trials);
    k1 += static_cast<double>(bins[s - 1].failures);
    const double n2 = total_n - n1, k2 = total_k - k1;
    const double ll = MaxLogLik(k1, n1) + MaxLogLik(k2, n2);
    profile[s - 1] = ll;
    log_post[s - 1] = LogJeffreysMarginal(k1, n1) + LogJeffreysMarginal(k2, n2);
    if (ll > best) {
      best = ll;
      out->split = s;
      out->rate_before = n1 > 0 ? k1 / n1 : 0;
      out->rate_after = n2 > 0 ? k2 / n2 : 0;
    }
  }
  return best;
}

// Widens [*lo, *hi] to the hull of the profile-likelihood set
// {s : 2 (best - ll(s)) <= chi2_1 quantile}. The maximiser is in it by
// construction.
void JoinProfileSet(const std::vector<double>& profile, double best,
                    double confidence, size_t* lo, size_t* hi) {
  const boost::math::chi_squared_distribution<double, internal::NoThrowPolicy>
      chi2(1.0);
  const double cut = boost::math::quantile(chi2, confidence);
  // Rounding: ties within 1e-9 of the cut count as inside.
  for (size_t s = 1; s <= profile.size(); ++s) {
    if (2 * (best - profile[s - 1]) <= cut + 1e-9) {
      *lo = std::min(*lo, s);
      *hi = std::max(*hi, s);
    }
  }
}

// The change point is not a regular parameter: when failures are rare the
// profile set alone under-covers (past the last failure of a fault at rate
// p it reaches only ~1.92/p probes, which holds the true end 85 % of the
// time). Its hull is therefore joined with the Jeffreys posterior's
// highest-density set, which spans ~3.7/p there: this widens [*lo, *hi] to
// cover that set.
void JoinPosteriorSet(const std::vector<double>& log_post, double confidence,
                      size_t* lo, size_t* hi) {
  const size_t splits = log_post.size();
  const double top = *std::max_element(log_post.begin(), log_post.end());
  std::vector<double> weight(splits);
  double mass = 0;
  for (size_t i = 0; i < splits; ++i) {
    weight[i] = std::exp(log_post[i] - top);
    mass += weight[i];
  }
  std::vector<size_t> order(splits);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return weight[a] > weight[b]; });
  // At the two-sided level (1 + confidence) / 2: baseline failures after a
  // fix can pull the estimate late, and simulation showed the 95 % set then
  // held the true fix in under 90 % of runs.
  const double level = (1 + confidence) / 2;
  double covered = 0;
  for (size_t i : order) {
    covered += weight[i];
    *lo = std::min(*lo, i + 1);
    *hi = std::max(*hi, i + 1);
    if (covered >= level * mass) break;
  }
}

// Sets out->rule_upper_trials from the trials before out->split, when the
// rate before the split is positive.
void SetRuleUpperTrials(const std::vector<CountBin>& bins, double confidence,
                        ChangePointEstimate* out) {
  double trials_before = 0;
  for (size_t i = 0; i < out->split; ++i) {
    trials_before += static_cast<double>(bins[i].trials);
  }
  if (out->rate_before > 0) {
    out->rule_upper_trials =
        trials_before - std::log1p(-confidence) / out->rate_before;
  }
}

}  // namespace

absl::StatusOr<ChangePointEstimate> DateSingleChangePoint(
    const std::vector<CountBin>& bins, double confidence) {
  double total_n = 0, total_k = 0;
  absl::Status valid = ValidateAndTotal(bins, confidence, &total_n, &total_k);
  if (!valid.ok()) return valid;
  const size_t splits = bins.size() - 1;  // split = 1 .. size-1.
  std::vector<double> profile(splits), log_post(splits);
  ChangePointEstimate out;
  out.confidence = confidence;
  const double best =
      ScanSplits(bins, total_n, total_k, profile, log_post, &out);
  out.lr_statistic = 2 * (best - MaxLogLik(total_k, total_n));

  size_t lo = out.split, hi = out.split;
  JoinProfileSet(profile, best, confidence, &lo, &hi);
  JoinPosteriorSet(log_post, confidence, &lo, &hi);
  out.interval_lower = lo;
  out.interval_upper = hi;
  SetRuleUpperTrials(bins, confidence, &out);
  return out;
}

}  // namespace fleetcanary::analysis
