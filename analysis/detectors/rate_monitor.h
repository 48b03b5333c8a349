// A CUSUM-monitored failure rate with the full verdict life cycle: the
// STREAM_HEALTH detector (learns its baseline from clean history) and the
// PHANTOM_ERRORS detector (baseline fixed at p0_floor). The statistics are
// those of verdict_engine.h ("STREAM_HEALTH", "PHANTOM_ERRORS", "Budget",
// "Recovery"). Internal to the verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_RATE_MONITOR_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_RATE_MONITOR_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/cusum.h"
#include "analysis/detectors/common.h"
#include "analysis/detectors/context.h"
#include "analysis/detectors/lifecycle.h"
#include "analysis/detectors/recovery.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis::detectors {

class RateMonitor {
 public:
  // `kind`: STREAM_HEALTH or PHANTOM_ERRORS; `learn_baseline`: p0 from the
  // clean history (else p0_floor).
  RateMonitor(v1::VerdictKind kind, const Key& key, bool learn_baseline);

  const Lifecycle& life() const { return life_; }

  // `n` trials with `k` failures at `t` (non-decreasing): re-arms the CUSUM
  // when due, feeds it and the episode's recovery, and moves the verdict
  // (transitions go to ctx->out). `family_streams` is the number of streams
  // of this kind seen so far (the budget's share); `extra` is copied into
  // every evidence this step produces. n == 0 is ignored.
  void Observe(Context* ctx, int family_streams, absl::Time t, uint64_t n,
               uint64_t k, const v1::Evidence& extra);

  void Save(v1::RateMonitorState* out) const;
  // `kind`: STREAM_HEALTH (learns its baseline) or PHANTOM_ERRORS.
  // Errors: INVALID_ARGUMENT (state_io.h).
  static absl::StatusOr<RateMonitor> Load(const v1::RateMonitorState& in,
                                          v1::VerdictKind kind,
                                          absl::string_view where);

 private:
  // Records the step in the history, re-arms the CUSUM when due (only at
  // S = 0 while HEALTHY) and feeds it. Returns whether it alarmed.
  bool Feed(Context* ctx, int family_streams, absl::Time t, uint64_t n,
            uint64_t k);
  // Clean history: probes seen in `state` outside episodes join the baseline
  // once the CUSUM is back at 0 (a run that ends in an alarm never does).
  void LearnBaseline(v1::VerdictState state, bool alarm, uint64_t n,
                     uint64_t k);
  // Moves the verdict from `state` after a step (`alarm` from Feed).
  void Transition(Context* ctx, v1::VerdictState state, bool alarm,
                  absl::Time t, uint64_t n, uint64_t k,
                  const v1::Evidence& extra);
  // Transition() from REGRESSION: recovery, or a repeated alarm.
  void InRegression(Context* ctx, bool alarm, absl::Time t, uint64_t n,
                    uint64_t k, const v1::Evidence& extra);
  // Transition() from RECOVERING: relapse on an alarm, else the fix test.
  void InRecovering(Context* ctx, bool alarm, absl::Time t, uint64_t n,
                    uint64_t k, const v1::Evidence& extra);

  void Arm(Context* ctx, int family_streams);

  // How much higher than BaselineP0 the true in-control rate plausibly is:
  // the baseline posterior's kIcQuantile quantile over its mean (1 for a
  // fixed p0). The CUSUM is designed at the mean, but h keeps ARL0 on budget
  // at that quantile, so a short history (a wide posterior) gets a higher h
  // rather than false alarms; with a long history the ratio goes to 1.
  double InControlRatio(const v1::DetectionConfig& cfg) const;

  // The stream's in-control rate: Beta-prior estimate from its clean history
  // (STREAM_HEALTH) or the floor (PHANTOM_ERRORS: zero when healthy).
  double BaselineP0(const v1::DetectionConfig& cfg) const;

  v1::Evidence CusumEvidence(absl::Time, const v1::Evidence& extra) const;

  // `date`: date the onset anew (a new episode or relapse); otherwise the
  // onset already in the verdict is kept (repeated alarms of one episode).
  v1::Evidence AlarmEvidence(absl::Time t, const v1::Evidence& extra,
                             bool date = true) const;

  void StartEpisode(Context* ctx, absl::Time t, const v1::Evidence& extra);
  void Confirm(Context* ctx, absl::Time t, const v1::Evidence& extra);

  Lifecycle life_;
  bool learn_baseline_;
  std::optional<BernoulliCusum> cusum_;
  double arl0_ = 0;
  // Clean history (in control) and the probes since S last was 0.
  uint64_t baseline_trials_ = 0, baseline_failures_ = 0;
  uint64_t pending_trials_ = 0, pending_failures_ = 0;
  uint64_t next_rearm_ = 0;
  int armed_streams_ = 0;
  std::optional<absl::Time> first_time_;
  absl::Time last_time_ = absl::InfinitePast();
  uint64_t total_trials_ = 0;
  absl::Time last_zero_time_ = absl::InfinitePast();
  absl::Time run_start_ = absl::InfinitePast();
  absl::Time onset_ = absl::InfinitePast();
  std::deque<TimedBin> history_;
  uint64_t episode_rate_n_ = 0, episode_rate_k_ = 0;
  Recovery recovery_;
  uint64_t hold_ = 0;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_RATE_MONITOR_H_
