// Private to ingest: flow control of pending outcomes (see ingest.h,
// "Memory is bounded by flow control").
#ifndef FLEETCANARY_CONTROLLER_INGEST_FLOW_CONTROL_H_
#define FLEETCANARY_CONTROLLER_INGEST_FLOW_CONTROL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "controller/metrics/controller_metrics.h"

namespace fleetcanary {
namespace controller {
namespace ingest_internal {

// Pending outcomes (queued, being committed, or held by observers) against
// the bound, and who waits for room. Shared with the deleters of committed
// batches, which may outlive the Ingest, and with the metrics provider.
// Each transition into and out of saturation is logged once.
class FlowControl {
 public:
  explicit FlowControl(int64_t max) : max_(std::max<int64_t>(1, max)) {}

  void Add(int64_t n) {
    int64_t pending;
    {
      absl::MutexLock lock(&mu_);
      pending_ += n;
      if (saturated_ || pending_ < max_) return;
      saturated_ = true;
      ++saturations_;
      pending = pending_;
    }
    LogWarning("ingest_saturated",
               {{"pending_outcomes", absl::StrCat(pending)},
                {"limit", absl::StrCat(max_)},
                {"effect",
                 "agent sessions pause reading until half the limit is "
                 "pending; agents keep outcomes in their outboxes"}});
  }

  // Calls the waiters when this brings the pending count down to half.
  void Release(int64_t n) {
    std::vector<std::function<void()>> resume;
    int64_t pending;
    {
      absl::MutexLock lock(&mu_);
      pending_ -= n;
      if (!saturated_ || pending_ > max_ / 2) return;
      saturated_ = false;
      resume.swap(waiting_);
      pending = pending_;
    }
    LogInfo("ingest_resumed",
            {{"pending_outcomes", absl::StrCat(pending)},
             {"limit", absl::StrCat(max_)},
             {"sessions_resumed", absl::StrCat(resume.size())}});
    for (auto& r : resume) r();
  }

  // See Ingest::AwaitCapacity.
  bool Await(std::function<void()> resume) {
    {
      absl::MutexLock lock(&mu_);
      if (!saturated_) return true;
      if (!closed_) {
        waiting_.push_back(std::move(resume));
        ++pauses_;
        return false;
      }
    }
    resume();  // Shut down: nothing would wake it later.
    return false;
  }

  // Shutdown: wakes every waiter; later Awaits return at once.
  void Close() {
    std::vector<std::function<void()>> resume;
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      saturated_ = false;
      resume.swap(waiting_);
    }
    for (auto& r : resume) r();
  }

  IngestLoad Load() {
    absl::MutexLock lock(&mu_);
    IngestLoad load;
    load.pending_outcomes = pending_;
    load.limit = max_;
    load.saturated = saturated_;
    load.saturations_total = saturations_;
    load.sessions_paused = static_cast<int64_t>(waiting_.size());
    load.session_pauses_total = pauses_;
    return load;
  }

 private:
  const int64_t max_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  int64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool saturated_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t saturations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pauses_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void()>> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ingest_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_INGEST_FLOW_CONTROL_H_
