// A session's lifecycle (session_impl.h): Welcome and registration, acks
// and flow control, heartbeats and liveness, close.
#include "controller/session/session_impl.h"

#include <utility>

#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace controller {
namespace session_internal {

void SessionImpl::Welcome(const v1::Hello& hello, const IngestResult& r) {
  bool welcomed;
  {
    absl::MutexLock registration(&registration_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || sink_ == nullptr) return;
      if (!r.status.ok()) {
        FinishLocked(absl::UnavailableError(r.status.message()));
        return;
      }
      // Assignments pushed while registering wait until Welcome is sent.
      holding_assignments_ = true;
    }
    // Registered before the agent can see Welcome (and send outcomes), so
    // the scheduler knows this agent's streams when its first batch arrives.
    hub_->Welcomed(hello.agent_id(), shared_from_this());
    hub_->scheduler()->AgentConnected(hello, this);
    welcomed = SendWelcome(r);
  }
  // Outside the session's locks: the handler sends on this session.
  if (welcomed) hub_->OnAgentWelcomed(hello.agent_id());
}

bool SessionImpl::SendWelcome(const IngestResult& r) {
  absl::MutexLock lock(&mu_);
  holding_assignments_ = false;
  if (finished_ || sink_ == nullptr) return false;
  v1::ControllerMessage m;
  v1::Welcome* w = m.mutable_welcome();
  w->set_controller_id(hub_->options().controller_id);
  *w->mutable_heartbeat_interval() =
      DurationToProto(hub_->options().heartbeat_interval);
  *w->mutable_metrics_period() =
      DurationToProto(hub_->options().metrics_period);
  w->set_applied_sequence(r.applied_sequence);
  SendLocked(std::move(m));
  registered_ = true;
  if (held_assignments_.has_value()) {
    v1::ControllerMessage a;
    *a.mutable_assignments() = std::move(*held_assignments_);
    held_assignments_.reset();
    SendLocked(std::move(a));
  }
  return true;
}

void SessionImpl::OnIngested(const IngestResult& r, bool outcomes) {
  absl::MutexLock lock(&mu_);
  --inflight_;
  if (!r.status.ok()) {
    if (outcomes) {
      LogWarning("ingest_rejected",
                 {{"agent", agent_id_}, {"error", r.status.ToString()}});
      // Anything but bad input is transient: the agent reconnects and resends.
      FinishLocked(r.status.code() == absl::StatusCode::kInvalidArgument
                       ? r.status
                       : absl::UnavailableError(r.status.message()));
    }
    return;
  }
  if (outcomes) {
    v1::ControllerMessage m;
    m.mutable_ack()->set_applied_sequence(r.applied_sequence);
    SendLocked(std::move(m));
  }
  MaybeResumeLocked();
}

bool SessionImpl::ReadMore() {
  {
    absl::MutexLock lock(&mu_);
    paused_ = true;
    if (inflight_ >= hub_->options().max_inflight_batches) return false;
    // Set before asking, so a callback that comes at once finds it.
    awaiting_capacity_ = true;
  }
  auto self = shared_from_this();
  if (!hub_->ingest()->AwaitCapacity([self] { self->OnCapacity(); })) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  awaiting_capacity_ = false;
  paused_ = false;
  return true;
}

void SessionImpl::OnCapacity() {
  absl::MutexLock lock(&mu_);
  awaiting_capacity_ = false;
  MaybeResumeLocked();
}

void SessionImpl::MaybeResumeLocked() {
  if (paused_ && !awaiting_capacity_ && !stop_reading_ && !finished_ &&
      sink_ != nullptr && inflight_ < hub_->options().max_inflight_batches) {
    paused_ = false;
    sink_->ResumeReads();
  }
}

void SessionImpl::Tick(absl::Duration now, absl::Time wall,
                       absl::Duration liveness) {
  std::string paused_agent;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || sink_ == nullptr) return;
    if (!paused_ && now - last_rx_ > liveness) {
      LogWarning("agent_session_timeout", {{"agent", agent_id_}});
      FinishLocked(absl::DeadlineExceededError(
          "agent session: no message within the liveness timeout"));
      return;
    }
    v1::ControllerMessage m;
    *m.mutable_heartbeat()->mutable_time() = TimeToProto(wall);
    SendLocked(std::move(m));
    if (paused_ && registered_) paused_agent = agent_id_;
  }
  // The agent's heartbeats wait unread behind our own pause: tell the
  // scheduler it is alive. Outside mu_, since the scheduler calls listeners
  // (OnLost) under its own lock.
  if (!paused_agent.empty()) {
    hub_->scheduler()->AgentStreamPaused(paused_agent, this);
  }
}

void SessionImpl::OnClosed() {
  {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
    finished_ = true;
  }
  absl::MutexLock registration(&registration_mu_);
  std::string agent_id;
  bool registered;
  {
    absl::MutexLock lock(&mu_);
    agent_id = agent_id_;
    registered = registered_;
  }
  if (registered) {
    hub_->scheduler()->AgentDisconnected(agent_id, this);
    LogInfo("agent_session_closed", {{"agent", agent_id}});
  }
  hub_->Closed(this);
}

}  // namespace session_internal
}  // namespace controller
}  // namespace fleetcanary
