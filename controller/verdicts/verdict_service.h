// The live verdict service: feeds the verdict engine (analysis/
// verdict_engine.h, the same code `canaryctl analyze` runs offline) from
// ingest, reconciles platform metrics with client outcomes (reconciler.h),
// and serves verdicts to the admin API (api/verdict_source.h), /metrics and
// the store's verdict history.
//
// Data flow. As an IngestObserver it receives every committed batch on the
// ingest writer thread and only queues it; one worker thread does the rest:
//  1. Outcomes wait in a reorder buffer for `reorder_window` (in their own
//     time base, start_time) so that the engine sees all agents' outcomes in
//     time order; they are released up to the watermark
//     W = max(latest start_time seen, clock now) - reorder_window. An outcome
//     older than what was already released is fed at the engine's current
//     time (counted as reordered_late).
//  2. Scheduled outcomes (adhoc_id empty) feed VerdictEngine::ObserveProbe
//     with their agent id (STREAM_HEALTH, MODE_DIFFERENCE, SIZE_TREND,
//     HARD_DOWN). Ad-hoc outcomes never feed verdicts.
//  3. Every outcome and platform sample goes to the Reconciler; each period
//     it decides feeds VerdictEngine::ObservePlatform (PHANTOM_ERRORS) and
//     adds its phantom errors to fleetcanary_phantom_errors_total (persisted
//     as a store counter).
//  4. Platform view: a period whose scheduled probes of one alias all had
//     one body size (schedules with size_rotation) attributes its phantom
//     errors to that size; such periods feed a second engine instance as
//     per-size counts (phantom errors as failures, platform invocations as
//     trials), whose MODE_DIFFERENCE (stream vs buffered phantom errors per
//     invocation) and SIZE_TREND (phantom errors rising with body size)
//     verdicts are published. A verdict kind and key computed from both
//     views (client failures and phantom errors) is published once, in the
//     more severe of the two states (REGRESSION > RECOVERING > SUSPECT >
//     FIX_CONFIRMED > HEALTHY); its evidence says which view it came from.
//  5. Each published transition is appended to the store's verdict history,
//     exported (fleetcanary_verdict state set) and given to subscribers.
//     fleetcanary_error_rate_upper_bound{region,target,mode,size_class} is
//     the 95 % Clopper-Pearson upper bound of each STREAM_HEALTH stream's
//     failure rate (and, with size_class "", of each alias's phantom-error
//     rate) since its verdict last changed state, or the bound the fix
//     confirmation proved while it runs.
//
// Time base: the engine runs on the outcomes' start_time and the platform's
// period starts, never on the controller's clock, so compressed-time demos
// date verdicts correctly. The clock only moves the release watermark when
// no outcome arrives.
//
// Restarts: every state_save_interval in which something was processed,
// and at Shutdown, the worker saves both engines' detector state (baselines,
// CUSUMs, fix tests, open windows), the published verdicts, the reorder
// buffer and per agent the highest outcome sequence it accepted
// (fleetcanary.v1.VerdictServiceState) with Store::SaveDetectorState, fenced
// like every write, so a deposed leader cannot overwrite its successor's.
// Create restores it: verdicts continue where they were (a regression stays
// a regression, nothing re-alarms, no transition is appended for restored
// states). What the restored state cannot hold is said, never silent:
//  - outcomes committed after the last save (the store's applied sequences
//    beyond the saved ones; at most one save interval of them) never reach
//    the detectors: counted in detector_state_unseen_outcomes_total, logged;
//  - platform periods that began before this process started are not
//    reconciled (ReconcilerOptions::not_before; the previous process
//    consumed part of their outcomes), counted in
//    reconcile_before_start_total;
//  - a state saved under another detection config, of another format, or
//    unreadable is discarded (detector_state_discarded_total, logged with
//    the reason) and verdicts start from HEALTHY, as on a first start.
// A failed save keeps the previous one and is counted
// (detector_state_save_failures_total) and logged.
//
// Thread-safety: all public methods are thread-safe. Subscription callbacks
// run on the worker thread, in order; they must not block nor call back
// into the service.
#ifndef FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_H_
#define FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/api/verdict_source.h"
#include "controller/ingest/ingest.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"
#include "controller/verdicts/reconciler.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {
namespace controller {

struct VerdictServiceOptions {
  // Detector settings (ControllerConfig.detection); zero fields take the
  // documented defaults.
  v1::DetectionConfig detection;
  // Platform-metrics period (ControllerConfig.metrics_period).
  absl::Duration metrics_period = absl::Seconds(60);
  // How long after a period's end it is reconciled (0 = 5 periods), and
  // when it is given up (0 = settle + 10 periods).
  absl::Duration reconcile_settle = absl::ZeroDuration();
  absl::Duration reconcile_max_wait = absl::ZeroDuration();
  // How long outcomes wait to be put in time order across agents.
  absl::Duration reorder_window = absl::Seconds(2);
  // Most outcomes held for reordering; beyond it the oldest are released.
  size_t max_reorder_outcomes = 1 << 20;
  // Declared fix time (ControllerConfig.declared_fix_time), if any.
  std::optional<absl::Time> declared_fix_time;
  // Streams sharing the false-alarm budget (0 = count them as they appear).
  int expected_streams = 0;
  // How often the worker runs without new data (releases by the clock).
  absl::Duration tick = absl::Milliseconds(500);
  // Detector state is saved at most this often (and at Shutdown) and
  // restored by Create; 0 turns both off (verdicts start from HEALTHY).
  absl::Duration state_save_interval = absl::Seconds(5);
  // Serves Analyze() (e.g. CreateStoreVerdictSource); not owned. Null:
  // Analyze answers UNIMPLEMENTED.
  VerdictSource* analyzer = nullptr;
};

struct VerdictServiceStats {
  uint64_t outcomes_observed = 0;   // Fed to the engine (scheduled).
  uint64_t adhoc_outcomes = 0;      // Seen, not fed.
  uint64_t reordered_late = 0;      // Fed at the engine's time instead.
  uint64_t engine_errors = 0;       // Inputs the engine refused (logged).
  uint64_t platform_periods = 0;    // Reconciled and fed.
  uint64_t attributed_periods = 0;  // Also fed to the platform view.
  uint64_t phantom_errors = 0;
  uint64_t transitions = 0;  // Published.
  uint64_t store_errors = 0;
  uint64_t state_saves = 0;        // Detector-state saves written.
  uint64_t state_save_errors = 0;  // Refused by the store (kept the last).
  bool state_restored = false;     // Create restored a saved state.
  uint64_t unseen_outcomes = 0;    // Committed after the restored save.
  ReconcilerStats reconciler;
};

class VerdictService : public VerdictSource, public IngestObserver {
 public:
  // Starts the worker. `store`, `metrics` and `clock` must outlive the
  // service. INVALID_ARGUMENT for a bad detection config or period.
  static absl::StatusOr<std::unique_ptr<VerdictService>> Create(
      const VerdictServiceOptions& options, Store* store,
      ControllerMetrics* metrics, Clock* clock);

  ~VerdictService() override = default;

  // IngestObserver: queues the batch (never blocks on the engine).
  void OnCommitted(const CommittedBatch& batch) override = 0;

  // VerdictSource (see api/verdict_source.h).
  absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) override = 0;
  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                          Callback callback) override = 0;
  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override = 0;

  // Declares that a fix was deployed at `time` (outcome time base): fix
  // confirmation of open episodes counts probes from max(time, alarm).
  virtual void DeclareFix(absl::Time time) = 0;

  // Blocks until everything queued before the call was processed with the
  // clock's current time (tests, drain). Returns false after `timeout`.
  virtual bool Sync(absl::Duration timeout) = 0;

  virtual VerdictServiceStats stats() = 0;

  // Stops the worker; queued input is processed first. Idempotent.
  virtual void Shutdown() = 0;
};

// Whether `key` matches `filter`: empty filter fields match everything.
bool VerdictFilterMatches(const v1::StreamKey& filter,
                          const v1::StreamKey& key);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_VERDICTS_VERDICT_SERVICE_H_
