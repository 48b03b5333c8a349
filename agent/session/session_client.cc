#include "agent/session/session_client.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc/outside_ops_hold.h"
#include "common/grpc/write_queue.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "fleetcanary/v1/session.grpc.pb.h"

namespace fleetcanary {
namespace agent {
namespace {

// Receives a stream's events (implemented by the client).
class StreamEvents {
 public:
  virtual ~StreamEvents() = default;
  virtual void OnStreamMessage(v1::ControllerMessage message) = 0;
  virtual void OnStreamDone(const grpc::Status& status) = 0;
};

// One Connect stream. Moves messages only; every Start* call is made
// without holding a lock. The driver thread writes from outside the
// reactions, so the stream is held (OutsideOpsHold) until it has ended:
// a write can never reach a call gRPC has already freed.
class StreamReactor
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  explicit StreamReactor(StreamEvents* events) : events_(events) {}

  void Start(v1::AgentSession::Stub* stub) {
    stub->async()->Connect(&context_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  // Queues `message`; dropped once the stream has ended (the driver learns
  // that from OnStreamDone and resends on the next stream).
  void Send(v1::AgentMessage message) {
    if (!hold_.Begin()) return;
    WriteQueue<v1::AgentMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = out_.Push(std::move(message));
    }
    if (step.write) StartWrite(step.write);
    if (hold_.End()) RemoveHold();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The stream has ended; OnDone follows once unheld.
      if (hold_.Ended()) RemoveHold();
      return;
    }
    events_->OnStreamMessage(std::move(in_));
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    WriteQueue<v1::AgentMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = out_.WriteDone(ok);
    }
    if (step.write) StartWrite(step.write);
  }

  // Last reaction; the owner may delete the reactor once told.
  void OnDone(const grpc::Status& status) override {
    events_->OnStreamDone(status);
  }

 private:
  StreamEvents* const events_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  OutsideOpsHold hold_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  // The call ends by itself (OnDone); a failed write only stops writing.
  WriteQueue<v1::AgentMessage> out_ ABSL_GUARDED_BY(mu_){
      WriteQueue<v1::AgentMessage>::OnBroken::kWait};
};

class SessionClientImpl : public SessionClient, public StreamEvents {
 public:
  SessionClientImpl(const SessionClientOptions& options, Outbox* outbox,
                    AssignmentSink* sink, Clock* clock,
                    std::shared_ptr<grpc::ChannelCredentials> credentials,
                    grpc::ChannelArguments args)
      : options_(options),
        outbox_(outbox),
        clock_(clock),
        protocol_(ProtocolOptions(options), outbox, sink),
        rng_(options.seed),
        queue_(options.max_platform_queue) {
    args.SetInt(
        GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
        std::max<int>(1, absl::ToInt64Milliseconds(options.reconnect_min)));
    args.SetInt(
        GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
        std::max<int>(1, absl::ToInt64Milliseconds(options.reconnect_min)));
    args.SetInt(
        GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
        std::max<int>(1, absl::ToInt64Milliseconds(options.reconnect_max)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetMaxReceiveMessageSize(64 << 20);
    credentials_ = std::move(credentials);
    args_ = args;
    for (absl::string_view a :
         absl::StrSplit(options.controller_address, ',', absl::SkipEmpty())) {
      const std::string address(absl::StripAsciiWhitespace(a));
      // A name with several addresses (replicas behind one DNS name): one
      // entry per address, so a refusal's leader hint can pick the leader
      // among them; TLS still verifies the configured name.
      const std::vector<std::string> resolved = ResolveAll(address);
      if (resolved.size() < 2) {
        AddAddress(address, "");
        continue;
      }
      const std::string host = HostOf(address);
      for (const std::string& r : resolved) AddAddress(r, host);
    }
    {
      absl::MutexLock lock(&mu_);
      PublishLocked();
    }
    driver_ = std::thread([this] { Run(); });
  }

  ~SessionClientImpl() override { Shutdown(); }

  void Notify() override {
    absl::MutexLock lock(&mu_);
    notified_ = true;
  }

  void SendAdhocResult(v1::AdhocResult result) override {
    absl::MutexLock lock(&mu_);
    queue_.AddAdhocResult(std::move(result));
  }

  void SendPlatformMetrics(v1::PlatformMetricBatch batch) override {
    absl::MutexLock lock(&mu_);
    queue_.AddPlatformMetrics(std::move(batch));
    stats_.platform_samples_dropped_total = queue_.platform_dropped_total();
    notified_ = true;
  }

  bool Goodbye(const std::string& reason, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    queue_.RequestGoodbye(reason);
    notified_ = true;
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&goodbye_done_), timeout);
    if (!goodbye_done_) {
      LogWarning("session_goodbye_unanswered",
                 {{"timeout", absl::FormatDuration(timeout)}});
    }
    return goodbye_done_;
  }

