// Probe engine implementation: one loop thread that queues requests, admits
// them as transfers up to max_in_flight, drives them (multi_loop.h), ends
// them on their deadline or stall limit, and completes each with its outcome
// exactly once. See probe_engine.h for the contract.
//
// The data path of one probe: Start() queues it; Admit() builds its
// Transfer (transfer.h) and easy handle (request_builder.h); libcurl runs it
// through the transfer's callbacks; ReapFinished() or CheckDeadlines() ends
// it; Finish() builds its outcome (outcome_builder.h) and runs its callback.
#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <queue>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe/classify.h"
#include "agent/probe/multi_loop.h"
#include "agent/probe/outcome_builder.h"
#include "agent/probe/probe_engine.h"
#include "agent/probe/request_builder.h"
#include "agent/probe/transfer.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace {

using probe_internal::CompleteOutcome;
using probe_internal::ConfigureEasy;
using probe_internal::FillLabels;
using probe_internal::MultiLoop;
using probe_internal::NotStartedOutcome;
using probe_internal::PreparedRequest;
using probe_internal::PrepareRequest;
using probe_internal::ResolveLimits;
using probe_internal::Transfer;

class ProbeEngineImpl : public ProbeEngine {
 public:
  ProbeEngineImpl(const ProbeEngineOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}

  ~ProbeEngineImpl() override {
    Shutdown();
    for (const PooledEasy& e : easy_pool_) curl_easy_cleanup(e.easy);
  }

