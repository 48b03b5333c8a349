// Where the admin API gets verdicts from: the seam between CanaryAdmin's
// GetVerdicts / WatchVerdicts / Analyze and whatever computes verdicts.
//
// The live verdict engine (fed by ingest) implements this interface; until
// it is wired in, CreateStoreVerdictSource() serves what the store holds:
// the verdict history (Store::AppendVerdict) for Current/Subscribe, and an
// Analyze that runs the same VerdictEngine as `canaryctl analyze` over the
// store's per-minute aggregates and platform samples.
//
// Thread-safety: implementations are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_API_VERDICT_SOURCE_H_
#define FLEETCANARY_CONTROLLER_API_VERDICT_SOURCE_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace controller {

// Whether `key` matches `filter` (empty filter fields match everything).
bool VerdictKeyMatches(const v1::StreamKey& filter, const v1::StreamKey& key);

class VerdictSource {
 public:
  // Ends a subscription when destroyed; no callback runs after the
  // destructor returned.
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  using Callback = std::function<void(const v1::Verdict& verdict)>;

  virtual ~VerdictSource() = default;

  // Current verdict of every kind and key matching `filter`, ordered by kind
  // then key; HEALTHY ones only when `include_healthy`.
  virtual absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) = 0;

  // Calls `callback` with every verdict transition matching `filter` from
  // now on, in order, on a thread of the source. The callback must not block
  // nor call back into the source.
  virtual std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                                  Callback callback) = 0;

  // The AnalysisReport of the stored outcomes and platform samples of
  // `request.filter` in [from, to) (unset = everything).
  // INVALID_ARGUMENT for from >= to.
  virtual absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) = 0;
};

struct StoreVerdictSourceOptions {
  // How often Subscribe() looks for new verdicts in the store.
  absl::Duration poll_interval = absl::Milliseconds(500);
  // Detector settings for Analyze (zero fields = documented defaults).
  v1::DetectionConfig detection;
};

// The store-backed source described above. `store` and `clock` must outlive
// it. INVALID_ARGUMENT for a bad detection config.
absl::StatusOr<std::unique_ptr<VerdictSource>> CreateStoreVerdictSource(
    const StoreVerdictSourceOptions& options, Store* store, Clock* clock);

// Current() and Subscribe() from `live` (the verdict engine), Analyze() from
// `analyzer` (e.g. the store-backed source). Neither is owned; both must
// outlive the result.
std::unique_ptr<VerdictSource> CombineVerdictSources(VerdictSource* live,
                                                     VerdictSource* analyzer);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_VERDICT_SOURCE_H_
