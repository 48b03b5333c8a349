#include "controller/verdicts/verdict_service.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "common/log/log.h"
#include "controller/verdicts/verdict_service_impl.h"

namespace fleetcanary {
namespace controller {

absl::StatusOr<std::unique_ptr<VerdictService>> VerdictService::Create(
    const VerdictServiceOptions& options, Store* store,
    ControllerMetrics* metrics, Clock* clock) {
  if (store == nullptr || metrics == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "VerdictService: store, metrics and clock are required");
  }
  auto service = std::make_unique<verdicts_internal::VerdictServiceImpl>(
      options, store, metrics, clock);
  if (absl::Status s = service->Init(); !s.ok()) return s;
  return std::unique_ptr<VerdictService>(std::move(service));
}

namespace verdicts_internal {

absl::Status VerdictServiceImpl::Init() {
  if (options_.metrics_period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("metrics_period: must be > 0");
  }
  if (options_.reorder_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("reorder_window: must be >= 0");
  }
  const absl::Time start = clock_->Now();
  ReconcilerOptions ro;
  ro.period = options_.metrics_period;
  ro.not_before = start;
  ro.settle = options_.reconcile_settle > absl::ZeroDuration()
                  ? options_.reconcile_settle
                  : 5 * options_.metrics_period;
  ro.max_wait = options_.reconcile_max_wait > absl::ZeroDuration()
                    ? std::max(options_.reconcile_max_wait, ro.settle)
                    : ro.settle + 10 * options_.metrics_period;
  auto rec = Reconciler::Create(ro);
  if (!rec.ok()) return rec.status();
  reconciler_ = *std::move(rec);
  auto engine = analysis::VerdictEngine::Create(options_.detection,
                                                options_.expected_streams);
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);
  auto view = analysis::VerdictEngine::Create(options_.detection,
                                              options_.expected_streams);
  if (!view.ok()) return view.status();
  platform_view_ = *std::move(view);
  {
    absl::MutexLock lock(&mu_);
    not_before_ = start;
    last_save_ = start;
    if (options_.state_save_interval > absl::ZeroDuration()) RestoreState();
    if (options_.declared_fix_time) {
      engine_->DeclareFix(*options_.declared_fix_time);
      platform_view_->DeclareFix(*options_.declared_fix_time);
    }
    ExportMetrics();
  }
  worker_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void VerdictServiceImpl::DeclareFix(absl::Time time) {
  absl::MutexLock lock(&mu_);
  engine_->DeclareFix(time);
  platform_view_->DeclareFix(time);
  dirty_ = true;
  LogInfo("verdicts_fix_declared", {{"time", absl::FormatTime(time)}});
}

bool VerdictServiceImpl::Sync(absl::Duration timeout) {
  absl::MutexLock lock(&queue_mu_);
  const uint64_t target = requested_rounds_ + 1;
  requested_rounds_ = target;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
    return completed_rounds_ >= target || stopped_;
  };
  return clock_->AwaitWithTimeout(&queue_mu_, absl::Condition(&done),
                                  timeout) &&
         completed_rounds_ >= target;
}

VerdictServiceStats VerdictServiceImpl::stats() {
  absl::MutexLock lock(&mu_);
  VerdictServiceStats s = stats_;
  s.reconciler = reconciler_->stats();
  return s;
}

void VerdictServiceImpl::Shutdown() {
  {
    absl::MutexLock lock(&queue_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

void VerdictServiceImpl::Loop() {
  for (;;) {
    std::deque<std::shared_ptr<const CommittedBatch>> batches;
    uint64_t round = 0;
    bool stop = false;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return stopping_ || !queued_.empty() ||
               requested_rounds_ > completed_rounds_;
      };
      clock_->AwaitWithTimeout(&queue_mu_, absl::Condition(&ready),
                               options_.tick);
      batches.swap(queued_);
      round = requested_rounds_;
      stop = stopping_;
    }
    std::vector<v1::Verdict> published = Process(batches);
    Deliver(published);
    MaybeSaveState(stop);
    absl::MutexLock lock(&queue_mu_);
    completed_rounds_ = std::max(completed_rounds_, round);
    if (stop && queued_.empty()) {
      stopped_ = true;
      return;
    }
  }
}

// One round: queue -> reorder buffer and reconciler -> engines -> output.
std::vector<v1::Verdict> VerdictServiceImpl::Process(
    std::deque<std::shared_ptr<const CommittedBatch>>& batches) {
  absl::MutexLock lock(&mu_);
  if (!batches.empty()) dirty_ = true;
  for (const auto& shared : batches) {
    const CommittedBatch& b = *shared;
    for (const v1::Outcome& o : b.outcomes) {
      uint64_t& seq = accepted_sequence_[o.agent_id()];
      seq = std::max(seq, o.sequence());
      Accept(o);
    }
    for (const v1::PlatformMetricSample& s : b.platform_samples) {
      reconciler_->AddSample(s);
    }
  }
  const absl::Time watermark =
      std::max(latest_seen_, clock_->Now()) - options_.reorder_window;
  Release(watermark);
  Reconcile(watermark);
  return Publish();
}

void VerdictServiceImpl::EngineError(const char* what, const absl::Status& s) {
  ++stats_.engine_errors;
  LogWarning("verdicts_input_refused",
             {{"input", what}, {"error", s.ToString()}});
}

}  // namespace verdicts_internal
}  // namespace controller
}  // namespace fleetcanary
