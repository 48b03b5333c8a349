#include "analysis/cusum.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fleetcanary::analysis {

BernoulliCusum::BernoulliCusum(double p0, double p1, double h)
    : p0_(p0),
      p1_(p1),
      a_(std::log(p1 / p0)),
      b_(std::log1p(-p0) - std::log1p(-p1)),
      h_(h) {}

bool BernoulliCusum::Observe(uint64_t trials, uint64_t failures) {
  if (trials == 0) return false;
  const double clean = static_cast<double>(trials - failures);
  s_ = std::max(0.0, s_ + static_cast<double>(failures) * a_ - clean * b_);
  steps_ += trials;
  if (s_ >= h_) {
    alarm_statistic_ = s_;
    alarm_onset_step_ = last_zero_step_;
    s_ = 0;
    last_zero_step_ = steps_;
    return true;
  }
  if (s_ == 0) last_zero_step_ = steps_;
  return false;
}

BernoulliCusum::State BernoulliCusum::state() const {
  return {p0_,
          p1_,
          h_,
          s_,
          steps_,
          last_zero_step_,
          alarm_statistic_,
          alarm_onset_step_};
}

absl::StatusOr<BernoulliCusum> BernoulliCusum::FromState(const State& s) {
  if (!(s.p0 > 0 && s.p0 < s.p1 && s.p1 < 1 && s.h > 0 && std::isfinite(s.h))) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUSUM needs 0 < p0 < p1 < 1, 0 < h < inf; got p0=", s.p0,
                     " p1=", s.p1, " h=", s.h));
  }
  if (!(s.statistic >= 0 && std::isfinite(s.statistic)) ||
      !(s.alarm_statistic >= 0 && std::isfinite(s.alarm_statistic))) {
    return absl::InvalidArgumentError(
        "CUSUM statistics must be finite and >= 0");
  }
  if (s.last_zero_step > s.steps || s.alarm_onset_step > s.steps) {
    return absl::InvalidArgumentError(
        "CUSUM last_zero_step and alarm_onset_step must be <= steps");
  }
  BernoulliCusum c(s.p0, s.p1, s.h);
  c.s_ = s.statistic;
  c.steps_ = s.steps;
  c.last_zero_step_ = s.last_zero_step;
  c.alarm_statistic_ = s.alarm_statistic;
  c.alarm_onset_step_ = s.alarm_onset_step;
  return c;
}

absl::StatusOr<double> CusumAverageRunLength(double p0, double p1, double h,
                                             double p_true) {
  if (!(p0 > 0 && p0 < p1 && p1 < 1 && h > 0 && p_true > 0 && p_true < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUSUM ARL needs 0 < p0 < p1 < 1, h > 0, 0 < p < 1; got p0=", p0,
        " p1=", p1, " h=", h, " p=", p_true));
  }
  const double a = std::log(p1 / p0);
  const double b = std::log1p(-p0) - std::log1p(-p1);
  // Lattice unit u = b / k with m = a / u >= 200.
  const int64_t k = std::max<int64_t>(1, std::ceil(200 * b / a));
  const double unit = b / static_cast<double>(k);
  const int64_t m = std::llround(a / unit);
  const int64_t big_h =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(h / unit - 1e-9)));
  if (big_h > 20'000'000) {
    return absl::ResourceExhaustedError(
        absl::StrCat("CUSUM ARL lattice too large (", big_h, " states)"));
  }
  const double p = p_true;
  const double q = 1 - p;
  const double log_q = std::log1p(-p);
  if (m >= big_h) return 1 / p;  // The first failure alarms.

  // A[s], T[s] for post-failure states s in [1, H-1].
  std::vector<double> alarm(big_h, 0.0), length(big_h, 0.0);
  std::vector<double> next_alarm(big_h), next_length(big_h);
  std::vector<double> wa(big_h, 0.0), wt(big_h, 0.0);
  for (int iter = 0; iter < 200000; ++iter) {
    double change = 0;
    for (int64_t s = 1; s < big_h; ++s) {
      const int64_t u = s + m;
      const double va = u >= big_h ? 1.0 : alarm[u];
      const double vt = u >= big_h ? 0.0 : length[u];
      const double prev_a = s - k >= 1 ? wa[s - k] : 0.0;
      const double prev_t = s - k >= 1 ? wt[s - k] : 0.0;
      wa[s] = va + q * prev_a;
      wt[s] = vt + q * prev_t;
      const double zeros = std::ceil(static_cast<double>(s) / k);
      next_alarm[s] = p * wa[s];
      next_length[s] = -std::expm1(zeros * log_q) / p + p * wt[s];
      change = std::max(change, std::fabs(next_alarm[s] - alarm[s]) /
                                    std::max(next_alarm[s], 1e-300));
      change = std::max(change, std::fabs(next_length[s] - length[s]) /
                                    std::max(next_length[s], 1e-300));
    }
    alarm.swap(next_alarm);
    length.swap(next_length);
    if (change < 1e-9) break;
  }
  const double cycle = 1 / p + length[m];
  return cycle / alarm[m];
}

