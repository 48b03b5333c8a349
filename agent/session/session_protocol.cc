#include "agent/session/session_protocol.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace agent {

void SessionQueue::AddAdhocResult(v1::AdhocResult result) {
  if (adhoc_.size() < kMaxAdhocResults) adhoc_.push_back(std::move(result));
}

void SessionQueue::AddPlatformMetrics(v1::PlatformMetricBatch batch) {
  for (v1::PlatformMetricSample& sample : *batch.mutable_samples()) {
    platform_.push_back(std::move(sample));
  }
  while (platform_.size() > max_platform_samples_) {
    platform_.pop_front();
    ++platform_dropped_total_;
  }
}

void SessionQueue::RequestGoodbye(std::string reason) {
  goodbye_reason_ = std::move(reason);
}

SessionInputs SessionQueue::Take() {
  SessionInputs in;
  in.goodbye_reason = goodbye_reason_;
  in.adhoc_results.assign(std::make_move_iterator(adhoc_.begin()),
                          std::make_move_iterator(adhoc_.end()));
  adhoc_.clear();
  in.platform_samples.assign(std::make_move_iterator(platform_.begin()),
                             std::make_move_iterator(platform_.end()));
  platform_.clear();
  return in;
}

SessionProtocol::SessionProtocol(const SessionProtocolOptions& options,
                                 Outbox* outbox, AssignmentSink* sink)
    : options_(options),
      outbox_(outbox),
      sink_(sink),
      heartbeat_interval_(options.heartbeat_interval) {
  stats_.acked_sequence = outbox_->stats().acked_sequence;
}

v1::AgentMessage SessionProtocol::StartStream(absl::Duration now) {
  started_ = now;
  last_rx_ = now;
  next_heartbeat_ = now;
  welcomed_ = false;
  failed_ = false;
  goodbye_sent_ = false;
  cursor_ = 0;
  unacked_.clear();
  stats_.welcomed = false;
  v1::AgentMessage m;
  *m.mutable_hello() = options_.hello;
  m.mutable_hello()->set_last_acked_sequence(outbox_->stats().acked_sequence);
  return m;
}

absl::Status SessionProtocol::OnControllerMessage(
    const v1::ControllerMessage& m, absl::Duration now) {
  if (failed_) {
    return absl::FailedPreconditionError(
        "controller message after a protocol error");
  }
  last_rx_ = now;
  const auto kind = m.msg_case();
  if (kind == v1::ControllerMessage::kWelcome && welcomed_) {
    failed_ = true;
    return absl::FailedPreconditionError("second Welcome on one stream");
  }
  // Before Welcome the controller may only prove itself alive (Heartbeat)
  // or say it is draining: Acks, assignments and probes need a Welcome.
  const bool needs_welcome = kind == v1::ControllerMessage::kAck ||
                             kind == v1::ControllerMessage::kAssignments ||
                             kind == v1::ControllerMessage::kAdhocProbe;
  if (needs_welcome && !welcomed_) {
    failed_ = true;
    const auto* field = v1::ControllerMessage::descriptor()->FindFieldByNumber(
        static_cast<int>(kind));
    return absl::FailedPreconditionError(
        absl::StrCat("controller sent ", field ? field->name() : "a message",
                     " before Welcome"));
  }
  switch (m.msg_case()) {
    case v1::ControllerMessage::kWelcome:
      OnWelcome(m.welcome(), now);
      return absl::OkStatus();
    case v1::ControllerMessage::kAssignments:
      sink_->OnAssignments(m.assignments());
      stats_.assignment_version = m.assignments().version();
      return absl::OkStatus();
    case v1::ControllerMessage::kAck:
      return OnAck(m.ack());
    case v1::ControllerMessage::kDrain:
      LogInfo("controller_drain", {{"reason", m.drain().reason()}});
      return absl::OkStatus();
    case v1::ControllerMessage::kAdhocProbe:
      if (options_.on_adhoc_probe) {
        options_.on_adhoc_probe(m.adhoc_probe());
      } else {
        LogInfo("adhoc_probe_ignored", {{"id", m.adhoc_probe().adhoc_id()}});
      }
      return absl::OkStatus();
    default:  // Unknown to this agent (a newer controller): ignored.
      return absl::OkStatus();
  }
}

void SessionProtocol::OnWelcome(const v1::Welcome& w, absl::Duration now) {
  if (w.has_heartbeat_interval() &&
      DurationFromProto(w.heartbeat_interval()) > absl::ZeroDuration()) {
    heartbeat_interval_ = DurationFromProto(w.heartbeat_interval());
  }
  absl::Status s = outbox_->Ack(w.applied_sequence());
  if (!s.ok()) LogError("outbox_ack_failed", {{"error", s.ToString()}});
  // Nothing after the controller's watermark reached it.
  outbox_->ResetSent(w.applied_sequence());
  const OutboxStats os = outbox_->stats();
  cursor_ = std::max<uint64_t>(w.applied_sequence(), os.acked_sequence);
  welcomed_ = true;
  next_heartbeat_ = now;
  LogInfo("session_welcome", {{"controller", w.controller_id()},
                              {"applied", absl::StrCat(w.applied_sequence())},
                              {"outbox_depth", absl::StrCat(os.depth)}});
  stats_.welcomed = true;
  ++stats_.connects_total;
  stats_.acked_sequence = os.acked_sequence;
}

