#include "tests/integration/sim_agents.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc/outside_ops_hold.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.grpc.pb.h"
#include "google/protobuf/util/time_util.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace testing {

v1::Outcome SimOutcome(uint64_t i) {
  v1::Outcome o;
  o.set_target("canary");
  o.set_mode(i % 2 ? v1::BUFFERED : v1::RESPONSE_STREAM);
  o.set_requested_bytes(uint64_t{2} << (2 * (i % 6)));
  o.set_probe_id(absl::StrCat("0123456789abcdef", i));
  o.set_schedule_id("ladder");
  o.mutable_start_time()->set_seconds(1700000000 + (i % 1000) / 100);
  auto* t = o.mutable_timings();
  t->mutable_connect()->set_nanos(300000);
  t->mutable_headers_received()->set_nanos(20000000 + i % 1000 * 10000);
  t->mutable_total()->set_nanos(120000000);
  o.set_http_version("1.1");
  o.set_status(i % 97 ? 200 : 502);
  o.set_platform_request_id("c0ffee00-1111-2222-3333-444455556666");
  o.set_expected_bytes(o.requested_bytes());
  o.set_received_bytes(o.requested_bytes());
  o.set_chunk_count(1);
  o.set_first_bad_offset(-1);
  o.set_transfer_end(v1::COMPLETE);
  o.set_outcome_class(i % 97 ? v1::OK : v1::HTTP_5XX);
  o.set_seed(i);
  return o;
}

std::string SimFleetYaml() {
  // SimOutcome's streams: sizes 2 << 2k for k < 6, both modes.
  return "targets:\n"
         "- name: canary\n"
         "  regions:\n"
         "  - region: us-east-1\n"
         "    urls:\n"
         "    - mode: BUFFERED\n"
         "      url: http://127.0.0.1:9/buffered\n"
         "    - mode: RESPONSE_STREAM\n"
         "      url: http://127.0.0.1:9/stream\n"
         "schedules:\n"
         "- id: ladder\n"
         "  target: canary\n"
         "  sizes: [2, 8, 32, 128, 512, 2048]\n"
         "  rate_per_second: 0.01\n"
         "  agents_per_region: 1000\n";
}

namespace {

Clock* const kClock = Clock::Real();

// State every agent reports into.
struct Shared {
  explicit Shared(const SimAgentsOptions& o) : options(o) {}
  const SimAgentsOptions options;
  // Full batches of SimOutcomes (sequence 0: the controller numbers them from
  // first_sequence), copied into each message.
  std::vector<v1::OutcomeBatch> batches;
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<int> welcomed{0};
  std::atomic<int> ended{0};
  std::atomic<int> done{0};
  std::atomic<bool> stopping{false};

  absl::Mutex mu;
  // State below is protected by mu.
  bool producing ABSL_GUARDED_BY(mu) = false;
  absl::Duration start ABSL_GUARDED_BY(mu);
  absl::Duration stop ABSL_GUARDED_BY(mu) = absl::InfiniteDuration();
  std::vector<double> latency_ms ABSL_GUARDED_BY(mu);

