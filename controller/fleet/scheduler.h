// The fleet registry and the scheduler.
//
// Registry: agents with their identity (Hello), liveness (heartbeats, with a
// timeout of `liveness_timeout`, checked every heartbeat_interval/4 on the
// injected Clock) and state (LIVE, LOST, DRAINING, DRAINED after a goodbye).
//
// Scheduler: turns schedules (target × regions × modes × size ladder × rate)
// into per-agent AssignmentSets. The unit of placement is a stream *pair*
// (schedule, region, size): both invoke modes of a size go to the same agent,
// interleaved half an interval apart, so each mode is the other's concurrent
// control. Within a region pairs are placed by rendezvous (highest random
// weight) hashing with bounded loads: each pair goes to its highest-scoring
// live agents whose load is below ceil(load_factor × pairs × k / agents), so
// placement is balanced and moves little when agents join or leave. Start
// offsets are a stable hash-derived jitter within the interval. The
// placement itself is a pure function (placement.h).
//
// A lost agent (stream closed, or no heartbeat for liveness_timeout; a stream
// the controller itself stopped reading for flow control counts as
// heartbeating, AgentStreamPaused) is taken
// out of placement at once and its pairs move to the region's other agents,
// whose new sets are pushed immediately. An agent lost by heartbeat timeout
// has its stream closed (AssignmentListener::OnLost) so that it reconnects;
// a heartbeat that still arrives on its open stream makes it LIVE again at
// once (a paused process comes back with its work). Both ways back are
// logged and counted with the time spent LOST. Regions with schedules but no
// live agent are reported: a log line on each change, RegionsWithoutAgents(),
// and the fleetcanary_regions_without_agents metric.
//
// Thread-safety: all methods are thread-safe. AssignmentListener calls are
// made with the scheduler's lock held: listeners must only enqueue, never
// block or call back into the scheduler.
#ifndef FLEETCANARY_CONTROLLER_FLEET_SCHEDULER_H_
#define FLEETCANARY_CONTROLLER_FLEET_SCHEDULER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {

struct SchedulerOptions {
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // An agent without a heartbeat for this long is LOST (0 = 2 intervals).
  absl::Duration liveness_timeout = absl::ZeroDuration();
  // Bounded-load slack (>= 1): an agent takes at most this multiple of its
  // fair share of a region's pairs.
  double load_factor = 1.25;
  // Platform-metrics period, the turn length of size rotation
  // (Schedule.size_rotation).
  absl::Duration rotation_period = absl::Seconds(60);
  // Optional: receives agents_lost_total, agents_recovered_total and
  // agent_lost_seconds_total (the time agents spent LOST before coming back).
  ControllerMetrics* metrics = nullptr;
  // A DRAINED agent (clean shutdown) is forgotten this long after it said
  // goodbye, unless it comes back first.
  absl::Duration forget_drained_after = absl::Hours(1);
  // Which target URL addresses ApplySchedules accepts (the fleet file and the
  // admin API alike): a URL whose host is an IP literal or localhost in a
  // loopback, private, link-local (cloud metadata) or otherwise special range
  // is refused with INVALID_ARGUMENT naming the field, unless these options
  // allow it (allow_loopback, allow_private, allow_link_local,
  // allowed_networks). Names are judged by each agent's guard when it
  // connects. Only the address part of the guard is used here.
  TargetGuardOptions target_addresses;
};

// Receives the complete AssignmentSet of one connected agent, whenever it
// changes. Must not block.
class AssignmentListener {
 public:
  virtual ~AssignmentListener() = default;
  virtual void OnAssignments(const v1::AssignmentSet& set) = 0;
  // The agent was marked LOST (heartbeat timeout) while this listener was
  // its current one: the listener should close its stream so the agent
  // reconnects. Must not block.
  virtual void OnLost() {}
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Loads targets and schedules from `store` and starts the liveness timer.
  // `store` and `clock` must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(
      const SchedulerOptions& options, Store* store, Clock* clock);

  // Creates or replaces targets and schedules (and with `prune`, deletes the
  // schedules not named), persists them, re-places and pushes the changed
  // sets. INVALID_ARGUMENT naming the field for unknown targets/regions,
  // empty size ladders or bad rates; nothing changes then.
  virtual absl::StatusOr<v1::ApplySchedulesResponse> ApplySchedules(
      const v1::ApplySchedulesRequest& request) = 0;
  virtual v1::ListSchedulesResponse ListSchedules() = 0;
  // NOT_FOUND when no such schedule.
  virtual absl::Status DeleteSchedule(const std::string& id) = 0;

  // Registers a connected agent (LIVE) and pushes its set to `listener`,
  // which stays registered until AgentDisconnected(id, listener). A second
  // connection with the same id replaces the first.
  virtual void AgentConnected(const v1::Hello& hello,
                              AssignmentListener* listener) = 0;
  // Records liveness. A LOST agent whose stream is still open (its listener
  // registered) becomes LIVE again and gets its assignments back.
  virtual void AgentHeartbeat(const std::string& agent_id,
                              const v1::Heartbeat& heartbeat) = 0;
  // The controller is not reading the agent's open stream (flow control
  // paused it while ingest catches up), so the agent's heartbeats wait
  // unread in the transport: counts as a heartbeat for liveness, so an agent
  // is never marked LOST for the controller's own backlog. Changes nothing
  // the agent reported (last_heartbeat stays the last one read); ignored
  // unless `listener` is the agent's current stream and the agent is LIVE
  // or DRAINING.
  virtual void AgentStreamPaused(const std::string& agent_id,
                                 AssignmentListener* listener) = 0;
  // The agent is marked LOST (if `listener` is still its current one) and
  // its work moves to the others.
  virtual void AgentDisconnected(const std::string& agent_id,
                                 AssignmentListener* listener) = 0;
  // Marks an agent DRAINING: it keeps its session but gets no work.
  virtual void AgentDraining(const std::string& agent_id) = 0;
  // The agent said goodbye (clean shutdown) on `listener`'s session: it is
  // DRAINED, not LOST, when that session closes, its work moves to the
  // others, and it is forgotten after forget_drained_after unless it
  // reconnects.
  virtual void AgentDrained(const std::string& agent_id,
                            AssignmentListener* listener) = 0;

  // Marks agents whose heartbeat is older than the liveness timeout LOST.
  // Also runs on the scheduler's own timer; exposed for tests.
  virtual void CheckLiveness() = 0;

  virtual v1::AssignmentSet AssignmentsFor(const std::string& agent_id) = 0;
  // Whether `outcome`'s stream (schedule, target, mode, size) was ever
  // assigned to `agent_id` by this process: the session accepts only those
  // (a late outcome of a stream that moved away still counts).
  virtual bool WasAssigned(const std::string& agent_id,
                           const v1::Outcome& outcome) = 0;
  virtual std::vector<v1::AgentInfo> ListAgents(const std::string& region) = 0;
  virtual std::vector<std::string> RegionsWithoutAgents() = 0;
  virtual std::vector<AgentCount> AgentCounts() = 0;
  // Every (region, target, mode) the schedules configure, with the union of
  // their size ladders (sorted): the series /metrics keeps at 0 until used.
  virtual std::vector<ConfiguredStreams> Configured() = 0;

  // Stops the liveness timer. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_FLEET_SCHEDULER_H_