absl::Status SessionProtocol::OnAck(const v1::Ack& ack) {
  const uint64_t seq = ack.applied_sequence();
  // The controller acknowledges its watermark, which may cover outcomes an
  // earlier stream sent (they were committed late): fine. Beyond the last
  // sequence this agent ever assigned it acknowledges outcomes that do not
  // exist.
  const uint64_t last = outbox_->stats().last_sequence;
  if (seq > std::max(last, cursor_)) {
    failed_ = true;
    return absl::OutOfRangeError(
        absl::StrCat("Ack of sequence ", seq,
                     " beyond the last one this agent wrote (", last, ")"));
  }
  absl::Status s = outbox_->Ack(seq);
  if (!s.ok()) LogError("outbox_ack_failed", {{"error", s.ToString()}});
  while (!unacked_.empty() && unacked_.front() <= seq) unacked_.pop_front();
  ++stats_.acks_total;
  stats_.acked_sequence = std::max(stats_.acked_sequence, seq);
  return absl::OkStatus();
}

absl::Status SessionProtocol::CheckDeadlines(absl::Duration now) {
  if (!welcomed_ && now - started_ > options_.welcome_timeout) {
    LogWarning("session_welcome_timeout");
    return absl::DeadlineExceededError("no Welcome within welcome_timeout");
  }
  if (welcomed_ && now - last_rx_ > 2 * heartbeat_interval_) {
    LogWarning("session_liveness_timeout");
    return absl::DeadlineExceededError(absl::StrCat(
        "controller silent for ", absl::FormatDuration(now - last_rx_)));
  }
  return absl::OkStatus();
}

bool SessionProtocol::CanSend() const {
  return welcomed_ && !failed_ && !goodbye_sent_;
}

std::vector<v1::AgentMessage> SessionProtocol::Poll(absl::Duration now,
                                                    absl::Time wall_now,
                                                    SessionInputs inputs) {
  std::vector<v1::AgentMessage> out;
  if (!CanSend()) return out;
  if (inputs.goodbye_reason.has_value()) {
    out.push_back(MakeHeartbeat(wall_now));
    v1::AgentMessage m;
    m.mutable_goodbye()->set_reason(*inputs.goodbye_reason);
    m.mutable_goodbye()->set_outbox_depth(outbox_->stats().depth);
    out.push_back(std::move(m));
    goodbye_sent_ = true;
    return out;
  }
  for (v1::AdhocResult& r : inputs.adhoc_results) {
    v1::AgentMessage m;
    *m.mutable_adhoc_result() = std::move(r);
    out.push_back(std::move(m));
  }
  AddOutcomeBatches(&out);
  AddPlatformSamples(std::move(inputs.platform_samples), &out);
  if (now >= next_heartbeat_) {
    out.push_back(MakeHeartbeat(wall_now));
    next_heartbeat_ = now + heartbeat_interval_;
  }
  return out;
}

void SessionProtocol::AddOutcomeBatches(std::vector<v1::AgentMessage>* out) {
  while (static_cast<int>(unacked_.size()) < options_.max_unacked_batches) {
    auto batch = outbox_->ReadForSend(cursor_, options_.max_batch_outcomes,
                                      options_.max_batch_bytes);
    if (!batch.ok()) {
      LogError("outbox_read_failed", {{"error", batch.status().ToString()}});
      return;
    }
    if (batch->empty()) return;
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
    cursor_ = b->outcomes(n - 1).sequence();
    unacked_.push_back(cursor_);
    out->push_back(std::move(m));
    ++stats_.batches_sent_total;
    stats_.outcomes_sent_total += n;
  }
}

void SessionProtocol::AddPlatformSamples(
    std::vector<v1::PlatformMetricSample> samples,
    std::vector<v1::AgentMessage>* out) {
  for (size_t i = 0; i < samples.size(); i += kMaxPlatformSamplesPerMessage) {
    const size_t end =
        std::min(samples.size(), i + kMaxPlatformSamplesPerMessage);
    v1::AgentMessage m;
    for (size_t k = i; k < end; ++k) {
      *m.mutable_platform_metrics()->add_samples() = std::move(samples[k]);
    }
    stats_.platform_samples_sent_total += end - i;
    out->push_back(std::move(m));
  }
}

v1::AgentMessage SessionProtocol::MakeHeartbeat(absl::Time wall_now) {
  const OutboxStats os = outbox_->stats();
  v1::AgentMessage m;
  v1::Heartbeat* h = m.mutable_heartbeat();
  *h->mutable_time() = TimeToProto(wall_now);
  h->set_outbox_depth(os.depth);
  h->set_outbox_bytes(os.bytes);
  h->set_dropped_total(os.dropped_total);
  if (options_.in_flight) h->set_in_flight(options_.in_flight());
  h->set_assignment_version(stats_.assignment_version);
  return m;
}

absl::Duration SessionProtocol::NextDeadline() const {
  const absl::Duration silence = last_rx_ + 2 * heartbeat_interval_;
  if (!welcomed_) {
    return std::min(started_ + options_.welcome_timeout, silence);
  }
  // After Goodbye no heartbeat is sent: only the silence deadline counts.
  return CanSend() ? std::min(next_heartbeat_, silence) : silence;
}

bool SessionProtocol::EndStream() {
  const bool goodbye_taken = goodbye_sent_;
  welcomed_ = false;
  stats_.welcomed = false;
  return goodbye_taken;
}

}  // namespace agent
}  // namespace fleetcanary
