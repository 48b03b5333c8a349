#include "controller/session/session_hub.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/time/periodic_task.h"
#include "controller/session/session_impl.h"

namespace fleetcanary {
namespace controller {
namespace {

using session_internal::SessionHubCore;
using session_internal::SessionImpl;

class SessionHubImpl : public SessionHub, public SessionHubCore {
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

  void OnAgentWelcomed(const std::string& agent_id) override {
    std::shared_ptr<AgentWelcomedHandler> handler;
    {
      absl::MutexLock lock(&handler_mu_);
      handler = welcomed_handler_;
    }
    if (handler && *handler) (*handler)(agent_id);
  }

  void OnAdhocResult(const std::string& agent_id,
                     const v1::AdhocResult& r) override {
    std::shared_ptr<AdhocResultHandler> handler;
    {
      absl::MutexLock lock(&handler_mu_);
      handler = adhoc_handler_;
    }
    if (handler && *handler) (*handler)(agent_id, r);
  }

  void Shutdown() override { timer_.Stop(); }

  void Closed(SessionImpl* s) override {
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
  void Welcomed(const std::string& agent_id,
                std::shared_ptr<SessionImpl> s) override {
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
  bool AdhocAllowed(const std::string& agent_id,
                    const std::string& adhoc_id) override {
    absl::MutexLock lock(&mu_);
    auto it = adhoc_ids_.find(agent_id);
    return it != adhoc_ids_.end() &&
           std::find(it->second.begin(), it->second.end(), adhoc_id) !=
               it->second.end();
  }

  const SessionHubOptions& options() const override { return options_; }
  Ingest* ingest() override { return ingest_; }
  Scheduler* scheduler() override { return scheduler_; }
  Clock* clock() override { return clock_; }

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
