// Internal to controller/session: one agent stream's state machine
// (SessionImpl) and the hub services it uses (SessionHubCore). The public
// contract is session_hub.h; nothing outside this folder includes this file.
//
// SessionImpl is split by concern: the lifecycle, Welcome and flow control
// live in session_impl.cc, the per-message handlers in
// session_messages.cc, the hub (registry, timer, drain) in session_hub.cc.
//
// Thread-safety: SessionImpl's methods are thread-safe (mu_, with
// registration_mu_ taken first where both are needed); SessionHubCore's
// methods are thread-safe and never call back into a session's locks.
#ifndef FLEETCANARY_CONTROLLER_SESSION_SESSION_IMPL_H_
#define FLEETCANARY_CONTROLLER_SESSION_SESSION_IMPL_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "controller/session/session_hub.h"

namespace fleetcanary {
namespace controller {
namespace session_internal {

class SessionImpl;

// What a session needs from its hub. Implemented by the hub; outlives every
// session it opened.
class SessionHubCore {
 public:
  virtual ~SessionHubCore() = default;
  virtual const SessionHubOptions& options() const = 0;
  virtual Ingest* ingest() = 0;
  virtual Scheduler* scheduler() = 0;
  virtual Clock* clock() = 0;
  // `s` is now the one live session of `agent_id`; an older one is fenced
  // (closed, counted, logged).
  virtual void Welcomed(const std::string& agent_id,
                        std::shared_ptr<SessionImpl> s) = 0;
  // Runs the AgentWelcomedHandler. REQUIRES: no session lock held.
  virtual void OnAgentWelcomed(const std::string& agent_id) = 0;
  // Runs the AdhocResultHandler.
  virtual void OnAdhocResult(const std::string& agent_id,
                             const v1::AdhocResult& result) = 0;
  // Whether `adhoc_id` was dispatched to `agent_id` (its outcomes count).
  virtual bool AdhocAllowed(const std::string& agent_id,
                            const std::string& adhoc_id) = 0;
  // `s` closed: forgets it.
  virtual void Closed(SessionImpl* s) = 0;
};

// One agent stream (see session_hub.h for the protocol). Shared: ingest
// callbacks hold it, so a late callback never touches a freed stream.
class SessionImpl : public Session,
                    public AssignmentListener,
                    public std::enable_shared_from_this<SessionImpl> {
 public:
  SessionImpl(SessionHubCore* hub, SessionSink* sink)
      : hub_(hub), sink_(sink) {}

  bool OnMessage(v1::AgentMessage& message) override;
  void OnClosed() override;
  void OnAssignments(const v1::AssignmentSet& set) override {
    absl::MutexLock lock(&mu_);
    if (holding_assignments_) {
      held_assignments_ = set;
      return;
    }
    v1::ControllerMessage m;
    *m.mutable_assignments() = set;
    SendLocked(std::move(m));
  }

  // The scheduler marked this agent LOST: close so it reconnects.
  void OnLost() override {
    absl::MutexLock lock(&mu_);
    LogWarning("agent_session_closed_lost", {{"agent", agent_id_}});
    FinishLocked(absl::UnavailableError(
        "agent session: agent marked LOST (no heartbeat within the liveness "
        "timeout); reconnect"));
  }
  // A newer session of the same agent id was welcomed: this one is fenced.
  void Fence() {
    absl::MutexLock lock(&mu_);
    registered_ = false;  // Deliver() and the scheduler no longer use it.
    FinishLocked(absl::AbortedError(
        "agent session: a newer session for this agent id was opened"));
  }

  // Heartbeat and liveness, from the hub's timer. While flow control holds
  // reads paused the stream is not timed out, and the scheduler is told the
  // agent is alive (Scheduler::AgentStreamPaused).
  void Tick(absl::Duration now, absl::Time wall, absl::Duration liveness);
  void Touch(absl::Duration now) {
    absl::MutexLock lock(&mu_);
    last_rx_ = now;
  }
  // Drain, step 1: ignore further messages.
  void StopReading() {
    absl::MutexLock lock(&mu_);
    stop_reading_ = true;
  }
  // Drain, step 2: say goodbye.
  void DrainAndFinish(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    v1::ControllerMessage m;
    m.mutable_drain()->set_reason(reason);
    SendLocked(std::move(m));
    FinishLocked(
        absl::UnavailableError(absl::StrCat("controller draining: ", reason)));
  }
  // Sends `m` if this is the welcomed, open session of `agent_id`.
  bool Deliver(const std::string& agent_id, v1::ControllerMessage m) {
    absl::MutexLock lock(&mu_);
    if (!registered_ || finished_ || sink_ == nullptr || agent_id_ != agent_id)
      return false;
    SendLocked(std::move(m));
    return true;
  }

 private:
  void SendLocked(v1::ControllerMessage m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sink_ != nullptr && !finished_) sink_->Send(std::move(m));
  }
  void FinishLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sink_ != nullptr && !finished_) {
      finished_ = true;
      sink_->Finish(s);
    }
  }
  // Message handlers (session_messages.cc). Each returns whether the
  // transport should read the next message now.
  bool HandleHello(const v1::Hello& hello);
  bool HandleOutcomes(const std::string& agent_id, const std::string& region,
                      v1::OutcomeBatch& batch);
  bool HandlePlatformMetrics(const std::string& agent_id,
                             const std::string& region,
                             v1::PlatformMetricBatch& metrics);
  bool HandleGoodbye(const std::string& agent_id, const v1::Goodbye& goodbye);
  bool RejectUnknown();
  // Marks the outcomes this agent may not report (empty: all allowed).
  std::vector<bool> CheckOutcomes(const std::string& agent_id,
                                  const v1::OutcomeBatch& batch);

  // Lifecycle and flow control (session_impl.cc).
  // Registers with the hub and the scheduler, then sends Welcome.
  void Welcome(const v1::Hello& hello, const IngestResult& r);
  // Sends Welcome and held assignments; false when the stream has ended.
  bool SendWelcome(const IngestResult& r);
  void OnIngested(const IngestResult& r, bool outcomes);
  // After a submission: whether the transport should read on now. If not,
  // reads pause until OnIngested or OnCapacity resume them.
  bool ReadMore();
  // Ingest has room again.
  void OnCapacity();
  // Resumes reads paused by flow control once nothing holds them.
  void MaybeResumeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SessionHubCore* const hub_;
  // Held across scheduler (de)registration so that it happens in order.
  absl::Mutex registration_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  // State below is protected by mu_.
  SessionSink* sink_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_reading_ ABSL_GUARDED_BY(mu_) = false;
  // Reads are paused (OnMessage returned false, or will).
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  // Waiting for Ingest::AwaitCapacity's callback.
  bool awaiting_capacity_ ABSL_GUARDED_BY(mu_) = false;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  std::string agent_id_ ABSL_GUARDED_BY(mu_);
  std::string region_ ABSL_GUARDED_BY(mu_);
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_rx_ ABSL_GUARDED_BY(mu_);
  bool has_hello_ ABSL_GUARDED_BY(mu_) = false;
  bool holding_assignments_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<v1::AssignmentSet> held_assignments_ ABSL_GUARDED_BY(mu_);
};

}  // namespace session_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SESSION_SESSION_IMPL_H_
