// The SIZE_TREND detector of one region/target/mode: failures by payload
// size collected per trend window, tested with Cochran-Armitage over
// log2(bytes); the engine decides significance across all families of a
// window (Benjamini-Hochberg) and hands each family its result ("SIZE_TREND"
// and "Recovery" in verdict_engine.h). Internal to the verdict engine.
//
// Value type; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_SIZE_TREND_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_SIZE_TREND_H_

#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/detectors/common.h"
#include "analysis/detectors/context.h"
#include "analysis/detectors/lifecycle.h"
#include "analysis/detectors/recovery.h"
#include "analysis/tests.h"
#include "fleetcanary/v1/detector_state.pb.h"

namespace fleetcanary::analysis::detectors {

class TrendFamily {
 public:
  // `key`: region, target and mode; size class empty.
  explicit TrendFamily(const Key& key);
  const Lifecycle& life() const { return life_; }

  // Adds `n` probes with `k` failures of size `bytes` to the open window.
  void Add(uint64_t bytes, uint64_t n, uint64_t k);
  // Whether the open window holds any probe.
  bool pending() const { return !window_.empty(); }
  // The open window's trend test, or nullopt when not testable (fewer than
  // two sizes or no failure).
  std::optional<TrendTest> Test();

  // Closes the open window ending at `t` (`window` long) whose test was
  // `test`, BH-adjusted to `adjusted_p`, `significant` as decided by the
  // engine: moves the verdict (transitions go to ctx->out) and empties the
  // window.
  void CloseWindow(Context* ctx, absl::Time t, absl::Duration window,
                   const std::optional<TrendTest>& test, double adjusted_p,
                   bool significant);

  void Save(v1::TrendFamilyState* out) const;
  // Errors: INVALID_ARGUMENT (state_io.h).
  static absl::StatusOr<TrendFamily> Load(const v1::TrendFamilyState& in,
                                          absl::string_view where);

 private:
  // Evidence of the open window (`n` probes, `k` failures in all).
  v1::Evidence WindowEvidence(const Context* ctx, uint64_t n, uint64_t k,
                              const std::optional<TrendTest>& test,
                              double adjusted_p) const;
  // SUSPECT -> REGRESSION on a second significant window ending at `t`.
  void StartEpisode(Context* ctx, absl::Time t, uint64_t n, uint64_t k,
                    const v1::Evidence& ev);
  // A window closed in REGRESSION or RECOVERING: a significant one keeps (or
  // returns to) REGRESSION; the first non-significant one starts the fix
  // test.
  void EpisodeStep(Context* ctx, v1::VerdictState state, absl::Time t,
                   uint64_t n, uint64_t k, bool significant,
                   const v1::Evidence& ev);

  Lifecycle life_;
  // Bytes -> (trials, failures) of the open window.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> window_;
  absl::Time suspect_window_start_ = absl::InfinitePast();
  absl::Time confirmed_at_ = absl::InfinitePast();
  Recovery recovery_;
  uint64_t hold_ = 0;
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_SIZE_TREND_H_
