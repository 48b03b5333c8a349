// The HARD_DOWN detector of one region/target/mode: the consecutive-failure
// rule of cusum.h over individual probes by agent, with recovery once the
// rule ends ("HARD_DOWN" and "Recovery" in verdict_engine.h). Internal to
// the verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_HARD_DOWN_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_HARD_DOWN_H_

#include <cstdint>
#include <string>

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

namespace fleetcanary::analysis::detectors {

class HardDown {
 public:
  // `key`: region, target and mode; size class empty. The rule's thresholds
  // come from `cfg` (hard_down_consecutive, hard_down_agents).
  HardDown(const Key& key, const v1::DetectionConfig& cfg);
  const Lifecycle& life() const { return life_; }

  // One probe (a trial) of `agent` at `t`; `failed` = a stream-health
  // failure. Moves the verdict (transitions go to ctx->out).
  void Observe(Context* ctx, const std::string& agent, absl::Time t,
               bool failed);

  void Save(v1::HardDownState* out) const;
  // Errors: INVALID_ARGUMENT (state_io.h), e.g. an agent listed twice.
  static absl::StatusOr<HardDown> Load(const v1::HardDownState& in,
                                       const v1::DetectionConfig& cfg,
                                       absl::string_view where);

 private:
  // One probe in REGRESSION or RECOVERING (`down`: the rule holds after it):
  // the rule holding keeps (or returns to) REGRESSION; its end starts the
  // fix test.
  void EpisodeStep(Context* ctx, v1::VerdictState state, absl::Time t,
                   bool failed, bool down, const v1::Evidence& ev);

  Lifecycle life_;
  HardDownRule rule_;
  Recovery recovery_;
  uint64_t baseline_n_ = 0, baseline_k_ = 0;
  uint64_t hold_ = 0;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_HARD_DOWN_H_