  bool WaitForFlush(absl::Duration timeout) override {
    // Everything stored; what the bound dropped will never be acknowledged
    // (it is reported in dropped_total instead).
    const uint64_t target = outbox_->stats().last_stored_sequence;
    absl::MutexLock lock(&mu_);
    struct Arg {
      SessionClientImpl* self;
      uint64_t target;
    } arg{this, target};
    return clock_->AwaitWithTimeout(
        &mu_,
        absl::Condition(
            +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return a->self->stats_.acked_sequence >= a->target;
            },
            &arg),
        timeout);
  }

  SessionClientStats stats() override {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (driver_.joinable()) driver_.join();
  }

  // StreamEvents (gRPC threads; never block).
  void OnStreamMessage(v1::ControllerMessage message) override {
    absl::MutexLock lock(&mu_);
    inbox_.push_back(std::move(message));
  }
  void OnStreamDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    stream_status_ = status;
    stream_done_ = true;
  }

 private:
  static SessionProtocolOptions ProtocolOptions(const SessionClientOptions& o) {
    SessionProtocolOptions p;
    p.hello = o.hello;
    p.heartbeat_interval = o.heartbeat_interval;
    p.welcome_timeout = o.welcome_timeout;
    p.max_batch_outcomes = o.max_batch_outcomes;
    p.max_batch_bytes = o.max_batch_bytes;
    p.max_unacked_batches = o.max_unacked_batches;
    p.in_flight = o.in_flight;
    p.on_adhoc_probe = o.on_adhoc_probe;
    return p;
  }

  void Run() {
    int attempt = 0;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      const bool welcomed = RunStream();
      absl::MutexLock lock(&mu_);
      ++reconnects_total_;
      PublishLocked();
      if (stopping_ || goodbye_done_) return;
      attempt = welcomed ? 0 : attempt + 1;
      if (!welcomed) NextAddressLocked();
      // Jittered exponential backoff: a uniform draw in [d/2, d].
      const absl::Duration cap =
          std::min(options_.reconnect_max,
                   options_.reconnect_min *
                       static_cast<double>(1ull << std::min(attempt, 20)));
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      const absl::Duration wait = cap * jitter(rng_);
      LogInfo("session_backoff",
              {{"attempt", absl::StrCat(attempt)},
               {"wait", absl::FormatDuration(wait)},
               {"status", absl::StrCat(stream_status_.error_code(), " ",
                                       stream_status_.error_message())}});
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_), wait);
    }
  }

  // After a stream that got no Welcome: the controller replica that refused
  // it names the leader ("leader=host:port" in its status message) when it
  // knows it; go there (added to the list when it is not in it yet: a
  // replica behind a shared name, at most kMaxLeaderHints of them; TLS then
  // verifies the name the refusing replica was reached by when the hint is
  // an IP address), else to the next address.
  void NextAddressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string& msg = stream_status_.error_message();
    const size_t at = msg.find("leader=");
    if (at != std::string::npos) {
      std::string hint = msg.substr(at + 7);
      hint = hint.substr(0, hint.find_first_of(" ;,)"));
      for (size_t i = 0; i < addresses_.size(); ++i) {
        if (addresses_[i] == hint) {
          if (i == current_) break;  // It refused as the leader: move on.
          current_ = i;
          return;
        }
      }
      if (ValidHint(hint) && hints_added_ < kMaxLeaderHints &&
          std::find(addresses_.begin(), addresses_.end(), hint) ==
              addresses_.end()) {
        ++hints_added_;
        const std::string& via = tls_names_[current_].empty()
                                     ? HostOf(addresses_[current_])
                                     : tls_names_[current_];
        AddAddress(hint, IsIpLiteral(HostOf(hint)) ? via : "");
        LogInfo("session_follow_leader",
                {{"leader", hint}, {"refused_by", addresses_[current_]}});
        current_ = addresses_.size() - 1;
        return;
      }
    }
    if (addresses_.size() < 2) return;
    current_ = (current_ + 1) % addresses_.size();
  }

  static constexpr int kMaxLeaderHints = 8;

  // "host" of "host:port" or "[v6]:port" (brackets removed).
  static std::string HostOf(const std::string& address) {
    std::string host = address.substr(0, address.rfind(':'));
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    return host;
  }

  static bool IsIpLiteral(const std::string& host) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, host.c_str(), buf) == 1;
  }

  // host:port with a port number and a host of sane characters.
  static bool ValidHint(const std::string& hint) {
    const size_t colon = hint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= hint.size() ||
        hint.size() > 256) {
      return false;
    }
    for (size_t i = colon + 1; i < hint.size(); ++i) {
      if (hint[i] < '0' || hint[i] > '9') return false;
    }
    for (size_t i = 0; i < colon; ++i) {
      const char c = hint[i];
      if (!(absl::ascii_isalnum(c) || c == '.' || c == '-' || c == ':' ||
            c == '[' || c == ']' || c == '_')) {
        return false;
      }
    }
    return true;
  }

  // Every address `address` (host:port) resolves to, as ip:port, in the
  // resolver's order without duplicates; empty for an IP literal or when the
  // name does not resolve (gRPC then resolves it itself).
  static std::vector<std::string> ResolveAll(const std::string& address) {
    std::vector<std::string> out;
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return out;
    const std::string host = HostOf(address);
    const std::string port = address.substr(colon + 1);
    if (host.empty() || IsIpLiteral(host)) return out;
    struct addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return out;
    for (struct addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      char ip[INET6_ADDRSTRLEN] = {};
      if (ai->ai_family == AF_INET) {
        inet_ntop(AF_INET,
                  &reinterpret_cast<struct sockaddr_in*>(ai->ai_addr)->sin_addr,
                  ip, sizeof(ip));
      } else if (ai->ai_family == AF_INET6) {
        inet_ntop(
            AF_INET6,
            &reinterpret_cast<struct sockaddr_in6*>(ai->ai_addr)->sin6_addr, ip,
            sizeof(ip));
      } else {
        continue;
      }
      const std::string entry = ai->ai_family == AF_INET6
                                    ? absl::StrCat("[", ip, "]:", port)
                                    : absl::StrCat(ip, ":", port);
      if (std::find(out.begin(), out.end(), entry) == out.end()) {
        out.push_back(entry);
      }
    }
    freeaddrinfo(res);
    return out;
  }

  // Adds one controller address with its channel; `tls_name` (when not
  // empty and TLS is on) is the name its certificate must carry.
  void AddAddress(const std::string& address, const std::string& tls_name) {
    grpc::ChannelArguments args = args_;
    if (!tls_name.empty() && !options_.tls.insecure &&
        options_.tls.server_name_override.empty()) {
      args.SetSslTargetNameOverride(tls_name);
    }
    addresses_.push_back(address);
    tls_names_.push_back(tls_name);
    channels_.push_back(grpc::CreateCustomChannel(address, credentials_, args));
    stubs_.push_back(v1::AgentSession::NewStub(channels_.back()));
  }

  // Copies the protocol's counters into stats_ (driver thread).
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const SessionProtocolStats& p = protocol_.stats();
    stats_.connected = p.welcomed;
    stats_.connects_total = p.connects_total;
    stats_.reconnects_total = reconnects_total_;
    stats_.batches_sent_total = p.batches_sent_total;
    stats_.outcomes_sent_total = p.outcomes_sent_total;
    stats_.acks_total = p.acks_total;
    stats_.assignment_version = p.assignment_version;
    stats_.acked_sequence = p.acked_sequence;
    stats_.platform_samples_sent_total = p.platform_samples_sent_total;
    stats_.platform_samples_dropped_total = queue_.platform_dropped_total();
  }

  // What woke the driver.
  struct Wakeup {
    std::deque<v1::ControllerMessage> messages;
    bool done = false;
    bool stopping = false;
  };

  // Waits until a controller message, the stream's end, Notify(), Stop, a
  // queued ad-hoc result (while the protocol can send) or `wait` passes.
  Wakeup WaitForWork(absl::Duration wait) {
    absl::MutexLock lock(&mu_);
    clock_->AwaitWithTimeout(
        &mu_,
        absl::Condition(
            +[](SessionClientImpl* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !s->inbox_.empty() || s->stream_done_ || s->notified_ ||
                     s->stopping_ ||
                     (s->can_send_ && s->queue_.has_adhoc_results());
            },
            this),
        std::max(wait, absl::Milliseconds(1)));
    Wakeup w;
    w.messages.swap(inbox_);
    w.done = stream_done_;
    w.stopping = stopping_;
    notified_ = false;
    return w;
  }

  // Runs one stream until it ends. Returns whether Welcome was received.
  bool RunStream() {
    auto reactor = std::make_unique<StreamReactor>(this);
    size_t current;
    {
      absl::MutexLock lock(&mu_);
      inbox_.clear();
      can_send_ = false;
      stream_done_ = false;
      stream_status_ = grpc::Status::OK;
      current = current_;
    }
    reactor->Start(stubs_[current].get());
    reactor->Send(protocol_.StartStream(clock_->MonotonicNow()));
    bool welcomed = false;
    bool cancelled = false;  // Waiting for OnDone.
    for (;;) {
      Wakeup w = WaitForWork(cancelled ? absl::Milliseconds(100)
                                       : protocol_.NextDeadline() -
                                             clock_->MonotonicNow());
      const absl::Duration now = clock_->MonotonicNow();
      absl::Status status;
      for (const v1::ControllerMessage& m : w.messages) {
        const absl::Status s = protocol_.OnControllerMessage(m, now);
        if (!s.ok() && status.ok()) status = s;
      }
      welcomed = welcomed || protocol_.stats().welcomed;
      if (w.done) {
        const bool goodbye_done = protocol_.EndStream();
        if (goodbye_done) LogInfo("session_goodbye_done");
        absl::MutexLock lock(&mu_);
        goodbye_done_ = goodbye_done;
        can_send_ = false;
        PublishLocked();
        return welcomed;
      }
      if (!cancelled && !status.ok()) {
        LogWarning("session_protocol_error", {{"error", status.ToString()}});
      }
      if (!cancelled && status.ok() && !w.stopping) {
        status = protocol_.CheckDeadlines(now);
      }
      if (!cancelled && (w.stopping || !status.ok())) {
        reactor->Cancel();
        cancelled = true;
      }
      SessionInputs inputs;
      {
        absl::MutexLock lock(&mu_);
        can_send_ = !cancelled && protocol_.CanSend();
        if (can_send_) inputs = queue_.Take();
        PublishLocked();
      }
      if (cancelled || !protocol_.CanSend()) continue;
      for (v1::AgentMessage& m :
           protocol_.Poll(now, clock_->Now(), std::move(inputs))) {
        reactor->Send(std::move(m));
      }
      absl::MutexLock lock(&mu_);
      can_send_ = protocol_.CanSend();
      PublishLocked();
    }
  }

  const SessionClientOptions options_;
  Outbox* const outbox_;
  Clock* const clock_;
  // One channel per controller address (controller_address is a
  // comma-separated list: replicas, the leader among them).
  // Driver thread only after construction (leader hints append).
  std::vector<std::string> addresses_;
  std::vector<std::string> tls_names_;  // Parallel: TLS name ("" = own).
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  grpc::ChannelArguments args_;
  int hints_added_ = 0;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::AgentSession::Stub>> stubs_;
  // Driver-thread state.
  SessionProtocol protocol_;
  std::mt19937_64 rng_;
  std::thread driver_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status stream_status_ ABSL_GUARDED_BY(mu_);
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  // What other threads queue for the stream; can_send_ is whether the
  // protocol can send on the current stream (Welcome, no Goodbye yet).
  SessionQueue queue_ ABSL_GUARDED_BY(mu_);
  bool can_send_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Goodbye(): done once the controller closed the stream after receiving
  // it (no reconnect afterwards).
  bool goodbye_done_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t reconnects_total_ ABSL_GUARDED_BY(mu_) = 0;
  SessionClientStats stats_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;  // Index into addresses_.
};

}  // namespace

