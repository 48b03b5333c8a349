#include "controller/analysis/changepoint.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

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

}  // namespace

absl::StatusOr<ChangePointEstimate> DateSingleChangePoint(
    const std::vector<CountBin>& bins, double confidence) {
  if (bins.size() < 2) {
    return absl::InvalidArgumentError("change point: needs at least 2 bins");
  }
  if (!(confidence > 0 && confidence < 1)) {
    return absl::InvalidArgumentError("change point: confidence not in (0,1)");
  }
  double total_n = 0, total_k = 0;
  for (size_t i = 0; i < bins.size(); ++i) {
    if (bins[i].failures > bins[i].trials) {
      return absl::InvalidArgumentError(
          absl::StrCat("change point: bin ", i, " has failures > trials"));
    }
    total_n += static_cast<double>(bins[i].trials);
    total_k += static_cast<double>(bins[i].failures);
  }
  const size_t splits = bins.size() - 1;  // split = 1 .. size-1.
  std::vector<double> log_post(splits);
  ChangePointEstimate out;
  out.confidence = confidence;
  double best = -INFINITY;
  double n1 = 0, k1 = 0;
  for (size_t s = 1; s <= splits; ++s) {
    n1 += static_cast<double>(bins[s - 1].trials);
    k1 += static_cast<double>(bins[s - 1].failures);
    const double n2 = total_n - n1, k2 = total_k - k1;
    const double ll = MaxLogLik(k1, n1) + MaxLogLik(k2, n2);
    if (ll > best) {
      best = ll;
      out.split = s;
      out.rate_before = n1 > 0 ? k1 / n1 : 0;
      out.rate_after = n2 > 0 ? k2 / n2 : 0;
    }
    log_post[s - 1] = LogJeffreysMarginal(k1, n1) + LogJeffreysMarginal(k2, n2);
  }
  out.lr_statistic = 2 * (best - MaxLogLik(total_k, total_n));

  // Highest-posterior set of splits, reported as its hull.
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
  double covered = 0;
  size_t lo = order[0], hi = order[0];
  for (size_t i : order) {
    covered += weight[i];
    lo = std::min(lo, i);
    hi = std::max(hi, i);
    if (covered >= confidence * mass) break;
  }
  out.interval_lower = lo + 1;
  out.interval_upper = hi + 1;

  double trials_before = 0;
  for (size_t i = 0; i < out.split; ++i) {
    trials_before += static_cast<double>(bins[i].trials);
  }
  if (out.rate_before > 0) {
    out.rule_upper_trials =
        trials_before - std::log1p(-confidence) / out.rate_before;
  }
  return out;
}

}  // namespace fleetcanary::analysis
