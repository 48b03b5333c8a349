#include "controller/session/session_hub.h"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/time/periodic_task.h"

namespace fleetcanary {
namespace controller {
namespace {

class SessionHubImpl;

class SessionImpl : public Session,
                    public AssignmentListener,
                    public std::enable_shared_from_this<SessionImpl> {
 public:
  SessionImpl(SessionHubImpl* hub, SessionSink* sink)
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

  // Heartbeat and liveness, from the hub's timer.
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
  bool HandleHello(const v1::Hello& hello);
  // Marks the outcomes this agent may not report (empty: all allowed).
  std::vector<bool> CheckOutcomes(const std::string& agent_id,
                                  const v1::OutcomeBatch& batch);
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

  SessionHubImpl* const hub_;
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

class SessionHubImpl : public SessionHub {
 public:
  SessionHubImpl(const SessionHubOptions& options, Ingest* ingest,
                 Scheduler* scheduler, ControllerMetrics* metrics, Clock* clock)
      : options_(WithDefaults(options)),
        ingest_(ingest),
        scheduler_(scheduler),
        metrics_(metrics),
        clock_(clock),
        timer_(clock, options_.heartbeat_interval, [this] { Tick(); }) {}
  ~SessionHubImpl() override { Shutdown(); }

  std::shared_ptr<Session> Open(SessionSink* sink) override {
    auto s = std::make_shared<SessionImpl>(this, sink);
    s->Touch(clock_->MonotonicNow());
    absl::MutexLock lock(&mu_);
    if (draining_) return nullptr;
    sessions_[s.get()] = s;
    metrics_->SessionOpened();
    return s;
  }

  void Drain(const std::string& reason, absl::Duration timeout) override {
    std::vector<std::shared_ptr<SessionImpl>> sessions;
    {
      absl::MutexLock lock(&mu_);
      draining_ = true;
      sessions = SnapshotLocked();
    }
    LogInfo("controller_draining",
            {{"sessions", absl::StrCat(sessions.size())}, {"reason", reason}});
    for (auto& s : sessions) s->StopReading();
    ingest_->Flush();  // Every received batch committed and acknowledged.
    for (auto& s : sessions) s->DrainAndFinish(reason);
    absl::MutexLock lock(&mu_);
    clock_->AwaitWithTimeout(
        &mu_,
        absl::Condition(
            +[](std::map<SessionImpl*, std::weak_ptr<SessionImpl>>* m) {
              return m->empty();
            },
            &sessions_),
        timeout);
  }

  int active_sessions() override {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(sessions_.size());
  }

  absl::Status SendToAgent(const std::string& agent_id,
                           v1::ControllerMessage message) override {
    std::vector<std::shared_ptr<SessionImpl>> sessions;
    {
      absl::MutexLock lock(&mu_);
      sessions = SnapshotLocked();
    }
    if (message.has_adhoc_probe()) {
      NoteAdhoc(agent_id, message.adhoc_probe().adhoc_id());
    }
    for (auto& s : sessions) {
      if (s->Deliver(agent_id, message)) return absl::OkStatus();
    }
    return absl::NotFoundError(
        absl::StrCat("agent \"", agent_id, "\" has no open session"));
  }

  void SetAdhocResultHandler(AdhocResultHandler handler) override {
    absl::MutexLock lock(&handler_mu_);
    adhoc_handler_ = std::make_shared<AdhocResultHandler>(std::move(handler));
  }

  void SetAgentWelcomedHandler(AgentWelcomedHandler handler) override {
    absl::MutexLock lock(&handler_mu_);
    welcomed_handler_ =
        std::make_shared<AgentWelcomedHandler>(std::move(handler));
  }

  void OnAgentWelcomed(const std::string& agent_id) {
    std::shared_ptr<AgentWelcomedHandler> handler;
    {
      absl::MutexLock lock(&handler_mu_);
      handler = welcomed_handler_;
    }
    if (handler && *handler) (*handler)(agent_id);
  }

  void OnAdhocResult(const std::string& agent_id, const v1::AdhocResult& r) {
    std::shared_ptr<AdhocResultHandler> handler;
    {
      absl::MutexLock lock(&handler_mu_);
      handler = adhoc_handler_;
    }
    if (handler && *handler) (*handler)(agent_id, r);
  }

  void Shutdown() override { timer_.Stop(); }

  void Closed(SessionImpl* s) {
    absl::MutexLock lock(&mu_);
    if (sessions_.erase(s) > 0) metrics_->SessionClosed();
    for (auto it = live_.begin(); it != live_.end();) {
      auto cur = it->second.lock();
      if (cur == nullptr || cur.get() == s) {
        it = live_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // `s` is now the one live session of `agent_id`; an older one is fenced
  // (closed, counted, logged): one live session per agent id.
  void Welcomed(const std::string& agent_id, std::shared_ptr<SessionImpl> s) {
    std::shared_ptr<SessionImpl> old;
    {
      absl::MutexLock lock(&mu_);
      std::weak_ptr<SessionImpl>& slot = live_[agent_id];
      old = slot.lock();
      slot = s;
    }
    if (old != nullptr && old != s) {
      LogWarning("agent_session_fenced",
                 {{"agent", agent_id},
                  {"reason", "a newer session for this agent id was opened"}});
      metrics_->AddCounter("session_fenced_total", 1);
      old->Fence();
    }
  }

  // Ad-hoc runs dispatched to each agent (their outcomes are accepted).
  void NoteAdhoc(const std::string& agent_id, const std::string& adhoc_id) {
    absl::MutexLock lock(&mu_);
    std::deque<std::string>& ids = adhoc_ids_[agent_id];
    if (std::find(ids.begin(), ids.end(), adhoc_id) != ids.end()) return;
    ids.push_back(adhoc_id);
    while (ids.size() > kMaxAdhocIdsPerAgent) ids.pop_front();
  }
  bool AdhocAllowed(const std::string& agent_id, const std::string& adhoc_id) {
    absl::MutexLock lock(&mu_);
    auto it = adhoc_ids_.find(agent_id);
    return it != adhoc_ids_.end() &&
           std::find(it->second.begin(), it->second.end(), adhoc_id) !=
               it->second.end();
  }

  const SessionHubOptions& options() const { return options_; }
  Ingest* ingest() { return ingest_; }
  Scheduler* scheduler() { return scheduler_; }
  Clock* clock() { return clock_; }

 private:
  std::vector<std::shared_ptr<SessionImpl>> SnapshotLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::shared_ptr<SessionImpl>> out;
    for (auto& [p, w] : sessions_) {
      if (auto s = w.lock()) out.push_back(std::move(s));
    }
    return out;
  }

  // Fills in the options' documented defaults (set before the timer starts:
  // its runs read them).
  static SessionHubOptions WithDefaults(SessionHubOptions options) {
    if (options.liveness_timeout <= absl::ZeroDuration()) {
      options.liveness_timeout = 2 * options.heartbeat_interval;
    }
    if (options.max_inflight_batches < 1) options.max_inflight_batches = 1;
    return options;
  }

  // The timer's run, every heartbeat_interval: each session heartbeats and
  // checks its peer's liveness.
  void Tick() {
    std::vector<std::shared_ptr<SessionImpl>> sessions;
    {
      absl::MutexLock lock(&mu_);
      sessions = SnapshotLocked();
    }
    const absl::Duration now = clock_->MonotonicNow();
    const absl::Time wall = clock_->Now();
    for (auto& s : sessions) s->Tick(now, wall, options_.liveness_timeout);
  }

  SessionHubOptions options_;
  Ingest* const ingest_;
  Scheduler* const scheduler_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  std::map<SessionImpl*, std::weak_ptr<SessionImpl>> sessions_
      ABSL_GUARDED_BY(mu_);
  // The welcomed session of each agent id.
  std::map<std::string, std::weak_ptr<SessionImpl>> live_ ABSL_GUARDED_BY(mu_);
  static constexpr size_t kMaxAdhocIdsPerAgent = 1024;
  std::map<std::string, std::deque<std::string>> adhoc_ids_
      ABSL_GUARDED_BY(mu_);

  absl::Mutex handler_mu_;
  std::shared_ptr<AdhocResultHandler> adhoc_handler_
      ABSL_GUARDED_BY(handler_mu_);
  std::shared_ptr<AgentWelcomedHandler> welcomed_handler_
      ABSL_GUARDED_BY(handler_mu_);

  // Last: its runs use the members above, so it is stopped (destroyed)
  // before they are.
  PeriodicTask timer_;
};

bool SessionImpl::OnMessage(v1::AgentMessage& message) {
  std::string agent_id, region;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || stop_reading_) {
      paused_ = true;
      return false;  // Draining: ignore; the agent resends later.
    }
    last_rx_ = hub_->clock()->MonotonicNow();
    if (!has_hello_ && message.msg_case() != v1::AgentMessage::kHello) {
      FinishLocked(absl::InvalidArgumentError(
          "agent session: the first message must be hello"));
      return false;
    }
    agent_id = agent_id_;
    region = region_;
  }
  switch (message.msg_case()) {
    case v1::AgentMessage::kHello:
      return HandleHello(message.hello());
    case v1::AgentMessage::kOutcomes: {
      auto self = shared_from_this();
      std::vector<bool> rejected = CheckOutcomes(agent_id, message.outcomes());
      {
        absl::MutexLock lock(&mu_);
        ++inflight_;
      }
      hub_->ingest()->SubmitOutcomes(
          agent_id, region, std::move(*message.mutable_outcomes()),
          [self](const IngestResult& r) { self->OnIngested(r, true); },
          std::move(rejected));
      return ReadMore();
    }
    case v1::AgentMessage::kPlatformMetrics: {
      auto self = shared_from_this();
      {
        absl::MutexLock lock(&mu_);
        ++inflight_;
      }
      hub_->ingest()->SubmitPlatform(
          agent_id, region, std::move(*message.mutable_platform_metrics()),
          [self](const IngestResult& r) { self->OnIngested(r, false); });
      return ReadMore();
    }
    case v1::AgentMessage::kHeartbeat:
      hub_->scheduler()->AgentHeartbeat(agent_id, message.heartbeat());
      hub_->ingest()->ReportDropped(agent_id, region,
                                    message.heartbeat().dropped_total());
      return true;
    case v1::AgentMessage::kAdhocResult:
      // Ad-hoc outcomes also arrive through the outbox (exactly once); the
      // live result stream is for the admin API's RunProbe.
      hub_->OnAdhocResult(agent_id, message.adhoc_result());
      return true;
    case v1::AgentMessage::kGoodbye: {
      // A clean shutdown: DRAINED (not LOST) once this stream closes, which
      // it does now, with OK.
      LogInfo(
          "agent_goodbye",
          {{"agent", agent_id},
           {"reason", message.goodbye().reason()},
           {"outbox_depth", absl::StrCat(message.goodbye().outbox_depth())}});
      {
        absl::MutexLock registration(&registration_mu_);
        bool registered;
        {
          absl::MutexLock lock(&mu_);
          registered = registered_;
        }
        if (registered) hub_->scheduler()->AgentDrained(agent_id, this);
      }
      absl::MutexLock lock(&mu_);
      FinishLocked(absl::OkStatus());
      return false;
    }
    default: {
      absl::MutexLock lock(&mu_);
      FinishLocked(absl::InvalidArgumentError(
          "agent session: empty or unknown message"));
      return false;
    }
  }
}

std::vector<bool> SessionImpl::CheckOutcomes(const std::string& agent_id,
                                             const v1::OutcomeBatch& batch) {
  std::vector<bool> rejected;
  int n = 0;
  std::string example;
  // A batch holds a few streams: each is looked up once (the lookups take
  // the scheduler's lock), then the answer is reused.
  struct Known {
    const v1::Outcome* first;
    bool ok;
  };
  std::vector<Known> known;
  auto same_stream = [](const v1::Outcome& a, const v1::Outcome& b) {
    return a.mode() == b.mode() && a.requested_bytes() == b.requested_bytes() &&
           a.adhoc_id() == b.adhoc_id() && a.schedule_id() == b.schedule_id() &&
           a.target() == b.target();
  };
  for (int i = 0; i < batch.outcomes_size(); ++i) {
    const v1::Outcome& o = batch.outcomes(i);
    auto it = std::find_if(known.begin(), known.end(), [&](const Known& k) {
      return same_stream(*k.first, o);
    });
    bool ok;
    if (it != known.end()) {
      ok = it->ok;
    } else {
      ok = o.adhoc_id().empty() ? hub_->scheduler()->WasAssigned(agent_id, o)
                                : hub_->AdhocAllowed(agent_id, o.adhoc_id());
      // Bounded: a batch of many streams costs lookups, not a long scan.
      if (known.size() < 32) known.push_back({&o, ok});
    }
    if (ok) continue;
    if (rejected.empty()) rejected.resize(batch.outcomes_size(), false);
    rejected[i] = true;
    if (n++ == 0) {
      example = o.adhoc_id().empty()
                    ? absl::StrCat(o.schedule_id(), "/", o.target(), "/",
                                   v1::InvokeMode_Name(o.mode()), "/",
                                   o.requested_bytes())
                    : absl::StrCat("adhoc ", o.adhoc_id());
    }
  }
  if (n > 0) {
    LogWarning("outcomes_rejected",
               {{"agent", agent_id},
                {"count", absl::StrCat(n)},
                {"example", example},
                {"reason",
                 "not a stream assigned to this agent nor one of "
                 "its ad-hoc runs"}});
  }
  return rejected;
}

bool SessionImpl::HandleHello(const v1::Hello& hello) {
  {
    absl::MutexLock lock(&mu_);
    if (has_hello_) {
      FinishLocked(absl::InvalidArgumentError("hello: sent twice"));
      return false;
    }
    if (hello.agent_id().empty() || hello.agent_id().size() > 128) {
      FinishLocked(absl::InvalidArgumentError(
          "hello.agent_id: required, at most 128 characters"));
      return false;
    }
    if (hello.region().empty() || hello.region().size() > 64) {
      FinishLocked(absl::InvalidArgumentError(
          "hello.region: required, at most 64 characters"));
      return false;
    }
    has_hello_ = true;
    agent_id_ = hello.agent_id();
    region_ = hello.region();
  }
  LogInfo("agent_session_open",
          {{"agent", hello.agent_id()},
           {"region", hello.region()},
           {"last_acked", absl::StrCat(hello.last_acked_sequence())}});
  // Welcome carries the watermark after everything already queued for this
  // agent (e.g. from its previous stream) is committed: an empty batch is a
  // barrier in ingest's FIFO. So the agent never treats as lost an outcome
  // that a late commit would still apply.
  auto self = shared_from_this();
  hub_->ingest()->SubmitOutcomes(
      hello.agent_id(), hello.region(), v1::OutcomeBatch(),
      [self, hello](const IngestResult& r) { self->Welcome(hello, r); });
  return true;
}

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

}  // namespace

absl::StatusOr<std::unique_ptr<SessionHub>> SessionHub::Create(
    const SessionHubOptions& options, Ingest* ingest, Scheduler* scheduler,
    ControllerMetrics* metrics, Clock* clock) {
  if (!ingest || !scheduler || !metrics || !clock) {
    return absl::InvalidArgumentError("session hub: missing dependency");
  }
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat_interval: must be > 0");
  }
  return std::unique_ptr<SessionHub>(
      new SessionHubImpl(options, ingest, scheduler, metrics, clock));
}

}  // namespace controller
}  // namespace fleetcanary
