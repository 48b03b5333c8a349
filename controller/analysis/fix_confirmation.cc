#include "controller/analysis/fix_confirmation.h"

#include <algorithm>
#include <cmath>

#include "controller/analysis/intervals.h"

namespace fleetcanary::analysis {

FixConfirmation::FixConfirmation(double p_bad, double p_good, double alpha)
    : p_bad_(p_bad),
      p_good_(p_good),
      alpha_(alpha),
      log_fail_(std::log(p_good / p_bad)),
      log_clean_(std::log1p(-p_good) - std::log1p(-p_bad)),
      log_threshold_(-std::log(alpha)) {}

void FixConfirmation::Observe(uint64_t trials, uint64_t failures) {
  trials_ += trials;
  failures_ += failures;
  log_lr_ += static_cast<double>(failures) * log_fail_ +
             static_cast<double>(trials - failures) * log_clean_;
  if (log_lr_ >= log_threshold_) confirmed_ = true;
}

double FixConfirmation::UpperBound() const {
  return ClopperPearsonUpperBound(failures_, trials_, 1 - alpha_);
}

uint64_t FixConfirmation::RemainingCleanProbes() const {
  if (confirmed_) return 0;
  return static_cast<uint64_t>(
      std::ceil((log_threshold_ - log_lr_) / log_clean_));
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
