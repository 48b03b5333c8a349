// The admin API's logic (CanaryAdmin), without gRPC: admin_service.h is the
// thin adapter that authorizes, converts statuses and moves messages.
//
// RunProbe: validates the request (INVALID_ARGUMENT naming the field; an
// explicit URL outside the target guard's allowlist is PERMISSION_DENIED),
// resolves the target's regions and URLs (NOT_FOUND for an unknown target
// or region), picks the LIVE agents of each region (FAILED_PRECONDITION for
// a region with none), splits `count` per mode x size (and the concurrency)
// over them, and sends each its share as a ControllerMessage.adhoc_probe.
// Results come back live (AdhocResult, OnAdhocResult) and durably through
// ingest (OnCommitted); both are merged exactly once per probe id. Events:
// one Dispatched per region, each outcome (stream_outcomes), the region's
// summaries once all its agents are done, then Done. Cancel() sends
// AdhocProbe{cancel} to every agent still busy at once and ends the run; a
// run also ends when its agents are lost (session ended) or it outlives its
// deadline (then the sink gets DEADLINE_EXCEEDED after Done). Ad-hoc
// probing never touches schedules or assignments.
//
// Schedules and agents delegate to the Scheduler after checks of their own;
// verdicts and Analyze to a VerdictSource. On a standby replica (deps'
// standby_store) reads come from the store and changes name the leader.
// Report validates the request (INVALID_ARGUMENT naming the field: target
// required, from and to required with from < to), runs Analyze for the
// target and builds the incident report (analysis/report/report_builder.h)
// from the store's per-minute aggregates, raw failures and platform samples
// of the window.
//
// Thread-safety: all methods are thread-safe. Sinks are called without the
// core's locks but with a run's lock held: they must not block nor call
// back into the core.
#ifndef FLEETCANARY_CONTROLLER_API_ADMIN_CORE_H_
#define FLEETCANARY_CONTROLLER_API_ADMIN_CORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"
#include "controller/api/verdict_source.h"
#include "controller/fleet/scheduler.h"
#include "controller/ingest/ingest.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {

struct AdminCoreOptions {
  // Allowlist for explicit URLs of RunProbe and for target URLs applied
  // through ApplySchedules; the hosts of registered targets are added.
  TargetGuardOptions guard;
  // Probes per RunProbe at most (count x modes x sizes x regions); larger
  // runs are INVALID_ARGUMENT (controller flag --adhoc_max_probes).
  uint64_t max_probes_per_run = 10000;
  // Concurrent RunProbe calls at most (RESOURCE_EXHAUSTED beyond).
  int max_active_runs = 64;
  // Concurrency when the request leaves it 0.
  uint32_t default_concurrency = 8;
  // A run ends (DEADLINE_EXCEEDED) when it outlives this, whatever its size.
  absl::Duration max_run_duration = absl::Hours(1);
  // How often agent liveness and run deadlines are checked.
  absl::Duration check_interval = absl::Milliseconds(200);
  // Seeds ad-hoc ids.
  uint64_t seed = 0;
  // Detector settings the verdict source's Analyze runs with (named in the
  // report's methods paragraph; zero fields = defaults).
  v1::DetectionConfig detection;
  // Raw failures a Report reads at most (request id samples).
  size_t report_max_failures = 100000;
};

struct AdminCoreDeps {
  Scheduler* scheduler = nullptr;
  // Optional: applied sequences in ListAgents.
  Ingest* ingest = nullptr;
  VerdictSource* verdicts = nullptr;
  // Optional: Report is FAILED_PRECONDITION without it.
  Store* store = nullptr;
  // Sends one AdhocProbe to an agent's session; NOT_FOUND when it has none.
  // Must not block.
  std::function<absl::Status(const std::string& agent_id,
                             const v1::AdhocProbe& probe)>
      send_adhoc;
  Clock* clock = nullptr;
  // Standby replica (another replica leads; see docs/operations-postgresql.md):
  // scheduler, ingest and send_adhoc are unused and may be null. Schedules
  // and agents are read from `standby_store` (agents as the store knows
  // them: watermark, drop count and last commit; state LIVE when that commit
  // is within `standby_liveness` of now, else LOST; no zone, version or
  // assignments), verdicts and Analyze from `verdicts`. RunProbe,
  // ApplySchedules and DeleteSchedule are UNAVAILABLE with
  // "not the leader; leader=<leader_address()>" (as agents are told), so a
  // client can retry there.
  Store* standby_store = nullptr;
  std::function<std::string()> leader_address;
  absl::Duration standby_liveness = absl::Seconds(20);
};