absl::StatusOr<double> CusumThresholdForArl0(double p0, double p1,
                                             double target_arl0) {
  return CusumThresholdForArl0At(p0, p1, p0, target_arl0);
}

absl::StatusOr<double> CusumThresholdForArl0At(double p0, double p1,
                                               double p_in_control,
                                               double target_arl0) {
  if (!(p_in_control > 0 && p_in_control < 1) ||
      !(p0 > 0 && p1 > p0 && p1 < 1) ||
      p_in_control * std::log(p1 / p0) -
              (1 - p_in_control) * (std::log1p(-p0) - std::log1p(-p1)) >=
          0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no threshold: the CUSUM(", p0, ", ", p1,
                     ") drifts upwards at ", p_in_control));
  }
  if (!(target_arl0 >= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target ARL0 must be >= 1, got ", target_arl0));
  }
  double lo = 1e-6;
  double hi = 1.0;
  for (;;) {
    absl::StatusOr<double> arl =
        CusumAverageRunLength(p0, p1, hi, p_in_control);
    if (!arl.ok()) return arl.status();
    if (*arl >= target_arl0) break;
    lo = hi;
    hi *= 2;
    if (hi > 1e4) {
      return absl::InvalidArgumentError("target ARL0 unreachable");
    }
  }
  while (hi - lo > 1e-4 * hi) {
    const double mid = (lo + hi) / 2;
    absl::StatusOr<double> arl =
        CusumAverageRunLength(p0, p1, mid, p_in_control);
    if (!arl.ok()) return arl.status();
    (*arl >= target_arl0 ? hi : lo) = mid;
  }
  return hi;
}

double TargetArl0(double streams, double probes_per_stream_per_month,
                  double false_alarms_per_month) {
  return std::max(1.0, streams) * probes_per_stream_per_month /
         false_alarms_per_month;
}

HardDownRule::HardDownRule(uint32_t consecutive, uint32_t min_agents)
    : consecutive_(std::max<uint32_t>(1, consecutive)),
      min_agents_(std::max<uint32_t>(1, min_agents)) {}

bool HardDownRule::Observe(const std::string& agent, bool failed) {
  uint64_t& run = runs_[agent];
  const bool was_in = run >= consecutive_;
  run = failed ? run + 1 : 0;
  const bool is_in = run >= consecutive_;
  if (is_in && !was_in) ++agents_in_run_;
  if (!is_in && was_in) --agents_in_run_;
  return Down();
}

HardDownRule HardDownRule::FromRuns(uint32_t consecutive, uint32_t min_agents,
                                    std::map<std::string, uint64_t> runs) {
  HardDownRule rule(consecutive, min_agents);
  rule.runs_ = std::move(runs);
  for (const auto& [agent, run] : rule.runs_) {
    if (run >= rule.consecutive_) ++rule.agents_in_run_;
  }
  return rule;
}

WaldSprt::WaldSprt(double p0, double p1, double alpha, double beta)
    : a_(std::log(p1 / p0)),
      b_(std::log1p(-p1) - std::log1p(-p0)),
      log_a_(std::log((1 - beta) / alpha)),
      log_b_(std::log(beta / (1 - alpha))) {}

double WaldSprt::LogLikelihoodRatio(uint64_t trials, uint64_t failures) const {
  return static_cast<double>(failures) * a_ +
         static_cast<double>(trials - failures) * b_;
}

WaldSprt::Decision WaldSprt::Decide(uint64_t trials, uint64_t failures) const {
  const double llr = LogLikelihoodRatio(trials, failures);
  if (llr >= log_a_) return Decision::kRejectH0;
  if (llr <= log_b_) return Decision::kAcceptH0;
  return Decision::kContinue;
}

WaldSprt::Decision WaldSprt::Observe(uint64_t trials, uint64_t failures) {
  llr_ += LogLikelihoodRatio(trials, failures);
  if (llr_ >= log_a_) return Decision::kRejectH0;
  if (llr_ <= log_b_) return Decision::kAcceptH0;
  return Decision::kContinue;
}

}  // namespace fleetcanary::analysis
