#include "agent/platform/platform_loop.h"

#include <map>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace agent {
namespace {

class PlatformLoopImpl : public PlatformLoop {
 public:
  PlatformLoopImpl(platform::PlatformMetricsReader* reader, Clock* clock)
      : reader_(reader), clock_(clock) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~PlatformLoopImpl() override { Stop(); }

  void OnAssignments(const v1::AssignmentSet& set) override {
    std::map<std::tuple<std::string, std::string, int>, platform::MetricsTarget>
        targets;
    for (const v1::Assignment& a : set.assignments()) {
      if (!a.url().has_cloudwatch() ||
          a.url().cloudwatch().function_name().empty()) {
        continue;
      }
      platform::MetricsTarget t;
      t.region = a.region();
      t.target = a.target();
      t.mode = a.mode();
      t.identity = a.url().cloudwatch();
      t.role_arn = a.role_arn();
      targets[{t.region, t.target, t.mode}] = t;
    }
    std::vector<platform::MetricsTarget> list;
    for (auto& [k, t] : targets) list.push_back(std::move(t));
    reader_->SetTargets(list);
    absl::MutexLock lock(&mu_);
    has_targets_ = !list.empty();
    changed_ = true;
  }

  void SetSession(SessionClient* session) override {
    absl::MutexLock lock(&mu_);
    session_ = session;
    if (session_ != nullptr && pending_.samples_size() > 0) {
      session_->SendPlatformMetrics(std::move(pending_));
      pending_.Clear();
    }
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  uint64_t polls_total() override {
    absl::MutexLock lock(&mu_);
    return polls_;
  }
  uint64_t poll_errors_total() override {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  absl::Time last_success() override {
    absl::MutexLock lock(&mu_);
    return last_success_;
  }

 private:
  void Loop() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        // NextPollTime() is always ahead of now: remember this round's.
        const absl::Time due = reader_->NextPollTime();
        const absl::Duration wait =
            has_targets_ ? due - clock_->Now() : absl::Hours(1);
        changed_ = false;
        if (wait > absl::ZeroDuration()) {
          clock_->AwaitWithTimeout(
              &mu_,
              absl::Condition(
                  +[](PlatformLoopImpl* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                    return p->stopping_ || p->changed_;
                  },
                  this),
              wait);
        }
        if (stopping_) return;
        if (changed_ || !has_targets_ || due > clock_->Now()) {
          continue;
        }
      }
      auto samples = reader_->Poll();
      absl::MutexLock lock(&mu_);
      ++polls_;
      if (!samples.ok()) {
        ++errors_;
        LogWarning("platform_poll_failed",
                   {{"error", samples.status().ToString()}});
        // Retry after a short pause rather than spinning.
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_),
                                 absl::Seconds(5));
        continue;
      }
      last_success_ = clock_->Now();
      if (samples->empty()) continue;
      v1::PlatformMetricBatch batch;
      for (v1::PlatformMetricSample& s : *samples) {
        *batch.add_samples() = std::move(s);
      }
      if (session_ != nullptr) {
        session_->SendPlatformMetrics(std::move(batch));
      } else {
        pending_.MergeFrom(batch);
      }
    }
  }

  platform::PlatformMetricsReader* const reader_;
  Clock* const clock_;
  std::thread thread_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  SessionClient* session_ ABSL_GUARDED_BY(mu_) = nullptr;
  v1::PlatformMetricBatch pending_ ABSL_GUARDED_BY(mu_);
  bool has_targets_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t polls_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_success_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace

absl::StatusOr<std::unique_ptr<PlatformLoop>> PlatformLoop::Create(
    platform::PlatformMetricsReader* reader, Clock* clock) {
  if (reader == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "platform loop: reader and clock required");
  }
  return std::unique_ptr<PlatformLoop>(new PlatformLoopImpl(reader, clock));
}

}  // namespace agent
}  // namespace fleetcanary