  // Outcomes each agent has produced by now (rate mode).
  uint64_t ProducedPerAgent() {
    absl::MutexLock lock(&mu);
    if (!producing && stop == absl::InfiniteDuration()) return 0;
    const absl::Duration until = std::min(kClock->MonotonicNow(), stop);
    return static_cast<uint64_t>(options.rate_per_agent *
                                 absl::ToDoubleSeconds(until - start));
  }
};

class SimAgent
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  SimAgent(v1::AgentSession::Stub* stub, std::string id, Shared* shared)
      : id_(std::move(id)), shared_(shared) {
    stub->async()->Connect(&context_, this);
    AddHold();  // The pacer thread writes too (outside_ops_hold.h).
    StartRead(&in_);
    StartCall();
    v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_id(id_);
    hello.mutable_hello()->set_region("us-east-1");
    Write(std::move(hello));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      if (hold_.Ended()) RemoveHold();
      return;
    }
    if (in_.has_welcome()) {
      {
        absl::MutexLock lock(&mu_);
        base_ = in_.welcome().applied_sequence();
        if (in_.welcome().has_heartbeat_interval()) {
          heartbeat_interval_ =
              absl::Seconds(in_.welcome().heartbeat_interval().seconds());
        }
        next_heartbeat_ = kClock->MonotonicNow() + heartbeat_interval_ / 2;
        next_seq_ = base_ + 1;
        acked_seq_ = base_;
        welcomed_ = true;
      }
      shared_->welcomed++;
    } else if (in_.has_ack()) {
      const uint64_t seq = in_.ack().applied_sequence();
      const absl::Duration now = kClock->MonotonicNow();
      std::vector<double> lat;
      uint64_t n = 0;
      {
        absl::MutexLock lock(&mu_);
        while (!inflight_.empty() && inflight_.front().first <= seq) {
          lat.push_back(
              absl::ToDoubleMilliseconds(now - inflight_.front().second));
          inflight_.pop_front();
        }
        if (seq > acked_seq_) {
          n = seq - acked_seq_;
          acked_seq_ = seq;
        }
      }
      shared_->acked += n;
      {
        absl::MutexLock lock(&shared_->mu);
        shared_->latency_ms.insert(shared_->latency_ms.end(), lat.begin(),
                                   lat.end());
      }
      SendMore(shared_->ProducedPerAgent());
    }
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      out_.pop_front();
      if (ok && !out_.empty()) {
        next = &out_.front();
      } else {
        writing_ = false;
        if (!ok) out_.clear();
      }
    }
    if (next) StartWrite(next);
  }

  void OnDone(const grpc::Status&) override {
    if (!shared_->stopping) shared_->ended++;
    shared_->done++;
  }

  void Cancel() { context_.TryCancel(); }

  // Sends from the outbox while the window allows. `produced`: outcomes
  // produced per agent by now (ignored when the outbox is always full).
  // Called from the Ack reaction and the send loop at once: a batch's
  // sequence numbers are taken and it is queued for writing in one critical
  // section, so batches go out in sequence order (as the agent's single
  // session thread sends them).
  void SendMore(uint64_t produced) {
    if (!hold_.Begin()) return;
    SendMoreHeld(produced);
    if (hold_.End()) RemoveHold();
  }

  // Sends a Heartbeat when one is due (at half the controller's interval,
  // as the agent does, so the controller never sees this agent as lost).
  void MaybeHeartbeat(absl::Duration now) {
    v1::AgentMessage m;
    {
      absl::MutexLock lock(&mu_);
      if (!welcomed_ || shared_->stopping || now < next_heartbeat_) return;
      next_heartbeat_ = now + heartbeat_interval_ / 2;
      *m.mutable_heartbeat()->mutable_time() =
          google::protobuf::util::TimeUtil::GetCurrentTime();
      m.mutable_heartbeat()->set_outbox_depth(next_seq_ - 1 - acked_seq_);
    }
    Write(std::move(m));
  }

  // Rate 0: stops filling the outbox (what was sent is all there is).
  void StopFilling() {
    absl::MutexLock lock(&mu_);
    full_ = false;
  }
  void StartFilling() {
    absl::MutexLock lock(&mu_);
    full_ = true;
  }
  uint64_t sent_outcomes() {
    absl::MutexLock lock(&mu_);
    return next_seq_ - 1 - base_;
  }

 private:
  void SendMoreHeld(uint64_t produced) {
    const SimAgentsOptions& o = shared_->options;
    for (;;) {
      const v1::AgentMessage* start = nullptr;
      {
        v1::AgentMessage m;
        absl::MutexLock lock(&mu_);
        if (!welcomed_ || shared_->stopping ||
            static_cast<int>(inflight_.size()) >= o.window) {
          return;
        }
        uint64_t available = 0;
        if (o.rate_per_agent > 0) {
          const uint64_t sent = next_seq_ - 1 - base_;
          available = produced > sent ? produced - sent : 0;
        } else {
          available = full_ ? o.batch : 0;
        }
        if (available == 0) return;
        const int n = static_cast<int>(std::min<uint64_t>(available, o.batch));
        v1::OutcomeBatch* b = m.mutable_outcomes();
        *b = shared_->batches[(next_seq_ / o.batch) % shared_->batches.size()];
        if (n < o.batch) {
          b->mutable_outcomes()->DeleteSubrange(n, o.batch - n);
        }
        // Probed just now, as a live agent's outcomes are.
        const absl::Time now = kClock->Now();
        const int64_t sec = absl::ToUnixSeconds(now);
        const int32_t nanos = static_cast<int32_t>(
            absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(sec)));
        for (v1::Outcome& out : *b->mutable_outcomes()) {
          out.mutable_start_time()->set_seconds(sec);
          out.mutable_start_time()->set_nanos(nanos);
        }
        b->set_first_sequence(next_seq_);
        next_seq_ += n;
        inflight_.push_back({next_seq_ - 1, kClock->MonotonicNow()});
        shared_->sent += n;
        start = QueueLocked(std::move(m));
      }
      if (start) StartWrite(start);
    }
  }

  void Write(v1::AgentMessage m) {
    if (!hold_.Begin()) return;
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      next = QueueLocked(std::move(m));
    }
    if (next) StartWrite(next);
    if (hold_.End()) RemoveHold();
  }

  // Queues `m`; returns the message to StartWrite (outside the lock) when
  // no write is in progress.
  const v1::AgentMessage* QueueLocked(v1::AgentMessage m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_.push_back(std::move(m));
    if (writing_) return nullptr;
    writing_ = true;
    return &out_.front();
  }

  const std::string id_;
  Shared* const shared_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  OutsideOpsHold hold_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<v1::AgentMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool full_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t base_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t acked_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(10);
  absl::Duration next_heartbeat_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<uint64_t, absl::Duration>> inflight_
      ABSL_GUARDED_BY(mu_);
};

