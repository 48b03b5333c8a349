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
// without holding a lock.
class StreamReactor
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  explicit StreamReactor(StreamEvents* events) : events_(events) {}

  void Start(v1::AgentSession::Stub* stub) {
    stub->async()->Connect(&context_, this);
    StartRead(&in_);
    StartCall();
  }

  void Send(v1::AgentMessage message) {
    WriteQueue<v1::AgentMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = out_.Push(std::move(message));
    }
    if (step.write) StartWrite(step.write);
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream is ending; OnDone follows.
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
        sink_(sink),
        clock_(clock),
        rng_(options.seed) {
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
    heartbeat_interval_ = options.heartbeat_interval;
    driver_ = std::thread([this] { Run(); });
  }

  ~SessionClientImpl() override { Shutdown(); }

  void Notify() override {
    absl::MutexLock lock(&mu_);
    notified_ = true;
  }

  void SendAdhocResult(v1::AdhocResult result) override {
    absl::MutexLock lock(&mu_);
    // Bounded: live results are a convenience; the outbox has them all.
    if (adhoc_out_.size() < 10000) adhoc_out_.push_back(std::move(result));
  }

  void SendPlatformMetrics(v1::PlatformMetricBatch batch) override {
    absl::MutexLock lock(&mu_);
    for (v1::PlatformMetricSample& sample : *batch.mutable_samples()) {
      platform_.push_back(std::move(sample));
    }
    while (platform_.size() > options_.max_platform_queue) {
      platform_.pop_front();
      ++stats_.platform_samples_dropped_total;
    }
    notified_ = true;
  }

  bool Goodbye(const std::string& reason, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    goodbye_reason_ = reason;
    goodbye_requested_ = true;
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
  void Run() {
    {
      absl::MutexLock lock(&mu_);
      stats_.acked_sequence = outbox_->stats().acked_sequence;
    }
    int attempt = 0;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      const bool welcomed = RunStream();
      absl::MutexLock lock(&mu_);
      stats_.connected = false;
      ++stats_.reconnects_total;
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

  // Runs one stream until it ends. Returns whether Welcome was received.
  bool RunStream() {
    auto reactor = std::make_unique<StreamReactor>(this);
    {
      absl::MutexLock lock(&mu_);
      inbox_.clear();
      welcomed_ = false;
      stream_done_ = false;
      stream_status_ = grpc::Status::OK;
    }
    size_t current;
    {
      absl::MutexLock lock(&mu_);
      current = current_;
    }
    reactor->Start(stubs_[current].get());
    {
      v1::AgentMessage m;
      *m.mutable_hello() = options_.hello;
      m.mutable_hello()->set_last_acked_sequence(
          outbox_->stats().acked_sequence);
      reactor->Send(std::move(m));
    }
    const absl::Duration started = clock_->MonotonicNow();
    absl::Duration last_rx = started;
    absl::Duration next_heartbeat = started;
    bool welcomed = false;
    bool cancelled = false;
    uint64_t cursor = 0;
    std::deque<uint64_t> unacked;  // Last sequence of each batch in flight.
    bool goodbye_sent = false;
    for (;;) {
      std::deque<v1::ControllerMessage> messages;
      bool done, stopping;
      {
        absl::MutexLock lock(&mu_);
        const absl::Duration now = clock_->MonotonicNow();
        absl::Duration wait = welcomed
                                  ? next_heartbeat - now
                                  : started + options_.welcome_timeout - now;
        wait = std::min(wait, last_rx + 2 * heartbeat_interval_ - now);
        if (cancelled) wait = absl::Milliseconds(100);
        wait = std::max(wait, absl::Milliseconds(1));
        clock_->AwaitWithTimeout(
            &mu_,
            absl::Condition(
                +[](SessionClientImpl* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                  return !s->inbox_.empty() || s->stream_done_ ||
                         s->notified_ || s->stopping_ ||
                         (s->welcomed_ && !s->adhoc_out_.empty());
                },
                this),
            wait);
        messages.swap(inbox_);
        done = stream_done_;
        stopping = stopping_;
        notified_ = false;
      }
      const absl::Duration now = clock_->MonotonicNow();
      for (v1::ControllerMessage& m : messages) {
        last_rx = now;
        switch (m.msg_case()) {
          case v1::ControllerMessage::kWelcome: {
            const v1::Welcome& w = m.welcome();
            if (w.has_heartbeat_interval() &&
                DurationFromProto(w.heartbeat_interval()) >
                    absl::ZeroDuration()) {
              heartbeat_interval_ = DurationFromProto(w.heartbeat_interval());
            }
            absl::Status s = outbox_->Ack(w.applied_sequence());
            if (!s.ok())
              LogError("outbox_ack_failed", {{"error", s.ToString()}});
            // Nothing after the controller's watermark reached it.
            outbox_->ResetSent(w.applied_sequence());
            const OutboxStats os = outbox_->stats();
            cursor =
                std::max<uint64_t>(w.applied_sequence(), os.acked_sequence);
            welcomed = true;
            next_heartbeat = now;
            LogInfo("session_welcome",
                    {{"controller", w.controller_id()},
                     {"applied", absl::StrCat(w.applied_sequence())},
                     {"outbox_depth", absl::StrCat(os.depth)}});
            absl::MutexLock lock(&mu_);
            stats_.connected = true;
            ++stats_.connects_total;
            stats_.acked_sequence = os.acked_sequence;
            break;
          }
          case v1::ControllerMessage::kAssignments: {
            sink_->OnAssignments(m.assignments());
            absl::MutexLock lock(&mu_);
            stats_.assignment_version = m.assignments().version();
            break;
          }
          case v1::ControllerMessage::kAck: {
            const uint64_t seq = m.ack().applied_sequence();
            absl::Status s = outbox_->Ack(seq);
            if (!s.ok())
              LogError("outbox_ack_failed", {{"error", s.ToString()}});
            while (!unacked.empty() && unacked.front() <= seq)
              unacked.pop_front();
            absl::MutexLock lock(&mu_);
            ++stats_.acks_total;
            stats_.acked_sequence = std::max(stats_.acked_sequence, seq);
            break;
          }
          case v1::ControllerMessage::kDrain:
            LogInfo("controller_drain", {{"reason", m.drain().reason()}});
            break;
          case v1::ControllerMessage::kAdhocProbe:
            if (options_.on_adhoc_probe) {
              options_.on_adhoc_probe(m.adhoc_probe());
            } else {
              LogInfo("adhoc_probe_ignored",
                      {{"id", m.adhoc_probe().adhoc_id()}});
            }
            break;
          default:
            break;
        }
      }
      if (done) {
        if (goodbye_sent) {
          LogInfo("session_goodbye_done");
          absl::MutexLock lock(&mu_);
          goodbye_done_ = true;
        }
        return welcomed;
      }
      if (cancelled) continue;  // Waiting for OnDone.
      if (stopping) {
        reactor->Cancel();
        cancelled = true;
        continue;
      }
      if (!welcomed && now - started > options_.welcome_timeout) {
        LogWarning("session_welcome_timeout");
        reactor->Cancel();
        cancelled = true;
        continue;
      }
      if (welcomed && now - last_rx > 2 * heartbeat_interval_) {
        LogWarning("session_liveness_timeout");
        reactor->Cancel();
        cancelled = true;
        continue;
      }
      if (!welcomed) continue;
      if (goodbye_sent) continue;  // Waiting for the controller to close.
      {
        std::string reason;
        bool requested;
        {
          absl::MutexLock lock(&mu_);
          requested = goodbye_requested_;
          reason = goodbye_reason_;
        }
        if (requested) {
          v1::AgentMessage m;
          m.mutable_goodbye()->set_reason(reason);
          m.mutable_goodbye()->set_outbox_depth(outbox_->stats().depth);
          reactor->Send(std::move(m));
          goodbye_sent = true;
          continue;
        }
      }
      {
        std::deque<v1::AdhocResult> results;
        {
          absl::MutexLock lock(&mu_);
          welcomed_ = true;
          results.swap(adhoc_out_);
        }
        for (v1::AdhocResult& r : results) {
          v1::AgentMessage m;
          *m.mutable_adhoc_result() = std::move(r);
          reactor->Send(std::move(m));
        }
      }
      while (static_cast<int>(unacked.size()) < options_.max_unacked_batches) {
        auto batch = outbox_->ReadForSend(cursor, options_.max_batch_outcomes,
                                          options_.max_batch_bytes);
        if (!batch.ok()) {
          LogError("outbox_read_failed",
                   {{"error", batch.status().ToString()}});
          break;
        }
        if (batch->empty()) break;
        // One batch is one contiguous run of sequences: the bound may have
        // dropped outcomes between stored ones, and the controller counts
        // those as a gap between batches (the rest is sent next time).
        for (size_t k = 1; k < batch->size(); ++k) {
          if ((*batch)[k].sequence() != (*batch)[0].sequence() + k) {
            batch->resize(k);
            break;
          }
        }
        v1::AgentMessage m;
        v1::OutcomeBatch* b = m.mutable_outcomes();
        b->set_first_sequence(batch->front().sequence());
        b->set_dropped_total(outbox_->stats().dropped_total);
        const size_t n = batch->size();
        for (v1::Outcome& o : *batch) *b->add_outcomes() = std::move(o);
        cursor = b->outcomes(n - 1).sequence();
        unacked.push_back(cursor);
        reactor->Send(std::move(m));
        absl::MutexLock lock(&mu_);
        ++stats_.batches_sent_total;
        stats_.outcomes_sent_total += n;
      }
      for (;;) {  // Platform samples, in messages of at most 1000.
        v1::AgentMessage m;
        {
          absl::MutexLock lock(&mu_);
          while (!platform_.empty() &&
                 m.platform_metrics().samples_size() < 1000) {
            *m.mutable_platform_metrics()->add_samples() =
                std::move(platform_.front());
            platform_.pop_front();
          }
          stats_.platform_samples_sent_total +=
              m.platform_metrics().samples_size();
        }
        if (!m.has_platform_metrics()) break;
        reactor->Send(std::move(m));
      }
      if (now >= next_heartbeat) {
        const OutboxStats os = outbox_->stats();
        v1::AgentMessage m;
        v1::Heartbeat* h = m.mutable_heartbeat();
        *h->mutable_time() = TimeToProto(clock_->Now());
        h->set_outbox_depth(os.depth);
        h->set_outbox_bytes(os.bytes);
        h->set_dropped_total(os.dropped_total);
        if (options_.in_flight) h->set_in_flight(options_.in_flight());
        {
          absl::MutexLock lock(&mu_);
          h->set_assignment_version(stats_.assignment_version);
        }
        reactor->Send(std::move(m));
        next_heartbeat = now + heartbeat_interval_;
      }
    }
  }

  const SessionClientOptions options_;
  Outbox* const outbox_;
  AssignmentSink* const sink_;
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
  std::mt19937_64 rng_;
  absl::Duration heartbeat_interval_;
  std::thread driver_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status stream_status_ ABSL_GUARDED_BY(mu_);
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::PlatformMetricSample> platform_ ABSL_GUARDED_BY(mu_);
  // Live ad-hoc results waiting for the driver; welcomed_ is whether the
  // current stream got its Welcome.
  std::deque<v1::AdhocResult> adhoc_out_ ABSL_GUARDED_BY(mu_);
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Goodbye(): requested, then done once the controller closed the stream
  // after receiving it (no reconnect afterwards).
  bool goodbye_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool goodbye_done_ ABSL_GUARDED_BY(mu_) = false;
  std::string goodbye_reason_ ABSL_GUARDED_BY(mu_);
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
