// Any-time-valid fix confirmation (docs/statistics.md §4). From a start
// declared in advance (a deploy time, the moment confirmation was requested, or
// a RECOVERING entry decided by a stopping rule - never an estimate such as the
// last pre-fix failure), test H0: p >= p_bad against H1: p = p_good with the
// likelihood ratio
//   LR_n = (p_good/p_bad)^k ((1-p_good)/(1-p_bad))^(n-k)
// and confirm when LR >= 1/alpha. Under H0 LR is a non-negative
// supermartingale, so by Ville's inequality the chance of ever confirming a
// fix that is not there is at most alpha, however long one watches.
// With p_bad = 0.001, p_good = 1e-5, alpha = 0.05: 3025 clean probes confirm,
// and each failure costs 4649 more.
//
// Mixture form: with several alternatives p_good_1..J (all < p_bad) the
// statistic is the equal-weight mixture LR = (1/J) sum_j LR_j. Each LR_j is a
// non-negative supermartingale under every p >= p_bad, so the mixture is too
// and Ville's bound still holds. A single p_good = p_bad/100 only gains
// evidence while the true rate is below ~p_bad/4.6; the verdict engine mixes
// p_bad/100, p_bad/10 and p_bad/2 so that a stream back at a non-zero
// baseline (p_bad = 2 x baseline) is confirmed too, just more slowly.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_FIX_CONFIRMATION_H_
#define FLEETCANARY_ANALYSIS_FIX_CONFIRMATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace fleetcanary::analysis {

class FixConfirmation {
 public:
  // REQUIRES: 0 < p_good < p_bad < 1, 0 < alpha < 1.
  FixConfirmation(double p_bad, double p_good, double alpha);
  // Mixture of the alternatives `p_goods` (see above). REQUIRES: non-empty,
  // each 0 < p_good < p_bad.
  FixConfirmation(double p_bad, const std::vector<double>& p_goods,
                  double alpha);

  // Adds probes observed at or after the start. Once LR has reached 1/alpha
  // the fix stays confirmed (the first crossing is the decision).
  void Observe(uint64_t trials, uint64_t failures);

  bool Confirmed() const { return confirmed_; }
  // Log of the (mixture) likelihood ratio.
  double log_lr() const { return log_lr_; }
  // ln(1/alpha).
  double log_threshold() const { return log_threshold_; }
  uint64_t trials() const { return trials_; }
  uint64_t failures() const { return failures_; }
  double p_bad() const { return p_bad_; }
  // The smallest alternative.
  double p_good() const { return p_good_; }
  double alpha() const { return alpha_; }
  // One-sided Clopper-Pearson upper bound at 1 - alpha on the rate since the
  // start.
  double UpperBound() const;
  // Clean probes still needed to confirm if no further failure occurs (0 once
  // confirmed; for a mixture, those after which one component alone
  // suffices, an upper bound).
  uint64_t RemainingCleanProbes() const;

  // Clean probes needed from the start when `failures` failures occur among
  // them: ceil((ln(1/alpha) + failures ln(p_bad/p_good)) /
  // ln((1-p_good)/(1-p_bad))).
  static uint64_t CleanProbesNeeded(double p_bad, double p_good, double alpha,
                                    uint64_t failures);
  // Clean probes that one failure costs: ln(p_bad/p_good) /
  // ln((1-p_good)/(1-p_bad)).
  static double FailureCostInCleanProbes(double p_bad, double p_good);

  // Everything Observe depends on, for saving a detector and restoring it
  // exactly (VerdictEngine::SaveState / Restore).
  struct State {
    double p_bad = 0;
    std::vector<double> p_goods;
    double alpha = 0;
    std::vector<double> llr;  // Per alternative, in p_goods order.
    uint64_t trials = 0;
    uint64_t failures = 0;
    bool confirmed = false;
  };
  State state() const;
  // The test that continues exactly as the one whose state() `s` is.
  // Errors: INVALID_ARGUMENT when the rates break the constructor's
  // REQUIRES, failures > trials, or `llr` does not match the alternatives
  // and the counts (beyond rounding).
  static absl::StatusOr<FixConfirmation> FromState(const State& s);

 private:
  void Recompute();

  double p_bad_, p_good_, alpha_;
  std::vector<double> p_goods_;
  double log_threshold_;
  // Per alternative: log LR increments and the running log LR.
  std::vector<double> log_fail_, log_clean_, llr_;
  double log_lr_ = 0;
  uint64_t trials_ = 0;
  uint64_t failures_ = 0;
  bool confirmed_ = false;
};

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_FIX_CONFIRMATION_H_
