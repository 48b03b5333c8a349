// Regression detection on one Bernoulli stream (docs/statistics.md §1, §5):
// the Bernoulli CUSUM, its threshold from a false-alarm budget, the hard-down
// rule, and Wald's SPRT.
//
// Pure computation: no I/O, no clocks, no globals. The classes are
// value types; not thread-safe (one owner each).
#ifndef FLEETCANARY_ANALYSIS_CUSUM_H_
#define FLEETCANARY_ANALYSIS_CUSUM_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace fleetcanary::analysis {

// Page's CUSUM for a Bernoulli rate, H0: p = p0 vs H1: p = p1 > p0.
//   a = ln(p1/p0), b = ln((1-p0)/(1-p1)),
//   S_t = max(0, S_{t-1} + X_t a - (1 - X_t) b); alarm when S_t >= h.
// After an alarm S is reset to 0. The onset estimate is the last step at
// which S was 0 (the change happened right after it).
//
// Example (docs/statistics.md §1):
//   BernoulliCusum c(0.001, 0.01, 4.6);
//   for (uint64_t t = 1; t <= 1500; ++t) if (c.Observe(1, err(t))) ...
//   // alarms at t = 1100 with last_zero_step() == 899.
class BernoulliCusum {
 public:
  // REQUIRES: 0 < p0 < p1 < 1, h > 0.
  BernoulliCusum(double p0, double p1, double h);

  // Applies `trials` probes with `failures` among them. A batch of several
  // trials is applied as one grouped (binomial) step with log-likelihood ratio
  // k a - (n - k) b; for n = 1 this is exactly the Bernoulli CUSUM, and for
  // n > 1 it alarms no more often (the reflection at 0 happens less often).
  // Returns true when this step raised an alarm (S was then reset).
  // REQUIRES: failures <= trials.
  bool Observe(uint64_t trials, uint64_t failures);

  double statistic() const { return s_; }
  double a() const { return a_; }
  double b() const { return b_; }
  double h() const { return h_; }
  double p0() const { return p0_; }
  double p1() const { return p1_; }
  // Trials observed so far.
  uint64_t steps() const { return steps_; }
  // The last step (trial count) at which S was 0; 0 before any trial.
  uint64_t last_zero_step() const { return last_zero_step_; }
  // Statistic reached by the last alarming step (before its reset), and the
  // last_zero_step() at that alarm (the onset estimate).
  double alarm_statistic() const { return alarm_statistic_; }
  uint64_t alarm_onset_step() const { return alarm_onset_step_; }

  // Everything Observe depends on, for saving a detector and restoring it
  // exactly (VerdictEngine::SaveState / Restore).
  struct State {
    double p0 = 0, p1 = 0, h = 0;
    double statistic = 0;
    uint64_t steps = 0;
    uint64_t last_zero_step = 0;
    double alarm_statistic = 0;
    uint64_t alarm_onset_step = 0;
  };
  State state() const;
  // The CUSUM that continues exactly as the one whose state() `s` is.
  // Errors: INVALID_ARGUMENT when p0, p1, h break the constructor's REQUIRES,
  // a statistic is negative or not finite, or a step is after `steps`.
  static absl::StatusOr<BernoulliCusum> FromState(const State& s);

 private:
  double p0_, p1_, a_, b_, h_;
  double s_ = 0;
  uint64_t steps_ = 0;
  uint64_t last_zero_step_ = 0;
  double alarm_statistic_ = 0;
  uint64_t alarm_onset_step_ = 0;
};

// Zero-state average run length, in probes, of BernoulliCusum(p0, p1, h)
// when the true rate is `p_true` (ARL0 when p_true == p0).
//
// Method: the CUSUM is discretized on a lattice with unit u = b/k (k chosen so
// that m = round(a/u) >= 200, so a is represented within 0.25 %); between
// failures S falls deterministically by k units per clean probe. The run is a
// renewal process: from S = 0 one waits a Geometric(p_true) time for a failure
// (state m), after which S either returns to 0 or crosses H = ceil(h/u).
// P(alarm before returning to 0) and the expected cycle length solve fixed-
// point equations over the post-failure states, each evaluated in O(H) per
// sweep with a running geometric sum; ARL = E[cycle] / P(alarm in a cycle).
// Checked against simulation in tests/analysis.
// Errors: INVALID_ARGUMENT for parameters outside 0 < p0 < p1 < 1, h > 0,
// 0 < p_true < 1; RESOURCE_EXHAUSTED if the lattice would be too large.
absl::StatusOr<double> CusumAverageRunLength(double p0, double p1, double h,
                                             double p_true);

