// The retention job: enforces the store's RetentionOptions in the background
// (Store::Prune: per-minute aggregates rolled up into hourly ones, old raw
// failures, verdicts, platform samples and hourly aggregates deleted, in
// bounded transactions), every `interval` of the injected clock, on the
// leader only (a standby's store writes would be fenced anyway).
//
// Every run is counted and logged: fleetcanary_retention_runs_total,
// fleetcanary_retention_rows_deleted_total,
// fleetcanary_retention_minutes_rolled_up_total,
// fleetcanary_retention_runs_failed_total; log events `retention_done`
// (with per-table counts and transactions) or `retention_failed`.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_RETENTION_RETENTION_JOB_H_
#define FLEETCANARY_CONTROLLER_RETENTION_RETENTION_JOB_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {

struct RetentionJobOptions {
  RetentionOptions retention;
  // Time between runs: run k is due k intervals after Start (a
  // PeriodicTask: a run that overruns due times skips them).
  absl::Duration interval = absl::Hours(1);
};

class RetentionJob {
 public:
  virtual ~RetentionJob() = default;

  // Starts the timer thread. `store`, `metrics` and `clock` must outlive the
  // job. INVALID_ARGUMENT for interval <= 0, a retention <= 0 or
  // max_rows_per_transaction < 1 (naming the field).
  static absl::StatusOr<std::unique_ptr<RetentionJob>> Start(
      const RetentionJobOptions& options, Store* store,
      ControllerMetrics* metrics, Clock* clock);

  // One run now, counted and logged like the timer's.
  virtual absl::StatusOr<PruneResult> RunOnce() = 0;
  // Stops the timer (waits for a run in progress). Idempotent.
  virtual void Stop() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_RETENTION_RETENTION_JOB_H_
