#include "controller/analysis/fix_confirmation.h"

#include <algorithm>
#include <cmath>

#include "controller/analysis/intervals.h"

namespace fleetcanary::analysis {

FixConfirmation::FixConfirmation(double p_bad, double p_good, double alpha)
    : FixConfirmation(p_bad, std::vector<double>{p_good}, alpha) {}

FixConfirmation::FixConfirmation(double p_bad,
                                 const std::vector<double>& p_goods,
                                 double alpha)
    : p_bad_(p_bad),
      p_good_(*std::min_element(p_goods.begin(), p_goods.end())),
      alpha_(alpha),
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
