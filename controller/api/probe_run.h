// One running ad-hoc probe (internal to controller/api/; the public
// interface is ProbeRun in admin_core.h).
//
// Dispatch sends each LIVE agent of each planned region its share of
// `count` (and of the concurrency) as an AdhocProbe and emits one Dispatched
// event per region; an agent that cannot be sent to is lost at once. Every
// outcome (live or through ingest) counts once per probe id, goes to the
// region's summary and, with stream_outcomes, to the sink. A region's
// summaries are emitted once all its agents are done or lost; Done (then
// OnDone) follows the last region: OK, or UNAVAILABLE naming the missing
// probes and lost agents.
//
// Check (the core's timer) marks agents that are no longer LIVE as lost
// (their share is cancelled, now and when they reconnect), counts an agent
// that said "done" as done once it had kDoneGrace to deliver through ingest,
// and ends the run with DEADLINE_EXCEEDED after its deadline: the expected
// duration of its slowest agent (waves of probes at their timeout) plus 30s,
// at most max_duration.
//
// Thread-safety: thread-safe; the sink and `send` are called with the run's
// lock held (they must not block nor call back into the run).
#ifndef FLEETCANARY_CONTROLLER_API_PROBE_RUN_H_
#define FLEETCANARY_CONTROLLER_API_PROBE_RUN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "analysis/probe_summary.h"
#include "common/time/clock.h"
#include "controller/api/admin_core.h"
#include "controller/api/pending_cancels.h"
#include "controller/api/probe_plan.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {

// Sends one AdhocProbe to an agent (AdminCoreDeps::send_adhoc).
using SendFn =
    std::function<absl::Status(const std::string&, const v1::AdhocProbe&)>;

// One agent's part of a run.
struct AgentShare {
  std::string agent_id;
  std::string region;
  uint64_t expected = 0;
  uint64_t received = 0;
  bool done = false;  // Everything received (or the run no longer waits).
  bool lost = false;  // Session ended first.
  // The agent said it finished; outcomes may still come through ingest.
  bool reported_done = false;
  absl::Duration reported_at;
};

class ProbeRunImpl : public ProbeRun {
 public:
  ProbeRunImpl(std::string id, const v1::RunProbeRequest& request,
               ProbeEventSink* sink, SendFn send, Clock* clock,
               std::shared_ptr<PendingCancels> pending);

  std::string id() const override { return id_; }
  // OnDone was called.
  bool finished() const { return finished_.load(); }

  void Cancel() override;

  // Sends every share of `plan` and emits Dispatched events; `concurrency`
  // is the run's, split over each region's agents.
  void Dispatch(const std::vector<RegionPlan>& plan, uint32_t concurrency,
                absl::Duration max_duration);

  // One outcome of `agent_id`'s share (ignored when seen before, from an
  // agent not in the run, or after the run finished).
  void AddOutcome(const std::string& agent_id, const v1::Outcome& o);

  // A live result: its outcome, and whether the agent says it is done.
  void OnResult(const std::string& agent_id, const v1::AdhocResult& r);

  // Timer: lost agents (not LIVE in `states`), agents done but short, the
  // deadline; `now` on the monotonic clock.
  void Check(const std::map<std::string, v1::AgentState>& states,
             absl::Duration now);

 private:
  // Sends the region's shares and emits its Dispatched event; returns how
  // long its slowest agent should take.
  absl::Duration DispatchRegionLocked(const RegionPlan& r, uint32_t concurrency,
                                      absl::Duration per_probe)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One agent's AdhocProbe: `share` of count in region `r`.
  v1::AdhocProbe ShareProbe(const RegionPlan& r, uint64_t share,
                            uint32_t concurrency) const;
  // AdhocProbe{cancel} of this run in `region`.
  v1::AdhocProbe CancelProbe(const std::string& region) const;
  uint64_t MissingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendCancelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RegionDoneLocked(const std::string& region)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const absl::Status& status, bool cancelled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string id_;
  const v1::RunProbeRequest request_;
  ProbeEventSink* const sink_;
  const SendFn send_;
  Clock* const clock_;
  const std::shared_ptr<PendingCancels> pending_;
  std::atomic<bool> finished_{false};

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<std::string, AgentShare> shares_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> region_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> region_agents_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, analysis::SummaryBuilder> builders_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> summarized_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> lost_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_events_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
};

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_PROBE_RUN_H_
