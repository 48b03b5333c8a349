// The handlers of the messages an agent sends on its session
// (session_impl.h); the session's lifecycle is in session_impl.cc.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "controller/session/session_impl.h"

namespace fleetcanary {
namespace controller {
namespace session_internal {

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
    case v1::AgentMessage::kOutcomes:
      return HandleOutcomes(agent_id, region, *message.mutable_outcomes());
    case v1::AgentMessage::kPlatformMetrics:
      return HandlePlatformMetrics(agent_id, region,
                                   *message.mutable_platform_metrics());
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
    case v1::AgentMessage::kGoodbye:
      return HandleGoodbye(agent_id, message.goodbye());
    default:
      return RejectUnknown();
  }
}

bool SessionImpl::HandleOutcomes(const std::string& agent_id,
                                 const std::string& region,
                                 v1::OutcomeBatch& batch) {
  auto self = shared_from_this();
  std::vector<bool> rejected = CheckOutcomes(agent_id, batch);
  {
    absl::MutexLock lock(&mu_);
    ++inflight_;
  }
  hub_->ingest()->SubmitOutcomes(
      agent_id, region, std::move(batch),
      [self](const IngestResult& r) { self->OnIngested(r, true); },
      std::move(rejected));
  return ReadMore();
}

bool SessionImpl::HandlePlatformMetrics(const std::string& agent_id,
                                        const std::string& region,
                                        v1::PlatformMetricBatch& metrics) {
  auto self = shared_from_this();
  {
    absl::MutexLock lock(&mu_);
    ++inflight_;
  }
  hub_->ingest()->SubmitPlatform(
      agent_id, region, std::move(metrics),
      [self](const IngestResult& r) { self->OnIngested(r, false); });
  return ReadMore();
}

// A clean shutdown: DRAINED (not LOST) once this stream closes, which it
// does now, with OK.
bool SessionImpl::HandleGoodbye(const std::string& agent_id,
                                const v1::Goodbye& goodbye) {
  LogInfo("agent_goodbye",
          {{"agent", agent_id},
           {"reason", goodbye.reason()},
           {"outbox_depth", absl::StrCat(goodbye.outbox_depth())}});
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

bool SessionImpl::RejectUnknown() {
  absl::MutexLock lock(&mu_);
  FinishLocked(
      absl::InvalidArgumentError("agent session: empty or unknown message"));
  return false;
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

}  // namespace session_internal
}  // namespace controller
}  // namespace fleetcanary
