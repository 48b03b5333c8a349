#include "controller/retention/retention_job.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/time/periodic_task.h"

namespace fleetcanary {
namespace controller {
namespace {

class RetentionJobImpl : public RetentionJob {
 public:
  RetentionJobImpl(const RetentionJobOptions& options, Store* store,
                   ControllerMetrics* metrics, Clock* clock)
      : options_(options),
        store_(store),
        metrics_(metrics),
        clock_(clock),
        timer_(clock, options.interval, [this] {
          RunOnce().IgnoreError();  // Counted and logged.
        }) {}
  ~RetentionJobImpl() override { Stop(); }

  absl::StatusOr<PruneResult> RunOnce() override {
    absl::MutexLock run(&run_mu_);
    const absl::Time now = clock_->Now();
    absl::StatusOr<PruneResult> r = store_->Prune(now, options_.retention);
    if (!r.ok()) {
      metrics_->AddCounter("retention_runs_failed_total", 1);
      LogError("retention_failed",
               {{"error", r.status().ToString()},
                {"effect", "old rows stay until the next run"}});
      return r;
    }
    metrics_->AddCounter("retention_runs_total", 1);
    metrics_->AddCounter("retention_rows_deleted_total",
                         static_cast<double>(r->rows_deleted()));
    metrics_->AddCounter("retention_minutes_rolled_up_total",
                         static_cast<double>(r->minutes_deleted));
    LogInfo("retention_done",
            {{"minutes_rolled_up", absl::StrCat(r->minutes_deleted)},
             {"hours_deleted", absl::StrCat(r->hours_deleted)},
             {"failures_deleted", absl::StrCat(r->failures_deleted)},
             {"verdicts_deleted", absl::StrCat(r->verdicts_deleted)},
             {"platform_samples_deleted",
              absl::StrCat(r->platform_samples_deleted)},
             {"transactions", absl::StrCat(r->transactions)}});
    return r;
  }

  void Stop() override { timer_.Stop(); }

 private:
  const RetentionJobOptions options_;
  Store* const store_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;
  absl::Mutex run_mu_;  // One run at a time.
  // Last: its runs use the members above, so it is stopped (destroyed)
  // before they are.
  PeriodicTask timer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RetentionJob>> RetentionJob::Start(
    const RetentionJobOptions& options, Store* store,
    ControllerMetrics* metrics, Clock* clock) {
  if (options.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retention interval: must be > 0");
  }
  const RetentionOptions& r = options.retention;
  for (const auto& [name, d] : {std::pair<const char*, absl::Duration>{
                                    "raw_retention", r.raw_retention},
                                {"aggregate_retention", r.aggregate_retention},
                                {"hourly_retention", r.hourly_retention}}) {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": must be > 0"));
    }
  }
  if (r.max_rows_per_transaction < 1) {
    return absl::InvalidArgumentError(
        "retention_max_rows_per_transaction: must be >= 1");
  }
  return std::unique_ptr<RetentionJob>(
      new RetentionJobImpl(options, store, metrics, clock));
}

}  // namespace controller
}  // namespace fleetcanary
