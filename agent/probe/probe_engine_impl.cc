// Probe engine implementation: libcurl multi in socket-action mode over epoll,
// one loop thread. See probe_engine.h for the contract.
#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <queue>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe/classify.h"
#include "agent/probe/probe_engine.h"
#include "common/log/log.h"
#include "common/payload/payload.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace {

// Response bodies of non-2xx answers are not verified; read at most this much.
constexpr uint64_t kErrorBodyCap = 64 * 1024;

struct Limits {
  absl::Duration timeout = absl::Seconds(30);
  absl::Duration stall = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(5);
  uint64_t max_body = 256ull << 20;
  uint64_t max_header = 64ull << 10;
};

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

Limits ResolveLimits(const v1::ProbeLimits& l) {
  Limits out;
  if (l.has_timeout() && FromProto(l.timeout()) > absl::ZeroDuration()) {
    out.timeout = FromProto(l.timeout());
  }
  if (l.has_stall_limit() &&
      FromProto(l.stall_limit()) > absl::ZeroDuration()) {
    out.stall = FromProto(l.stall_limit());
  }
  if (l.has_connect_timeout() &&
      FromProto(l.connect_timeout()) > absl::ZeroDuration()) {
    out.connect_timeout = FromProto(l.connect_timeout());
  }
  if (l.max_body_bytes() > 0) out.max_body = l.max_body_bytes();
  if (l.max_header_bytes() > 0) out.max_header = l.max_header_bytes();
  return out;
}

std::string HttpVersionName(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0:
      return "1.0";
    case CURL_HTTP_VERSION_1_1:
      return "1.1";
    case CURL_HTTP_VERSION_2_0:
      return "2";
    case CURL_HTTP_VERSION_3:
      return "3";
    default:
      return "";
  }
}

// One invocation in flight. Owned by the engine's `active_` map.
struct Transfer {
  uint64_t id = 0;
  Clock* clock = nullptr;
  // Where the connect hook reports this transfer so its stall check is armed.
  std::vector<uint64_t>* newly_connected = nullptr;
  // Socket -> the transfer that alone uses it (fresh connections only), so
  // the loop can count every byte that arrives as activity.
  absl::flat_hash_map<int, uint64_t>* socket_owner = nullptr;
  // Null = every address allowed.
  const TargetGuard* guard = nullptr;
  ProbeRequest request;
  ProbeEngine::DoneCallback done;
  Limits limits;
  v1::Outcome outcome;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  char error[CURL_ERROR_SIZE] = {0};
  bool https = false;

  absl::Duration start;
  absl::Duration deadline;
  // Last time a byte arrived (or the connection was established).
  absl::Duration last_activity;
  bool connected = false;  // PREREQFUNCTION ran.
  // TCP connected although the connection was not ready for the request yet
  // (e.g. aborted during the TLS handshake).
  bool tcp_connected = false;
  int last_fd = -1;  // Most recent socket opened for this transfer.
  // Sockets registered in `socket_owner` for this transfer.
  std::vector<int> owned_fds;
  // The first address the target guard refused; the transfer is AGENT_ERROR
  // unless the guard allowed another address of the host (which then decides
  // the outcome as usual).
  std::string guard_refusal;
  bool guard_allowed_any = false;

  // Response state.
  uint64_t header_bytes = 0;
  bool status_line_seen = false;
  bool headers_complete = false;
  int status = 0;
  std::optional<absl::Duration> ttfb;
  std::optional<uint64_t> declared_canary_bytes;
  std::optional<uint64_t> content_length;
  std::optional<uint64_t> declared_seed;
  std::optional<std::string> probe_id_back;
  std::string request_id;
  std::string trace_id;

  bool verify = false;
  std::optional<PayloadVerifier> verifier;
  uint64_t expected = 0;
  uint64_t received = 0;
  uint32_t chunks = 0;
  absl::Duration first_body;
  absl::Duration last_body;
  absl::Duration max_gap;

  LocalAbort abort = LocalAbort::kNone;
  std::string abort_detail;

  void Abort(LocalAbort why, std::string detail) {
    if (abort != LocalAbort::kNone) return;
    abort = why;
    abort_detail = std::move(detail);
  }
};

// --- libcurl callbacks (run on the loop thread) ---------------------------