class SimAgentsImpl : public SimAgents {
 public:
  explicit SimAgentsImpl(const SimAgentsOptions& options) : shared_(options) {
    const int batch = std::max(1, options.batch);
    for (int v = 0; v < 5; ++v) {
      v1::OutcomeBatch b;
      for (int i = 0; i < batch; ++i) {
        *b.add_outcomes() = SimOutcome(static_cast<uint64_t>(v) * batch + i);
      }
      shared_.batches.push_back(std::move(b));
    }
  }

  ~SimAgentsImpl() override {
    shared_.stopping = true;
    pacing_ = false;
    if (pacer_.joinable()) pacer_.join();
    for (auto& a : agents_) a->Cancel();
    WaitUntil([&] { return shared_.done.load() == agents_started_; },
              absl::Seconds(60));
  }

  absl::Status Open(absl::Duration bound) {
    const SimAgentsOptions& o = shared_.options;
    const int channels =
        std::max(1, o.agents * std::max(1, o.channels_per_1000) / 1000);
    for (int c = 0; c < channels; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("sim_agents.channel", c);  // Distinct connections.
      args.SetMaxReceiveMessageSize(64 << 20);
      stubs_.push_back(v1::AgentSession::NewStub(grpc::CreateCustomChannel(
          o.address, grpc::InsecureChannelCredentials(), args)));
    }
    for (int i = 0; i < o.agents; ++i) {
      agents_.push_back(std::make_unique<SimAgent>(
          stubs_[i % channels].get(), absl::StrCat(o.id_prefix, i), &shared_));
      ++agents_started_;
    }
    if (!WaitUntil([&] { return shared_.welcomed.load() == o.agents; },
                   bound)) {
      return absl::DeadlineExceededError(
          absl::StrCat(shared_.welcomed.load(), " of ", o.agents,
                       " simulated agents welcomed"));
    }
    return absl::OkStatus();
  }

  void Start() override {
    {
      absl::MutexLock lock(&shared_.mu);
      shared_.producing = true;
      shared_.start = kClock->MonotonicNow();
    }
    if (shared_.options.rate_per_agent <= 0) {
      for (auto& a : agents_) a->StartFilling();
    }
    pacing_ = true;
    pacer_ = std::thread([this] {
      while (pacing_) {
        const uint64_t produced = shared_.ProducedPerAgent();
        const absl::Duration now = kClock->MonotonicNow();
        for (auto& a : agents_) {
          a->MaybeHeartbeat(now);
          a->SendMore(produced);
        }
        kClock->SleepFor(shared_.options.send_interval);
      }
    });
  }

  void StopProducing() override {
    {
      absl::MutexLock lock(&shared_.mu);
      shared_.producing = false;
      shared_.stop = kClock->MonotonicNow();
    }
    for (auto& a : agents_) a->StopFilling();
  }

  bool WaitAllAcked(absl::Duration bound) override {
    return WaitUntil(
        [&] {
          // An ended stream is never resumed (these agents do not
          // reconnect): what it had not sent will never be acked.
          const SimAgentsStats s = Stats();
          return s.acked == s.produced || s.streams_ended > 0;
        },
        bound);
  }

  SimAgentsStats Stats() override {
    SimAgentsStats s;
    if (shared_.options.rate_per_agent > 0) {
      s.produced = shared_.ProducedPerAgent() * agents_.size();
    } else {
      for (auto& a : agents_) s.produced += a->sent_outcomes();
    }
    s.sent = shared_.sent.load();
    s.acked = shared_.acked.load();
    s.welcomed = shared_.welcomed.load();
    s.streams_ended = shared_.ended.load();
    return s;
  }

  std::vector<double> TakeAckLatenciesMs() override {
    absl::MutexLock lock(&shared_.mu);
    return std::exchange(shared_.latency_ms, {});
  }

 private:
  Shared shared_;
  std::vector<std::unique_ptr<v1::AgentSession::Stub>> stubs_;
  std::vector<std::unique_ptr<SimAgent>> agents_;
  int agents_started_ = 0;
  std::atomic<bool> pacing_{false};
  std::thread pacer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SimAgents>> SimAgents::Connect(
    const SimAgentsOptions& options, absl::Duration bound) {
  auto agents = std::make_unique<SimAgentsImpl>(options);
  if (absl::Status s = agents->Open(bound); !s.ok()) return s;
  return std::unique_ptr<SimAgents>(std::move(agents));
}

}  // namespace testing
}  // namespace fleetcanary
