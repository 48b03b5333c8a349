#include "controller/leader/leader_elector.h"

#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace controller {
namespace {

class LeaderElectorImpl : public LeaderElector {
 public:
  LeaderElectorImpl(const LeaderElectorOptions& options, Store* store,
                    ControllerMetrics* metrics, Clock* clock)
      : options_(options), store_(store), metrics_(metrics), clock_(clock) {
    if (options_.renew_interval <= absl::ZeroDuration()) {
      options_.renew_interval = options_.lease / 4;
    }
    thread_ = std::thread([this] { Loop(); });
  }

  ~LeaderElectorImpl() override { Shutdown(); }

  absl::StatusOr<LeaderLease> AwaitLeadership() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](LeaderElectorImpl* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return self->leader_ || self->stopping_;
        },
        this));
    if (!leader_) return absl::CancelledError("leader election stopped");
    return lease_;
  }

  bool is_leader() override {
    absl::MutexLock lock(&mu_);
    return leader_;
  }

  LeaderLease lease() override {
    absl::MutexLock lock(&mu_);
    return lease_;
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
    bool leader;
    {
      absl::MutexLock lock(&mu_);
      leader = leader_;
      leader_ = false;
    }
    if (leader) {
      metrics_->SetLeader(false);
      absl::Status s = store_->ReleaseLease(options_.replica_id);
      LogInfo("leader_lease_released",
              {{"replica", options_.replica_id}, {"status", s.ToString()}});
    }
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (!stopping_) {
      mu_.Unlock();
      const bool lost = Step();
      mu_.Lock();
      if (lost) {
        leader_ = false;
        lost_ = true;
        mu_.Unlock();
        metrics_->SetLeader(false);
        if (options_.on_lost) options_.on_lost();
        mu_.Lock();
        return;
      }
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_),
                               options_.renew_interval);
    }
  }

  // One renewal (or attempt). Returns true when leadership was lost.
  bool Step() {
    const absl::Time now = clock_->Now();
    absl::StatusOr<LeaderLease> got = store_->AcquireLease(
        options_.replica_id, options_.address, now, options_.lease);
    absl::MutexLock lock(&mu_);
    if (!got.ok()) {
      LogWarning("leader_lease_renewal_failed",
                 {{"replica", options_.replica_id},
                  {"error", got.status().ToString()}});
      // Without renewal the lease runs out: then another replica may lead.
      if (leader_ && now >= lease_.expires) {
        LogError("leadership_lost", {{"replica", options_.replica_id},
                                     {"reason", "lease expired unrenewed"}});
        return true;
      }
      return false;
    }
    const bool mine = got->holder == options_.replica_id;
    if (leader_ && (!mine || got->epoch != lease_.epoch)) {
      LogError("leadership_lost", {{"replica", options_.replica_id},
                                   {"holder", got->holder},
                                   {"epoch", absl::StrCat(got->epoch)}});
      lease_ = *got;
      return true;
    }
    const bool was_leader = leader_;
    lease_ = *got;
    if (mine && !was_leader) {
      store_->SetFencingEpoch(got->epoch);
      leader_ = true;
      metrics_->SetLeader(true);
      LogInfo("leadership_acquired", {{"replica", options_.replica_id},
                                      {"epoch", absl::StrCat(got->epoch)}});
    }
    return false;
  }

  LeaderElectorOptions options_;
  Store* const store_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;
  std::thread thread_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  LeaderLease lease_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::Create(
    const LeaderElectorOptions& options, Store* store,
    ControllerMetrics* metrics, Clock* clock) {
  if (options.replica_id.empty()) {
    return absl::InvalidArgumentError("replica_id: required");
  }
  if (options.address.empty()) {
    return absl::InvalidArgumentError("advertise_address: required");
  }
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("leader_lease: must be > 0");
  }
  if (!store || !metrics || !clock) {
    return absl::InvalidArgumentError("leader elector: missing dependency");
  }
  return std::unique_ptr<LeaderElector>(
      new LeaderElectorImpl(options, store, metrics, clock));
}

}  // namespace controller
}  // namespace fleetcanary