  absl::Status Init() {
    static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global != CURLE_OK) {
      return absl::InternalError(
          absl::StrCat("curl_global_init: ", curl_easy_strerror(global)));
    }
    if (options_.max_in_flight < 1) {
      return absl::InvalidArgumentError("max_in_flight must be at least 1");
    }
    if (options_.max_connections < 1) {
      return absl::InvalidArgumentError("max_connections must be at least 1");
    }
    if (!options_.credentials) {
      options_.credentials = [] { return sigv4::CredentialsFromEnvironment(); };
    }
    FC_RETURN_IF_ERROR(loop_.Init(options_.max_connections));
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  void Start(ProbeRequest request, DoneCallback done) override {
    in_flight_.fetch_add(1);
    {
      absl::MutexLock lock(&mu_);
      if (!stopped_) {
        // One wake per batch: the loop takes all of incoming_ at once, after
        // the wake that the first request of the batch sent.
        if (incoming_.empty()) loop_.Wake();
        incoming_.push_back({std::move(request), std::move(done)});
        return;
      }
    }
    CompleteWithoutTransfer(std::move(request), std::move(done),
                            "engine shut down");
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      stop_requested_ = true;
      loop_.Wake();
    }
    if (thread_.joinable()) thread_.join();
  }

  int in_flight() const override { return in_flight_.load(); }

 private:
  struct Pending {
    ProbeRequest request;
    DoneCallback done;
  };

  // Completes a request that never became a transfer (AGENT_ERROR).
  void CompleteWithoutTransfer(ProbeRequest request, DoneCallback done,
                               std::string detail) {
    v1::Outcome outcome =
        NotStartedOutcome(request, clock_->Now(), std::move(detail));
    // Completed before the callback runs, so that whoever the callback wakes
    // sees in_flight() without this probe.
    in_flight_.fetch_sub(1);
    if (done) done(std::move(outcome));
  }

  // Longest the next turn of the loop may sleep: until the earliest deadline
  // or stall check, not at all while queued requests can be admitted.
  absl::Duration MaxWait() {
    absl::Duration wait = options_.max_poll_wait;
    if (!deadlines_.empty()) {
      wait = std::min(wait, deadlines_.top().first - clock_->MonotonicNow());
    }
    if (!waiting_.empty() &&
        static_cast<int>(active_.size()) < options_.max_in_flight) {
      wait = absl::ZeroDuration();
    }
    return wait;
  }

  void Loop() {
    while (true) {
      loop_.RunOnce(MaxWait(), [this](int fd) { NoteSocketActivity(fd); });
      ReapFinished();
      CheckDeadlines();
      if (TakeIncoming()) break;
      AdmitWaiting();
    }
    AbortAll();
  }

  // Moves requests Start() queued to waiting_. Returns true once Shutdown()
  // was requested (no request is queued after that).
  bool TakeIncoming() {
    std::vector<Pending> batch;
    absl::MutexLock lock(&mu_);
    // Swapped, not cleared, so that a burst's worth of capacity is not kept.
    batch.swap(incoming_);
    for (Pending& p : batch) waiting_.push_back(std::move(p));
    if (stop_requested_) stopped_ = true;
    return stopped_;
  }

  // Shutdown: aborts everything, in flight and queued.
  void AbortAll() {
    std::vector<uint64_t> ids;
    ids.reserve(active_.size());
    for (const auto& [id, t] : active_) ids.push_back(id);
    for (uint64_t id : ids) {
      auto it = active_.find(id);
      it->second->Abort(LocalAbort::kAgentFault, "engine shut down");
      RemoveByEngine(it->second.get());
      Finish(id, CURLE_OK);
    }
    while (!waiting_.empty()) {
      Pending p = std::move(waiting_.front());
      waiting_.pop_front();
      CompleteWithoutTransfer(std::move(p.request), std::move(p.done),
                              "engine shut down");
    }
  }

  // Bytes (or the end) arrived on `fd`: activity for the transfer that alone
  // uses it, even if libcurl does not pass anything on yet (a header line
  // trickled one byte at a time).
  void NoteSocketActivity(int fd) {
    auto owner = socket_owner_.find(fd);
    if (owner == socket_owner_.end()) return;
    auto it = active_.find(owner->second);
    if (it == active_.end()) return;
    it->second->last_activity = clock_->MonotonicNow();
  }

  void ForgetSockets(Transfer* t) {
    for (int fd : t->owned_fds) {
      auto owner = socket_owner_.find(fd);
      if (owner != socket_owner_.end() && owner->second == t->id) {
        socket_owner_.erase(owner);
      }
    }
    t->owned_fds.clear();
  }

  void AdmitWaiting() {
    while (!waiting_.empty() &&
           static_cast<int>(active_.size()) < options_.max_in_flight) {
      Pending p = std::move(waiting_.front());
      waiting_.pop_front();
      Admit(std::move(p));
    }
  }

  // Validates a request and builds its transfer; AGENT_ERROR on our faults.
  void Admit(Pending p) {
    auto t = std::make_unique<Transfer>();
    t->id = next_id_++;
    t->clock = clock_;
    t->newly_connected = &newly_connected_;
    t->socket_owner = &socket_owner_;
    t->guard = options_.guard.get();
    t->loop = &loop_;
    t->request = std::move(p.request);
    t->done = std::move(p.done);
    t->limits = ResolveLimits(t->request.limits);
    t->start = clock_->MonotonicNow();
    t->deadline = t->start + t->limits.timeout;
    t->last_activity = t->start;
    // The outcome is filled in when the probe ends (Finish), so that a
    // probe in flight holds its labels once, in its request.
    t->start_time = clock_->Now();

    absl::Status status = Configure(t.get());
    if (!status.ok()) {
      if (t->easy != nullptr) ReleaseEasy(t.get());
      CompleteWithoutTransfer(std::move(t->request), std::move(t->done),
                              std::string(status.message()));
      return;
    }
    const CURLMcode mc = curl_multi_add_handle(loop_.multi(), t->easy);
    if (mc != CURLM_OK) {
      ReleaseEasy(t.get());
      CompleteWithoutTransfer(
          std::move(t->request), std::move(t->done),
          absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(mc)));
      return;
    }
    deadlines_.push({t->deadline, t->id});
    active_.emplace(t->id, std::move(t));
  }

  absl::Status Configure(Transfer* t) {
    FC_ASSIGN_OR_RETURN(
        const PreparedRequest prepared,
        PrepareRequest(t->request, t->limits, t->guard, &base_urls_));
    t->https = prepared.https;
    t->easy = AcquireEasy();
    if (t->easy == nullptr) {
      return absl::ResourceExhaustedError("curl_easy_init failed");
    }
    bool needs_reset = false;
    const absl::Status status =
        ConfigureEasy(prepared, options_, clock_, t, &needs_reset);
    t->easy_needs_reset = needs_reset || !status.ok();
    return status;
  }

  // A handle with the shared options set (SetHandleDefaults, WatchCloses):
  // a pooled one as its last transfer left it (ConfigureEasy sets every
  // option that differs between common transfers) unless that transfer
  // needed a reset, else a new one.
  CURL* AcquireEasy() {
    CURL* e = nullptr;
    if (!easy_pool_.empty()) {
      const PooledEasy pooled = easy_pool_.back();
      easy_pool_.pop_back();
      if (!pooled.needs_reset) return pooled.easy;
      e = pooled.easy;
      curl_easy_reset(e);
    } else {
      e = curl_easy_init();
      if (e == nullptr) return nullptr;
    }
    probe_internal::SetHandleDefaults(e, options_);
    loop_.WatchCloses(e);
    return e;
  }

  void ReleaseEasy(Transfer* t) {
    if (t->headers != nullptr) {
      // The handle still points at the list: clear that first.
      if (t->easy != nullptr) {
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, nullptr);
      }
      curl_slist_free_all(t->headers);
      t->headers = nullptr;
    }
    if (t->easy == nullptr) return;
    // Nothing of the finished transfer may be written to while pooled.
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, nullptr);
    if (static_cast<int>(easy_pool_.size()) < options_.max_in_flight) {
      easy_pool_.push_back({t->easy, t->easy_needs_reset});
    } else {
      curl_easy_cleanup(t->easy);
    }
    t->easy = nullptr;
  }

  void ReapFinished() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(loop_.multi(), &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      const CURLcode code = msg->data.result;
      curl_multi_remove_handle(loop_.multi(), msg->easy_handle);
      Finish(t->id, code);
    }
  }

  void CheckDeadlines() {
    if (deadlines_.empty()) return;
    const absl::Duration now = clock_->MonotonicNow();
    while (!deadlines_.empty() && deadlines_.top().first <= now) {
      const uint64_t id = deadlines_.top().second;
      deadlines_.pop();
      auto it = active_.find(id);
      if (it == active_.end()) continue;  // Already finished.
      Transfer* t = it->second.get();
      absl::Duration next = t->deadline;
      if (t->connected)
        next = std::min(next, t->last_activity + t->limits.stall);
      if (next > now) {
        deadlines_.push({next, id});
        continue;
      }
      if (now >= t->deadline) {
        t->Abort(
            LocalAbort::kDeadline,
            absl::StrCat("total timeout ",
                         absl::FormatDuration(t->limits.timeout), " exceeded"));
      } else {
        t->Abort(LocalAbort::kStallLimit,
                 absl::StrCat("no byte for ",
                              absl::FormatDuration(now - t->last_activity),
                              " (stall limit ",
                              absl::FormatDuration(t->limits.stall), ")"));
      }
      RemoveByEngine(t);
      Finish(id, CURLE_OK);
    }
    // Connected transfers whose stall deadline is earlier than what is queued.
    // (Re-armed lazily: each transfer gets one entry at connect time.)
    for (uint64_t id : newly_connected_) {
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      deadlines_.push(
          {it->second->last_activity + it->second->limits.stall, id});
    }
    newly_connected_.clear();
  }

  // Removes a transfer the engine itself ends (stall, deadline, shutdown),
  // noting first whether its TCP connection was up (libcurl keeps no record
  // of a connect that finished while the TLS handshake did not).
  void RemoveByEngine(Transfer* t) {
    if (!t->connected && t->last_fd >= 0) {
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      t->tcp_connected =
          getpeername(t->last_fd, reinterpret_cast<sockaddr*>(&peer), &len) ==
          0;
    }
    curl_multi_remove_handle(loop_.multi(), t->easy);
  }

  // Builds the outcome of a transfer already removed from the multi handle,
  // runs its callback and frees it.
  void Finish(uint64_t id, CURLcode code) {
    auto it = active_.find(id);
    std::unique_ptr<Transfer> t = std::move(it->second);
    active_.erase(it);
    const absl::Duration now = clock_->MonotonicNow();
    ForgetSockets(t.get());
    FillLabels(t->request, t->start_time, &t->outcome);
    CompleteOutcome(t.get(), code, now);
    ReleaseEasy(t.get());
    DoneCallback done = std::move(t->done);
    v1::Outcome outcome = std::move(t->outcome);
    t.reset();
    in_flight_.fetch_sub(1);
    if (done) done(std::move(outcome));
  }

  ProbeEngineOptions options_;
  Clock* const clock_;
  MultiLoop loop_;
  std::thread thread_;
  std::atomic<int> in_flight_{0};

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::vector<Pending> incoming_ ABSL_GUARDED_BY(mu_);
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  // State below is owned by the loop thread.
  std::deque<Pending> waiting_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Transfer>> active_;
  uint64_t next_id_ = 1;
  struct PooledEasy {
    CURL* easy;
    bool needs_reset;  // Options outside ConfigureEasy's common set changed.
  };
  std::vector<PooledEasy> easy_pool_;
  probe_internal::BaseUrlCache base_urls_;
  // Min-heap of (check time, transfer id); stale entries are skipped.
  using Deadline = std::pair<absl::Duration, uint64_t>;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<Deadline>>
      deadlines_;
  std::vector<uint64_t> newly_connected_;
  absl::flat_hash_map<int, uint64_t> socket_owner_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ProbeEngine>> ProbeEngine::Create(
    const ProbeEngineOptions& options, Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("clock: required");
  auto engine = std::make_unique<ProbeEngineImpl>(options, clock);
  absl::Status status = engine->Init();
  if (!status.ok()) return status;
  return std::unique_ptr<ProbeEngine>(std::move(engine));
}

}  // namespace fleetcanary
