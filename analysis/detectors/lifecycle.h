// One verdict of one detector and its transitions (the state machine of
// verdict_engine.h: HEALTHY -> SUSPECT -> REGRESSION -> RECOVERING ->
// FIX_CONFIRMED -> HEALTHY). The detector decides when to move; Lifecycle
// keeps the verdict and reports each move. Internal to the verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_LIFECYCLE_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_LIFECYCLE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/detectors/common.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis::detectors {

class Lifecycle {
 public:
  // A HEALTHY verdict of `kind` for `key` with no previous state.
  Lifecycle(v1::VerdictKind kind, const Key& key);

  v1::VerdictState state() const { return verdict_.state(); }
  const v1::Verdict& verdict() const { return verdict_; }

  // Moves to `to` at `t` with evidence `ev` (since = updated = t) and appends
  // the new verdict to `out`.
  void Move(v1::VerdictState to, absl::Time t, v1::Evidence ev,
            std::vector<v1::Verdict>* out);
  // Refreshes the evidence without a transition.
  void Update(absl::Time t, v1::Evidence ev);

  // The verdict is the whole state; its kind and key identify the detector.
  void Save(v1::Verdict* out) const { *out = verdict_; }
  // Errors: INVALID_ARGUMENT (state_io.h) for another kind, a key of the
  // wrong shape or an unknown state.
  static absl::StatusOr<Lifecycle> Load(const v1::Verdict& in,
                                        v1::VerdictKind kind,
                                        absl::string_view where);

 private:
  v1::Verdict verdict_;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_LIFECYCLE_H_
