// Internal to controller/verdicts: the implementation class of
// VerdictService (verdict_service.h, which documents the behaviour) and the
// types its parts share. Nothing outside this folder includes this file.
//
// The class is defined across files by concern:
//  - verdict_service.cc: Create, Init, the ingest queue, the worker loop,
//    Sync, DeclareFix and Shutdown;
//  - verdict_pipeline.cc: the reorder buffer, reconciliation, both engines
//    and the merge of their verdicts into the published set and metrics;
//  - verdict_state_store.cc: saving and restoring the detector state;
//  - verdict_watch.cc: Current, Subscribe, Analyze and delivery to
//    subscribers.
//
// Thread-safety: as VerdictService. Three locks, never held together
// except as noted: queue_mu_ (the ingest queue and rounds), mu_ (engines,
// verdicts, stats), subs_mu_ (subscribers; taken on the worker after mu_
// was released).
#ifndef FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_IMPL_H_
#define FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_IMPL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "analysis/verdict_engine.h"
#include "controller/verdicts/reconciler.h"
#include "controller/verdicts/verdict_service.h"
#include "fleetcanary/v1/verdict_state.pb.h"

namespace fleetcanary {
namespace controller {
namespace verdicts_internal {

// (kind, region, target, mode, size class): one published verdict.
using VerdictId = std::tuple<int, std::string, std::string, int, std::string>;

VerdictId IdOf(const v1::Verdict& v);

// An outcome held in the reorder buffer.
struct Pending {
  absl::Time time;
  v1::StreamKey key;
  std::string agent_id;
  v1::OutcomeClass cls;
};

// Trials and failures of a verdict since its state last changed (the
// fleetcanary_error_rate_upper_bound input).
struct RateCounts {
  uint64_t trials = 0;
  uint64_t failures = 0;
};

class VerdictServiceImpl : public VerdictService {
 public:
  VerdictServiceImpl(const VerdictServiceOptions& options, Store* store,
                     ControllerMetrics* metrics, Clock* clock)
      : options_(options), store_(store), metrics_(metrics), clock_(clock) {}

  ~VerdictServiceImpl() override { Shutdown(); }

  // Validates the options, builds the reconciler and both engines,
  // restores the saved state (verdict_state_store.cc) and starts the
  // worker.
  absl::Status Init();

  // Ingest side (verdict_service.cc): queue, worker, lifecycle.
  void OnCommitted(const CommittedBatch& batch) override {
    OnCommittedShared(std::make_shared<const CommittedBatch>(batch));
  }

  // Held, not copied: ingest's flow control counts it until processed.
  void OnCommittedShared(std::shared_ptr<const CommittedBatch> batch) override {
    if (batch->outcomes.empty() && batch->platform_samples.empty()) return;
    absl::MutexLock lock(&queue_mu_);
    if (stopping_) return;
    queued_.push_back(std::move(batch));
  }

  void DeclareFix(absl::Time time) override;
  bool Sync(absl::Duration timeout) override;
  VerdictServiceStats stats() override;
  void Shutdown() override;

  // Admin/watch side (verdict_watch.cc).
  absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) override;
  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                          Callback callback) override;
  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override;
  // Subscriptions (called by SubscriptionImpl).
  void Unsubscribe(uint64_t id) {
    absl::MutexLock lock(&subs_mu_);
    subscribers_.erase(id);
  }

 private:
  struct Subscriber {
    v1::StreamKey filter;
    Callback callback;
  };

  // The worker (verdict_service.cc).
  void Loop();
  // One round: queue -> reorder buffer and reconciler -> engines -> output.
  std::vector<v1::Verdict> Process(
      std::deque<std::shared_ptr<const CommittedBatch>>& batches);
  void EngineError(const char* what, const absl::Status& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Feeding the engines and publishing (verdict_pipeline.cc).
  void Accept(const v1::Outcome& o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Feeds the engine every held outcome up to `watermark`, in time order.
  void Release(absl::Time watermark) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reconcile(absl::Time watermark) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Merges both views' transitions into published ones; updates the store,
  // metrics and the current set.
  std::vector<v1::Verdict> Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The more severe of the two views' verdicts for `id` (client on ties).
  const v1::Verdict* Winner(const VerdictId& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsFromView(const VerdictId& id, const v1::Verdict* w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Updates the published verdict's evidence when its state is unchanged,
  // and adds verdicts never published (HEALTHY on first sight).
  void Refresh(const VerdictId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExportMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Detector-state persistence (verdict_state_store.cc).
  // Loads the saved state, if any, into the engines and the published set
  // (see "Restarts" in the header). Never fails: an unusable state is
  // discarded, counted and logged.
  void RestoreState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::VerdictServiceState BuildState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Saves the state when something changed and the interval passed, or at
  // the last round before stopping. Runs on the worker, store write outside
  // mu_.
  void MaybeSaveState(bool stopping);

  // Sends published verdicts to matching subscribers (verdict_watch.cc).
  void Deliver(const std::vector<v1::Verdict>& verdicts);

  const VerdictServiceOptions options_;
  Store* const store_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;
  std::thread worker_;

  absl::Mutex queue_mu_;
  // State below is protected by queue_mu_.
  std::deque<std::shared_ptr<const CommittedBatch>> queued_
      ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(queue_mu_) = false;
  uint64_t requested_rounds_ ABSL_GUARDED_BY(queue_mu_) = 0;
  uint64_t completed_rounds_ ABSL_GUARDED_BY(queue_mu_) = 0;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::unique_ptr<Reconciler> reconciler_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<analysis::VerdictEngine> engine_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<analysis::VerdictEngine> platform_view_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, Pending> reorder_ ABSL_GUARDED_BY(mu_);
  absl::Time latest_seen_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time engine_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time view_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<VerdictId, v1::Verdict> client_state_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, v1::Verdict> view_state_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, v1::Verdict> published_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, RateCounts> rates_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> accepted_sequence_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_save_ ABSL_GUARDED_BY(mu_);
  absl::Time not_before_ ABSL_GUARDED_BY(mu_);
  uint64_t before_start_exported_ ABSL_GUARDED_BY(mu_) = 0;
  VerdictServiceStats stats_ ABSL_GUARDED_BY(mu_);

  absl::Mutex subs_mu_;
  // State below is protected by subs_mu_.
  std::map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(subs_mu_);
  uint64_t next_subscriber_ ABSL_GUARDED_BY(subs_mu_) = 1;
};

}  // namespace verdicts_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_IMPL_H_
