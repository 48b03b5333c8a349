// The MODE_DIFFERENCE detector of one region/target/size class: streaming
// against buffered probes paired in aligned buckets, scored by the split
// SPRT, with the streaming rate's recovery after a REGRESSION
// ("MODE_DIFFERENCE" and "Recovery" in verdict_engine.h). Internal to the
// verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_MODE_COMPARISON_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_MODE_COMPARISON_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/detectors/common.h"
#include "analysis/detectors/context.h"
#include "analysis/detectors/lifecycle.h"
#include "analysis/detectors/recovery.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis::detectors {

// MODE_DIFFERENCE: a SUSPECT still undecided after this many paired
// streaming probes resolves to HEALTHY (bounded horizon).
inline constexpr uint64_t kSuspectHorizon = 3000;

class ModeComparison {
 public:
  // `key`: region, target and size class; mode unset.
  explicit ModeComparison(const Key& key);
  const Lifecycle& life() const { return life_; }

  // Adds `n` probes with `k` failures of `mode` to the open bucket.
  void Add(v1::InvokeMode mode, uint64_t n, uint64_t k);
  // Whether the open bucket holds any probe.
  bool pending() const { return n_s_ + n_b_ > 0; }

  // Closes the open bucket at `t` (its end): feeds the recovery when in an
  // episode, else the split SPRT when both modes have probes, and moves the
  // verdict (transitions go to ctx->out). The bucket is empty afterwards.
  void CloseBucket(Context* ctx, absl::Time t);

  void Save(v1::ModeComparisonState* out) const;
  // Errors: INVALID_ARGUMENT (state_io.h).
  static absl::StatusOr<ModeComparison> Load(const v1::ModeComparisonState& in,
                                             absl::string_view where);

 private:
  // Feeds the bucket's streaming counts to the episode's recovery (from
  // REGRESSION or RECOVERING). Returns true when the recovery moved the
  // verdict, which restarts the split SPRT and ends the bucket's step.
  bool RecoveryStep(Context* ctx, v1::VerdictState state, absl::Time t,
                    uint64_t n_s, uint64_t x_s);
  // Moves the verdict from `state` on the SPRT's LLR after a paired bucket.
  void Decide(Context* ctx, v1::VerdictState state, absl::Time t);
  // The LLR crossed ln A (`log_a`): a REGRESSION, or new evidence of one.
  void Alarm(Context* ctx, v1::VerdictState state, absl::Time t, double log_a);
  // Restarts the split SPRT at `t`.
  void ResetSegment(absl::Time t);
  v1::Evidence SplitEvidence() const;

  Lifecycle life_;
  uint64_t n_s_ = 0, x_s_ = 0, n_b_ = 0, x_b_ = 0;  // Open bucket.
  uint64_t seg_n_s_ = 0, seg_x_s_ = 0, seg_n_b_ = 0, seg_x_b_ = 0;
  absl::Time segment_start_ = absl::InfinitePast();
  double llr_ = 0;
  uint64_t suspect_probes_ = 0;  // Paired streaming probes while SUSPECT.
  Recovery recovery_;
  uint64_t hold_ = 0;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_MODE_COMPARISON_H_