int PrereqCallback(void* clientp, char*, char*, int, int) {
  auto* t = static_cast<Transfer*>(clientp);
  if (!t->connected) t->newly_connected->push_back(t->id);
  t->connected = true;
  t->last_activity = t->clock->MonotonicNow();
  return CURL_PREREQFUNC_OK;
}

curl_socket_t OpenSocketCallback(void* clientp, curlsocktype,
                                 curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(clientp);
  if (t->guard != nullptr) {
    // Before the socket exists: a refused address is never connected to.
    const absl::Status allowed = t->guard->CheckAddress(
        &address->addr, static_cast<socklen_t>(address->addrlen));
    if (!allowed.ok()) {
      if (t->guard_refusal.empty()) {
        t->guard_refusal = std::string(allowed.message());
        if (!absl::StartsWith(t->guard_refusal, "target guard")) {
          t->guard_refusal = absl::StrCat("target guard: ", t->guard_refusal);
        }
      }
      return CURL_SOCKET_BAD;
    }
    t->guard_allowed_any = true;
  }
  const int fd = socket(address->family, address->socktype | SOCK_CLOEXEC,
                        address->protocol);
  t->last_fd = fd;
  if (fd < 0) {
    const int e = errno;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
      t->Abort(LocalAbort::kAgentFault,
               absl::StrCat("cannot open a socket: ", std::strerror(e)));
    }
    return CURL_SOCKET_BAD;
  }
  if (!t->request.transport.keep_alive()) {
    // Fresh connection, never shared (FORBID_REUSE): its bytes are ours.
    (*t->socket_owner)[fd] = t->id;
    t->owned_fds.push_back(fd);
  }
  return fd;
}

bool HeaderIs(absl::string_view name, absl::string_view want) {
  return absl::EqualsIgnoreCase(name, want);
}

// Called once the final (non-1xx) header block is complete. Returns false to
// abort the transfer.
bool OnHeadersComplete(Transfer* t) {
  t->headers_complete = true;
  const ProbeRequest& r = t->request;
  const std::optional<uint64_t> declared =
      t->declared_canary_bytes ? t->declared_canary_bytes : t->content_length;
  if (t->status < 200 || t->status > 299) {
    t->expected = declared.value_or(0);
    return true;
  }
  t->verify = true;
  t->expected = declared.value_or(r.size_bytes);
  if (t->expected != r.size_bytes) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat("response declares ", t->expected,
                          " bytes, requested ", r.size_bytes));
    return false;
  }
  if (t->declared_seed && *t->declared_seed != r.seed) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat("response seed ", *t->declared_seed, ", requested ",
                          r.seed));
    return false;
  }
  if (!r.probe_id.empty()) {
    if (!t->probe_id_back) {
      t->Abort(LocalAbort::kIntegrity, "x-canary-probe-id missing");
      return false;
    }
    if (*t->probe_id_back != r.probe_id) {
      t->Abort(LocalAbort::kIntegrity,
               absl::StrCat("x-canary-probe-id is \"", *t->probe_id_back,
                            "\", sent \"", r.probe_id, "\""));
      return false;
    }
  }
  if (t->expected > t->limits.max_body) {
    t->Abort(
        LocalAbort::kBodyLimit,
        absl::StrCat("declared body of ", t->expected,
                     " bytes exceeds max_body_bytes ", t->limits.max_body));
    return false;
  }
  t->verifier.emplace(r.seed, t->expected);
  return true;
}

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nitems;
  const absl::Duration now = t->clock->MonotonicNow();
  t->last_activity = now;
  t->header_bytes += n;
  if (t->header_bytes > t->limits.max_header) {
    t->Abort(LocalAbort::kHeaderLimit,
             absl::StrCat("response headers exceed max_header_bytes ",
                          t->limits.max_header));
    return 0;
  }
  absl::string_view line(data, n);
  absl::ConsumeSuffix(&line, "\n");
  absl::ConsumeSuffix(&line, "\r");
  if (!t->status_line_seen) {
    // "HTTP/1.1 200 OK" or "HTTP/2 200 ".
    if (!absl::StartsWith(line, "HTTP/")) return n;
    t->status_line_seen = true;
    if (!t->ttfb) t->ttfb = now;
    const size_t sp = line.find(' ');
    int status = 0;
    if (sp != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(sp + 1, 3), &status)) {
      t->status = status;
    }
    return n;
  }
  if (line.empty()) {
    if (t->status >= 100 && t->status < 200) {
      // Interim response; the real one follows.
      t->status_line_seen = false;
      return n;
    }
    return OnHeadersComplete(t) ? n : 0;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  const absl::string_view name = line.substr(0, colon);
  const absl::string_view value =
      absl::StripAsciiWhitespace(line.substr(colon + 1));
  uint64_t number = 0;
  if (HeaderIs(name, "x-canary-bytes")) {
    if (!absl::SimpleAtoi(value, &number)) {
      t->Abort(LocalAbort::kIntegrity,
               absl::StrCat("malformed x-canary-bytes: ", value));
      return 0;
    }
    t->declared_canary_bytes = number;
  } else if (HeaderIs(name, "content-length")) {
    if (absl::SimpleAtoi(value, &number)) t->content_length = number;
  } else if (HeaderIs(name, "x-canary-seed")) {
    if (absl::SimpleAtoi(value, &number)) t->declared_seed = number;
  } else if (HeaderIs(name, "x-canary-probe-id")) {
    t->probe_id_back = std::string(value);
  } else if (HeaderIs(name, "x-amzn-requestid")) {
    t->request_id = std::string(value);
  } else if (HeaderIs(name, "x-amzn-trace-id")) {
    t->trace_id = std::string(value);
  }
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nmemb;
  const absl::Duration now = t->clock->MonotonicNow();
  t->last_activity = now;
  if (t->chunks == 0) {
    t->first_body = now;
  } else {
    t->max_gap = std::max(t->max_gap, now - t->last_body);
  }
  t->last_body = now;
  ++t->chunks;
  t->received += n;
  if (!t->verify) {
    if (t->received > kErrorBodyCap) {
      t->Abort(LocalAbort::kBodyLimit,
               absl::StrCat("error body longer than ", kErrorBodyCap,
                            " bytes not read"));
      return 0;
    }
    return n;
  }
  if (t->received > t->limits.max_body) {
    t->Abort(LocalAbort::kBodyLimit,
             absl::StrCat("body exceeds max_body_bytes ", t->limits.max_body));
    return 0;
  }
  t->verifier->Update(absl::string_view(data, n));
  const PayloadVerifier::Result r = t->verifier->result();
  if (r == PayloadVerifier::kWrongByte || r == PayloadVerifier::kExtra) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat(PayloadResultName(r), " at offset ",
                          t->verifier->first_bad_offset()));
    return 0;
  }
  return n;
}