// Smallest h (to 1e-4 relative) whose ARL0 (p_true = p0) is >= target_arl0, by
// bisection on CusumAverageRunLength. Errors as above, and INVALID_ARGUMENT
// when target_arl0 < 1.
absl::StatusOr<double> CusumThresholdForArl0(double p0, double p1,
                                             double target_arl0);

// Smallest h whose ARL, when the true in-control rate is `p_in_control`
// rather than the design rate p0, is >= target_arl0 (same bisection). Used
// when p0 is an estimate: h is budgeted against a plausible higher true rate.
// Errors as above; INVALID_ARGUMENT when p_in_control is so far above p0 that
// the CUSUM drifts upwards (no h reaches the target).
absl::StatusOr<double> CusumThresholdForArl0At(double p0, double p1,
                                               double p_in_control,
                                               double target_arl0);

// Per-stream ARL0 that keeps a fleet within its false-alarm budget:
// streams * probes_per_stream_per_month / false_alarms_per_month.
double TargetArl0(double streams, double probes_per_stream_per_month,
                  double false_alarms_per_month);

// The hard-down rule for one region (and target, mode): the region is down
// while at least `min_agents` agents each have at least `consecutive`
// consecutive failures as their latest outcomes.
class HardDownRule {
 public:
  HardDownRule(uint32_t consecutive, uint32_t min_agents);

  // Records one outcome of `agent`. Returns Down() afterwards.
  bool Observe(const std::string& agent, bool failed);
  bool Down() const { return agents_in_run_ >= min_agents_; }
  // Number of agents whose current failure run is >= consecutive.
  uint32_t agents_in_run() const { return agents_in_run_; }
  uint32_t consecutive() const { return consecutive_; }

  // Agent -> current failure run, for saving the rule.
  const std::map<std::string, uint64_t>& runs() const { return runs_; }
  // The rule that continues exactly as one constructed with `consecutive`
  // and `min_agents` whose runs() are `runs`.
  static HardDownRule FromRuns(uint32_t consecutive, uint32_t min_agents,
                               std::map<std::string, uint64_t> runs);

 private:
  uint32_t consecutive_;
  uint32_t min_agents_;
  uint32_t agents_in_run_ = 0;
  std::map<std::string, uint64_t> runs_;  // Agent -> current failure run.
};

// Wald's sequential probability ratio test for a Bernoulli rate,
// H0: p = p0 vs H1: p = p1, with error levels alpha (false alarm) and beta
// (miss): ln A = ln((1-beta)/alpha), ln B = ln(beta/(1-alpha)).
// Example: WaldSprt(0.001, 0.01, 0.01, 0.01).Decide(3, 2) == kRejectH0.
class WaldSprt {
 public:
  enum class Decision { kContinue, kAcceptH0, kRejectH0 };

  // REQUIRES: 0 < p0 < p1 < 1; 0 < alpha, beta < 1.
  WaldSprt(double p0, double p1, double alpha, double beta);

  // Log-likelihood ratio of `failures` in `trials` (p1 against p0).
  double LogLikelihoodRatio(uint64_t trials, uint64_t failures) const;
  // The decision after `trials` probes with `failures`.
  Decision Decide(uint64_t trials, uint64_t failures) const;
  // Accumulates and returns the decision on everything seen so far.
  Decision Observe(uint64_t trials, uint64_t failures);

  double log_a() const { return log_a_; }
  double log_b() const { return log_b_; }
  double llr() const { return llr_; }

 private:
  double a_, b_, log_a_, log_b_;
  double llr_ = 0;
};

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_CUSUM_H_
