// REGRESSION -> RECOVERING -> FIX_CONFIRMED for one episode of one detector,
// on the failure rate the verdict is about ("Recovery" in verdict_engine.h):
// waits for a start point (a declared fix, else a reverse CUSUM deciding the
// rate is back), then runs the fix-confirmation test of fix_confirmation.h
// with rates fixed at that start. Keeps the episode's bins to date the
// change. Internal to the verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_RECOVERY_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_RECOVERY_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/detectors/common.h"
#include "analysis/fix_confirmation.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis::detectors {

class Recovery {
 public:
  enum class Event { kNone, kRecovering, kConfirmed };

  // Starts an episode whose onset is `onset` and alarm `alarm`.
  // `baseline_p0` is the pre-incident in-control rate the fix must return
  // near; `p0`/`p1` tune the reverse CUSUM (back to p0 from p1), which only
  // runs when `reverse_cusum`.
  void Start(const v1::DetectionConfig& cfg, double baseline_p0, double p0,
             double p1, absl::Time onset, absl::Time alarm, bool reverse_cusum);

  // Back to REGRESSION: the test and the reverse CUSUM start over. Each
  // relapse of the episode doubles the reverse CUSUM's threshold, so a rate
  // hovering between "back" and "still bad" cannot cycle RECOVERING ->
  // REGRESSION (one alarm each) for long.
  void Relapse();

  // Enters RECOVERING at `t` (probes after it count). The test's rates are
  // fixed here, before any of its probes are seen.
  void EnterRecovering(absl::Time t);

  // Adds counts seen before the alarm to the episode (for dating only).
  void AddHistory(absl::Time t, uint64_t n, uint64_t k);

  // `n` probes with `k` failures at `t`: adds them to the episode, then
  // either looks for the start (the declared fix when usable, once per
  // episode, else the reverse CUSUM) or feeds the running test. Returns what
  // happened: kRecovering when the test started, kConfirmed when it passed.
  Event Observe(absl::Time t, uint64_t n, uint64_t k,
                const std::optional<absl::Time>& declared_fix);

  // Evidence of the fix test (and the dated change when `date`).
  // REQUIRES: Start() or Load() ran.
  void FillEvidence(v1::Evidence* ev, bool date) const;

  // Clean probes FIX_CONFIRMED holds before HEALTHY: as many as the
  // confirmation took.
  uint64_t hold_trials() const {
    return std::max<uint64_t>(1, fix_ ? fix_->trials() : 0);
  }
  double p_bad() const { return p_bad_; }
  double baseline_p0() const { return baseline_p0_; }
  // Failures per trial from the onset to the last failure before the test.
  double incident_rate() const;
  uint64_t episode_trials() const { return episode_trials_; }
  uint64_t episode_failures() const { return episode_failures_; }
  bool recovering() const { return recovering_; }

  void Save(v1::RecoveryState* out) const;
  // `need_fix`: the detector is in an episode, so the fix test must exist.
  // Errors: INVALID_ARGUMENT (state_io.h).
  static absl::StatusOr<Recovery> Load(const v1::RecoveryState& in,
                                       bool need_fix, absl::string_view where);

 private:
  // p_bad = max(floor, 2 x baseline p0), capped at half the incident rate;
  // p_good = the configured one when below p_bad, else p_bad/100.
  void ChooseRates();

  // The fix test's alternatives: the configured p_good alone, else the
  // mixture p_bad/100, p_bad/10, p_bad/2 (fix_confirmation.h).
  std::vector<double> Alternatives() const;

  double p0_ = 1e-4, p1_ = 1e-3, p_bad_ = 1e-3, p_good_ = 1e-5;
  double baseline_p0_ = 1e-4, p_bad_floor_ = 1e-4, cfg_p_good_ = 0;
  uint64_t incident_trials_ = 0, incident_failures_ = 0;
  bool declared_used_ = false;
  int relapses_ = 0;
  double fix_alpha_ = 0.05, reverse_threshold_ = 4.6;
  double reverse_a_ = 0, reverse_b_ = 0, reverse_ = 0;
  bool reverse_cusum_ = true;
  bool recovering_ = false;
  absl::Time onset_, alarm_, start_;
  std::optional<FixConfirmation> fix_;
  std::vector<TimedBin> bins_;
  uint64_t episode_trials_ = 0, episode_failures_ = 0;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_RECOVERY_H_