// --- The engine -----------------------------------------------------------

class ProbeEngineImpl : public ProbeEngine {
 public:
  ProbeEngineImpl(const ProbeEngineOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}

  ~ProbeEngineImpl() override {
    Shutdown();
    for (CURL* e : easy_pool_) curl_easy_cleanup(e);
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (wake_fd_ >= 0) close(wake_fd_);
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
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      return absl::InternalError(
          absl::StrCat("epoll_create1: ", std::strerror(errno)));
    }
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      return absl::InternalError(
          absl::StrCat("eventfd: ", std::strerror(errno)));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
      return absl::InternalError(
          absl::StrCat("epoll_ctl: ", std::strerror(errno)));
    }
    multi_ = curl_multi_init();
    if (multi_ == nullptr) return absl::InternalError("curl_multi_init failed");
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &SocketCallback);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &TimerCallback);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      static_cast<long>(options_.max_connections));
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                      static_cast<long>(options_.max_connections));
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  void Start(ProbeRequest request, DoneCallback done) override {
    in_flight_.fetch_add(1);
    {
      absl::MutexLock lock(&mu_);
      if (!stopped_) {
        incoming_.push_back({std::move(request), std::move(done)});
        Wake();
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
      Wake();
    }
    if (thread_.joinable()) thread_.join();
  }

  int in_flight() const override { return in_flight_.load(); }

 private:
  struct Pending {
    ProbeRequest request;
    DoneCallback done;
  };

  void Wake() {
    const uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }

  // Completes a request that never became a transfer (AGENT_ERROR).
  void CompleteWithoutTransfer(ProbeRequest request, DoneCallback done,
                               std::string detail) {
    Transfer t;
    t.clock = clock_;
    t.request = std::move(request);
    t.start = clock_->MonotonicNow();
    FillLabels(&t);
    ProbeFacts facts;
    facts.local_abort = LocalAbort::kAgentFault;
    facts.local_detail = std::move(detail);
    facts.expected_bytes = t.request.size_bytes;
    const Classification c = Classify(facts);
    t.outcome.set_outcome_class(c.outcome_class);
    t.outcome.set_transfer_end(c.transfer_end);
    t.outcome.set_detail(c.detail);
    t.outcome.set_expected_bytes(t.request.size_bytes);
    t.outcome.set_first_bad_offset(-1);
    ToProto(absl::ZeroDuration(), t.outcome.mutable_timings()->mutable_total());
    // Completed before the callback runs, so that whoever the callback wakes
    // sees in_flight() without this probe.
    in_flight_.fetch_sub(1);
    if (done) done(std::move(t.outcome));
  }

  void FillLabels(Transfer* t) {
    const ProbeRequest& r = t->request;
    v1::Outcome& o = t->outcome;
    o.set_agent_id(r.agent_id);
    o.set_region(r.region);
    o.set_target(r.target);
    o.set_mode(r.mode);
    o.set_requested_bytes(r.size_bytes);
    o.set_probe_id(r.probe_id);
    o.set_schedule_id(r.schedule_id);
    o.set_adhoc_id(r.adhoc_id);
    o.set_seed(r.seed);
    const absl::Time now = clock_->Now();
    const int64_t ns = absl::ToUnixNanos(now);
    o.mutable_start_time()->set_seconds(ns / 1000000000);
    o.mutable_start_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }

  // --- epoll / libcurl glue ---

  static int SocketCallback(CURL*, curl_socket_t s, int what, void* userp,
                            void* socketp) {
    auto* self = static_cast<ProbeEngineImpl*>(userp);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(self->epoll_fd_, EPOLL_CTL_DEL, s, nullptr);
      curl_multi_assign(self->multi_, s, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.data.fd = s;
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    const int op = socketp == nullptr ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(self->epoll_fd_, op, s, &ev) != 0) {
      // A descriptor number reused behind our back: try the other operation.
      const int other = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
      if (epoll_ctl(self->epoll_fd_, other, s, &ev) != 0) {
        LogWarning("probe_epoll_ctl_failed",
                   {{"fd", absl::StrCat(s)}, {"errno", std::strerror(errno)}});
      }
    }
    if (socketp == nullptr) {
      curl_multi_assign(self->multi_, s, reinterpret_cast<void*>(1));
    }
    return 0;
  }

  static int TimerCallback(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<ProbeEngineImpl*>(userp);
    if (timeout_ms < 0) {
      self->curl_timer_.reset();
    } else {
      self->curl_timer_ =
          Clock::Real()->MonotonicNow() + absl::Milliseconds(timeout_ms);
    }
    return 0;
  }

  // Milliseconds epoll_wait may sleep.
  int PollTimeoutMs() {
    absl::Duration wait = options_.max_poll_wait;
    if (curl_timer_) {
      wait = std::min(wait, *curl_timer_ - Clock::Real()->MonotonicNow());
    }
    if (!deadlines_.empty()) {
      wait = std::min(wait, deadlines_.top().first - clock_->MonotonicNow());
    }
    if (!waiting_.empty() &&
        static_cast<int>(active_.size()) < options_.max_in_flight) {
      wait = absl::ZeroDuration();
    }
    if (wait <= absl::ZeroDuration()) return 0;
    // Round up so that we never wake just before a deadline.
    return static_cast<int>(absl::ToInt64Microseconds(wait) / 1000 + 1);
  }

  void Loop() {
    std::vector<epoll_event> events(256);
    int running = 0;
    while (true) {
      const int n =
          epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                     PollTimeoutMs());
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_fd_) {
          uint64_t count;
          while (read(wake_fd_, &count, sizeof(count)) > 0) {
          }
          continue;
        }
        int flags = 0;
        if (events[i].events & EPOLLIN) {
          flags |= CURL_CSELECT_IN;
          NoteSocketActivity(fd);
        }
        if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
          flags |= CURL_CSELECT_ERR;
        }
        curl_multi_socket_action(multi_, fd, flags, &running);
      }
      if (curl_timer_ && *curl_timer_ <= Clock::Real()->MonotonicNow()) {
        curl_timer_.reset();
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      ReapFinished();
      CheckDeadlines();
      bool stop = false;
      {
        absl::MutexLock lock(&mu_);
        for (Pending& p : incoming_) waiting_.push_back(std::move(p));
        incoming_.clear();
        if (stop_requested_) {
          stopped_ = true;
          stop = true;
        }
      }
      if (stop) break;
      AdmitWaiting();
    }
    // Shutdown: abort everything, in flight and queued.
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
    t->request = std::move(p.request);
    t->done = std::move(p.done);
    t->limits = ResolveLimits(t->request.limits);
    t->start = clock_->MonotonicNow();
    t->deadline = t->start + t->limits.timeout;
    t->last_activity = t->start;
    FillLabels(t.get());
    t->outcome.set_expected_bytes(t->request.size_bytes);

    absl::Status status = Configure(t.get());
    if (!status.ok()) {
      if (t->easy != nullptr) ReleaseEasy(t.get());
      CompleteWithoutTransfer(std::move(t->request), std::move(t->done),
                              std::string(status.message()));
      return;
    }
    const CURLMcode mc = curl_multi_add_handle(multi_, t->easy);
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
    const ProbeRequest& r = t->request;
    const Limits& l = t->limits;
    if (r.url.empty()) return absl::InvalidArgumentError("url: required");
    if (r.size_bytes > l.max_body) {
      return absl::InvalidArgumentError(
          absl::StrCat("size_bytes ", r.size_bytes,
                       " exceeds limits.max_body_bytes ", l.max_body));
    }
    long http_version = CURL_HTTP_VERSION_1_1;
    const std::string& hv = r.transport.http_version();
    const bool https = absl::StartsWithIgnoreCase(r.url, "https://");
    t->https = https;
    if (hv == "2") {
      http_version =
          https ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    } else if (!hv.empty() && hv != "1.1") {
      return absl::InvalidArgumentError(absl::StrCat(
          "transport.http_version: \"", hv, "\" is not \"1.1\" or \"2\""));
    }
    if (!r.transport.ca_file().empty()) {
      std::ifstream f(r.transport.ca_file());
      if (!f.good()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "transport.ca_file: cannot read ", r.transport.ca_file()));
      }
    }

    // URL: base + "canary?bytes=N&chunk=C&gap_ms=G&seed=S".
    std::string url = r.url;
    if (url.back() != '/') url.push_back('/');
    absl::StrAppend(&url, "canary?bytes=", r.size_bytes);
    if (r.chunk_bytes > 0) absl::StrAppend(&url, "&chunk=", r.chunk_bytes);
    if (r.chunk_gap > absl::ZeroDuration()) {
      absl::StrAppend(&url, "&gap_ms=", absl::ToInt64Milliseconds(r.chunk_gap));
    }
    absl::StrAppend(&url, "&seed=", r.seed);

    CURLU* u = curl_url();
    if (u == nullptr) return absl::ResourceExhaustedError("curl_url failed");
    const CURLUcode uc = curl_url_set(u, CURLUPART_URL, url.c_str(), 0);
    char* scheme = nullptr;
    char* host = nullptr;
    char* port = nullptr;
    char* path = nullptr;
    char* query = nullptr;
    absl::Status url_status = absl::OkStatus();
    if (uc != CURLUE_OK) {
      url_status = absl::InvalidArgumentError(
          absl::StrCat("url: \"", r.url, "\": ", curl_url_strerror(uc)));
    } else {
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
      curl_url_get(u, CURLUPART_HOST, &host, 0);
      curl_url_get(u, CURLUPART_PORT, &port, 0);
      curl_url_get(u, CURLUPART_PATH, &path, 0);
      curl_url_get(u, CURLUPART_QUERY, &query, 0);
      if (scheme == nullptr || (std::strcmp(scheme, "http") != 0 &&
                                std::strcmp(scheme, "https") != 0)) {
        url_status = absl::InvalidArgumentError(
            absl::StrCat("url: \"", r.url, "\": scheme must be http or https"));
      }
    }
    std::string host_header;
    std::string target;
    // Copied: the curl strings are freed below, before signing uses the host.
    const std::string host_name = host != nullptr ? host : "";
    if (url_status.ok()) {
      host_header = host_name;
      if (port != nullptr) absl::StrAppend(&host_header, ":", port);
      target = absl::StrCat(path != nullptr ? path : "/", "?",
                            query != nullptr ? query : "");
    }
    for (char* p : {scheme, host, port, path, query}) curl_free(p);
    curl_url_cleanup(u);
    FC_RETURN_IF_ERROR(url_status);
    if (t->guard != nullptr) {
      const absl::Status allowed = t->guard->CheckUrl(url);
      if (!allowed.ok()) {
        const absl::string_view why = allowed.message();
        return absl::PermissionDeniedError(
            absl::StartsWith(why, "target guard")
                ? std::string(why)
                : absl::StrCat("target guard: ", why));
      }
    }

    t->easy = AcquireEasy();
    if (t->easy == nullptr) {
      return absl::ResourceExhaustedError("curl_easy_init failed");
    }
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    // Never through a proxy from the environment: the address the target
    // guard checks must be the address connected, and the timings the
    // endpoint's.
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &WriteCallback);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &HeaderCallback);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &PrereqCallback);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &OpenSocketCallback);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max<int64_t>(
                         1, absl::ToInt64Milliseconds(l.connect_timeout))));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, http_version);
    curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
    if (!r.transport.keep_alive()) {
      // A fresh connection (and a full TLS handshake) per probe, so connect
      // and TLS regressions stay visible.
      curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
      curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    }
    if (!r.transport.ca_file().empty()) {
      curl_easy_setopt(e, CURLOPT_CAINFO, r.transport.ca_file().c_str());
    }
    if (r.transport.insecure_skip_verify()) {
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    std::vector<std::string> headers = {"Host: " + host_header};
    if (!r.probe_id.empty()) {
      headers.push_back("x-canary-probe-id: " + r.probe_id);
    }
    if (r.auth == v1::AWS_IAM) {
      FC_RETURN_IF_ERROR(Sign(r, host_name, host_header, target, &headers));
    }
    for (const std::string& h : headers) {
      curl_slist* next = curl_slist_append(t->headers, h.c_str());
      if (next == nullptr) {
        return absl::ResourceExhaustedError("curl_slist_append failed");
      }
      t->headers = next;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    return absl::OkStatus();
  }

  absl::Status Sign(const ProbeRequest& r, absl::string_view host_only,
                    const std::string& host_header, const std::string& target,
                    std::vector<std::string>* headers) {
    absl::StatusOr<sigv4::Credentials> creds =
        r.role_arn.empty() ? options_.credentials()
        : options_.role_credentials
            ? options_.role_credentials(r.role_arn)
            : absl::FailedPreconditionError(absl::StrCat(
                  "role ", r.role_arn, ": this engine assumes no roles"));
    if (!creds.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "auth AWS_IAM needs AWS credentials: ", creds.status().message()));
    }
    std::string region;
    absl::StatusOr<std::string> from_host =
        sigv4::RegionFromFunctionUrlHost(host_only);
    if (from_host.ok()) {
      region = *from_host;
    } else {
      region = r.region;
    }
    if (region.empty()) {
      return absl::InvalidArgumentError(
          "auth AWS_IAM: the signing region is unknown (not a Function URL "
          "host and no region given)");
    }
    const std::vector<sigv4::HeaderView> views = {{"host", host_header}};
    sigv4::HttpRequestView req{"GET", target, views, "", ""};
    absl::StatusOr<sigv4::SigningResult> signed_req =
        sigv4::SignFunctionUrlRequest(req, *creds, clock_->Now(), region);
    if (!signed_req.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "auth AWS_IAM: signing failed: ", signed_req.status().message()));
    }
    for (const auto& [name, value] : signed_req->headers_to_add) {
      headers->push_back(absl::StrCat(name, ": ", value));
    }
    return absl::OkStatus();
  }

  CURL* AcquireEasy() {
    if (!easy_pool_.empty()) {
      CURL* e = easy_pool_.back();
      easy_pool_.pop_back();
      curl_easy_reset(e);
      return e;
    }
    return curl_easy_init();
  }

  void ReleaseEasy(Transfer* t) {
    if (t->headers != nullptr) {
      curl_slist_free_all(t->headers);
      t->headers = nullptr;
    }
    if (t->easy == nullptr) return;
    if (static_cast<int>(easy_pool_.size()) < options_.max_in_flight) {
      easy_pool_.push_back(t->easy);
    } else {
      curl_easy_cleanup(t->easy);
    }
    t->easy = nullptr;
  }

  void ReapFinished() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      const CURLcode code = msg->data.result;
      curl_multi_remove_handle(multi_, msg->easy_handle);
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
    curl_multi_remove_handle(multi_, t->easy);
  }

  // Builds the outcome of a transfer already removed from the multi handle,
  // runs its callback and frees it.
  void Finish(uint64_t id, CURLcode code) {
    auto it = active_.find(id);
    std::unique_ptr<Transfer> t = std::move(it->second);
    active_.erase(it);
    const absl::Duration now = clock_->MonotonicNow();
    CURL* e = t->easy;
    v1::Outcome& o = t->outcome;

    curl_off_t dns = 0, connect = 0, tls = 0, pretransfer = 0;
    long os_errno = 0, num_connects = 0, http_version = 0;
    curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &dns);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls);
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &num_connects);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &http_version);
    const bool reused = t->connected && num_connects == 0;

    ForgetSockets(t.get());
    if (!t->guard_refusal.empty() && !t->guard_allowed_any) {
      // Every address of the host was refused by our policy: never tried,
      // not the platform's fault.
      t->Abort(LocalAbort::kAgentFault, t->guard_refusal);
    }
    ProbeFacts f;
    f.local_abort = t->abort;
    f.local_detail = t->abort_detail;
    f.curl_code = code;
    f.os_errno = static_cast<int>(os_errno);
    f.curl_error = t->error;
    f.https = t->https;
    f.connected = t->connected || t->tcp_connected || connect > 0;
    f.resolved = f.connected || dns > 0;
    f.tls_done = t->https && (tls > 0 || reused);
    f.headers_complete = t->headers_complete;
    f.status = t->status;
    f.expected_bytes =
        t->headers_complete ? t->expected : t->request.size_bytes;
    f.received_bytes = t->received;
    if (t->verifier) {
      if (code == CURLE_OK && t->abort == LocalAbort::kNone) {
        t->verifier->Finish();
      }
      f.payload = t->verifier->result();
      f.first_bad_offset = t->verifier->first_bad_offset();
    }
    const Classification c = Classify(f);

    v1::Timings* tm = o.mutable_timings();
    if (!reused) {
      if (dns > 0) ToProto(absl::Microseconds(dns), tm->mutable_dns());
      if (connect > 0)
        ToProto(absl::Microseconds(connect), tm->mutable_connect());
      if (tls > 0) ToProto(absl::Microseconds(tls), tm->mutable_tls());
    }
    if (pretransfer > 0 && t->connected) {
      ToProto(absl::Microseconds(pretransfer), tm->mutable_request_sent());
    }
    if (t->ttfb) ToProto(*t->ttfb - t->start, tm->mutable_headers_received());
    if (t->chunks > 0) {
      ToProto(t->first_body - t->start, tm->mutable_first_body_byte());
      ToProto(t->last_body - t->start, tm->mutable_last_byte());
    }
    ToProto(now - t->start, tm->mutable_total());

    o.set_http_version(t->status_line_seen || t->headers_complete
                           ? HttpVersionName(http_version)
                           : "");
    o.set_status(t->status);
    o.set_platform_request_id(t->request_id);
    o.set_trace_id(t->trace_id);
    o.set_expected_bytes(f.expected_bytes);
    o.set_received_bytes(t->received);
    o.set_chunk_count(t->chunks);
    if (t->chunks > 1) ToProto(t->max_gap, o.mutable_max_gap());
    const bool bad_bytes = f.payload == PayloadVerifier::kWrongByte ||
                           f.payload == PayloadVerifier::kExtra;
    o.set_first_bad_offset(bad_bytes ? f.first_bad_offset : -1);
    o.set_transfer_end(c.transfer_end);
    o.set_outcome_class(c.outcome_class);
    o.set_detail(c.detail);
    o.set_connection_reused(reused);

    ReleaseEasy(t.get());
    DoneCallback done = std::move(t->done);
    v1::Outcome outcome = std::move(t->outcome);
    t.reset();
    in_flight_.fetch_sub(1);
    if (done) done(std::move(outcome));
  }

  ProbeEngineOptions options_;
  Clock* const clock_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  CURLM* multi_ = nullptr;
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
  std::vector<CURL*> easy_pool_;
  std::optional<absl::Duration> curl_timer_;  // Real monotonic time.
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
