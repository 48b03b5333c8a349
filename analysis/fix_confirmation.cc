#include "analysis/fix_confirmation.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "analysis/intervals.h"

namespace fleetcanary::analysis {

FixConfirmation::FixConfirmation(double p_bad, double p_good, double alpha)
    : FixConfirmation(p_bad, std::vector<double>{p_good}, alpha) {}

FixConfirmation::FixConfirmation(double p_bad,
                                 const std::vector<double>& p_goods,
                                 double alpha)
    : p_bad_(p_bad),
      p_good_(*std::min_element(p_goods.begin(), p_goods.end())),
      alpha_(alpha),
      p_goods_(p_goods),
      log_threshold_(-std::log(alpha)) {
  for (double g : p_goods) {
    log_fail_.push_back(std::log(g / p_bad));
    log_clean_.push_back(std::log1p(-g) - std::log1p(-p_bad));
    llr_.push_back(0);
  }
}

void FixConfirmation::Recompute() {
  // log of the equal-weight mean of exp(llr_j), computed stably.
  const double top = *std::max_element(llr_.begin(), llr_.end());
  double sum = 0;
  for (double l : llr_) sum += std::exp(l - top);
  log_lr_ = top + std::log(sum / static_cast<double>(llr_.size()));
}

void FixConfirmation::Observe(uint64_t trials, uint64_t failures) {
  trials_ += trials;
  failures_ += failures;
  for (size_t j = 0; j < llr_.size(); ++j) {
    llr_[j] += static_cast<double>(failures) * log_fail_[j] +
               static_cast<double>(trials - failures) * log_clean_[j];
  }
  Recompute();
  if (log_lr_ >= log_threshold_) confirmed_ = true;
}

double FixConfirmation::UpperBound() const {
  return ClopperPearsonUpperBound(failures_, trials_, 1 - alpha_);
}

uint64_t FixConfirmation::RemainingCleanProbes() const {
  if (confirmed_) return 0;
  if (llr_.size() == 1) {
    return static_cast<uint64_t>(
        std::ceil((log_threshold_ - log_lr_) / log_clean_[0]));
  }
  // One component reaching ln(J / alpha) makes the mixture reach ln(1/alpha).
  const double need =
      log_threshold_ + std::log(static_cast<double>(llr_.size()));
  double best = INFINITY;
  for (size_t j = 0; j < llr_.size(); ++j) {
    best = std::min(best, std::ceil((need - llr_[j]) / log_clean_[j]));
  }
  return static_cast<uint64_t>(std::max(0.0, best));
}

FixConfirmation::State FixConfirmation::state() const {
  return {p_bad_, p_goods_, alpha_, llr_, trials_, failures_, confirmed_};
}

absl::StatusOr<FixConfirmation> FixConfirmation::FromState(const State& s) {
  if (!(s.p_bad > 0 && s.p_bad < 1 && s.alpha > 0 && s.alpha < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fix test needs 0 < p_bad < 1, 0 < alpha < 1; got p_bad=", s.p_bad,
        " alpha=", s.alpha));
  }
  if (s.p_goods.empty() || s.p_goods.size() != s.llr.size()) {
    return absl::InvalidArgumentError(
        "fix test needs one log LR per alternative, and at least one");
  }
  if (s.failures > s.trials) {
    return absl::InvalidArgumentError("fix test: failures > trials");
  }
  for (double g : s.p_goods) {
    if (!(g > 0 && g < s.p_bad)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fix test needs 0 < p_good < p_bad; got p_good=", g));
    }
  }
  FixConfirmation f(s.p_bad, s.p_goods, s.alpha);
  const double k = static_cast<double>(s.failures);
  const double clean = static_cast<double>(s.trials - s.failures);
  for (size_t j = 0; j < s.llr.size(); ++j) {
    // Observe adds the same terms batch by batch; only rounding may differ.
    const double fail_term = k * f.log_fail_[j];
    const double clean_term = clean * f.log_clean_[j];
    const double tolerance =
        1e-6 * (std::fabs(fail_term) + std::fabs(clean_term)) + 1e-9;
    if (!(f.log_clean_[j] > 0) || !std::isfinite(s.llr[j]) ||
        !(std::fabs(s.llr[j] - (fail_term + clean_term)) <= tolerance)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fix test: log LR ", s.llr[j], " of alternative ", j,
                       " does not match ", s.failures, " failures in ",
                       s.trials, " trials"));
    }
  }
  // RemainingCleanProbes must stay representable.
  const double need =
      f.log_threshold_ + std::log(static_cast<double>(s.llr.size()));
  for (size_t j = 0; j < s.llr.size(); ++j) {
    if (!((need - s.llr[j]) / f.log_clean_[j] < 1e18)) {
      return absl::InvalidArgumentError(
          "fix test: too many failures to ever confirm");
    }
  }
  f.llr_ = s.llr;
  f.trials_ = s.trials;
  f.failures_ = s.failures;
  f.confirmed_ = s.confirmed;
  f.Recompute();
  return f;
}

uint64_t FixConfirmation::CleanProbesNeeded(double p_bad, double p_good,
                                            double alpha, uint64_t failures) {
  const double log_clean = std::log1p(-p_good) - std::log1p(-p_bad);
  const double need = -std::log(alpha) +
                      static_cast<double>(failures) * std::log(p_bad / p_good);
  return static_cast<uint64_t>(std::ceil(need / log_clean));
}

double FixConfirmation::FailureCostInCleanProbes(double p_bad, double p_good) {
  return std::log(p_bad / p_good) / (std::log1p(-p_good) - std::log1p(-p_bad));
}

}  // namespace fleetcanary::analysis