// Receives a RunProbe's events.
class ProbeEventSink {
 public:
  virtual ~ProbeEventSink() = default;
  // Queues one event. May refuse (return false) only outcome events, when
  // the reader is too slow; they are then counted in Done.
  virtual bool OnEvent(v1::RunProbeEvent event) = 0;
  // The run ended (OK after Done; CANCELLED after Cancel(); DEADLINE_EXCEEDED
  // or UNAVAILABLE after a Done with missing probes). Last call on the sink.
  virtual void OnDone(const absl::Status& status) = 0;
};

// A running ad-hoc probe.
class ProbeRun {
 public:
  virtual ~ProbeRun() = default;
  virtual std::string id() const = 0;
  // Sends cancel to every agent still busy and ends the run (Done with
  // cancelled = true, then OnDone(CANCELLED)). Idempotent; no-op once done.
  virtual void Cancel() = 0;
};

class AdminCore : public IngestObserver {
 public:
  ~AdminCore() override = default;

  // Starts the liveness/deadline timer. Dependencies must outlive the core.
  static absl::StatusOr<std::unique_ptr<AdminCore>> Create(
      const AdminCoreOptions& options, const AdminCoreDeps& deps);

  // Validates and dispatches. On error nothing was sent and the sink is not
  // used. On success `sink` receives events until OnDone; it must stay
  // valid until then.
  virtual absl::StatusOr<std::shared_ptr<ProbeRun>> RunProbe(
      const v1::RunProbeRequest& request, ProbeEventSink* sink) = 0;

  virtual absl::StatusOr<v1::ApplySchedulesResponse> ApplySchedules(
      const v1::ApplySchedulesRequest& request) = 0;
  virtual absl::StatusOr<v1::ListSchedulesResponse> ListSchedules(
      const v1::ListSchedulesRequest& request) = 0;
  virtual absl::Status DeleteSchedule(
      const v1::DeleteScheduleRequest& request) = 0;
  virtual absl::StatusOr<v1::ListAgentsResponse> ListAgents(
      const v1::ListAgentsRequest& request) = 0;
  virtual absl::StatusOr<v1::GetVerdictsResponse> GetVerdicts(
      const v1::GetVerdictsRequest& request) = 0;
  // Current verdicts (healthy included) go to `callback` first, then every
  // transition, until the subscription is destroyed.
  virtual absl::StatusOr<std::unique_ptr<VerdictSource::Subscription>>
  WatchVerdicts(const v1::WatchVerdictsRequest& request,
                VerdictSource::Callback callback) = 0;
  virtual absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) = 0;
  virtual absl::StatusOr<v1::IncidentReport> Report(
      const v1::ReportRequest& request) = 0;

  // An agent's live ad-hoc result (SessionHub's handler).
  virtual void OnAdhocResult(const std::string& agent_id,
                             const v1::AdhocResult& result) = 0;

  // An agent's session was welcomed (SessionHub's handler): cancels it may
  // have missed while LOST or unreachable are sent again (log
  // adhoc_cancel_resent). An agent keeps probing a run across reconnects,
  // so without this a run cancelled while its agent was LOST would go on.
  virtual void OnAgentConnected(const std::string& agent_id) = 0;
  // Cancels waiting for their agent to reconnect.
  virtual size_t pending_cancels() = 0;

  // Runs in progress.
  virtual int active_runs() = 0;
  // Cancels every run and stops the timer. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_ADMIN_CORE_H_