absl::StatusOr<std::unique_ptr<SessionClient>> SessionClient::Create(
    const SessionClientOptions& options, Outbox* outbox, AssignmentSink* sink,
    Clock* clock) {
  if (absl::StripAsciiWhitespace(
          absl::StrReplaceAll(options.controller_address, {{",", ""}}))
          .empty()) {
    return absl::InvalidArgumentError("controller_address: required");
  }
  if (options.hello.agent_id().empty()) {
    return absl::InvalidArgumentError("agent_id: required");
  }
  if (options.hello.region().empty()) {
    return absl::InvalidArgumentError("region: required");
  }
  if (!outbox || !sink || !clock) {
    return absl::InvalidArgumentError("session client: missing dependency");
  }
  if (options.reconnect_min <= absl::ZeroDuration() ||
      options.reconnect_max < options.reconnect_min) {
    return absl::InvalidArgumentError(
        "reconnect_min/reconnect_max: need 0 < min <= max");
  }
  grpc::ChannelArguments args;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(options.tls, &args);
  if (!credentials.ok()) return credentials.status();
  return std::unique_ptr<SessionClient>(new SessionClientImpl(
      options, outbox, sink, clock, *std::move(credentials), std::move(args)));
}

}  // namespace agent
}  // namespace fleetcanary
