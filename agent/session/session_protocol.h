// The agent's side of the AgentSession protocol, without a transport: no
// gRPC, no threads, no clock reads. The caller (SessionClient) opens a
// stream, feeds in what the controller sent with the current monotonic
// time, and writes out the messages this class produces.
//
// Per stream:
//   StartStream() gives the Hello (identity, region, last acknowledged
//   sequence). The first controller message must be Welcome: the outbox
//   drops everything up to the controller's applied sequence and the send
//   cursor restarts right after it, so everything not acknowledged is
//   resent. After Welcome, Poll() sends OutcomeBatches from the outbox (one
//   contiguous run of sequences each, at most max_batch_outcomes and about
//   max_batch_bytes) with at most max_unacked_batches awaiting their Ack;
//   each Ack deletes what it covers from the outbox. AssignmentSets go to the
//   AssignmentSink, ad-hoc probes to on_adhoc_probe. A Heartbeat is due at
//   Welcome and then every heartbeat_interval (the controller's, from
//   Welcome). A stream with no controller message for 2 heartbeat intervals,
//   or without Welcome after welcome_timeout, is to be closed
//   (CheckDeadlines). Once a Goodbye is sent nothing else is; the stream
//   then waits for the controller to close it.
//
// Protocol errors (an Ack, AssignmentSet or AdhocProbe before Welcome - a
// Heartbeat or Drain may come first -, a second Welcome, an Ack beyond the
// highest sequence the agent ever wrote) make OnControllerMessage return an
// error: the caller closes the stream and reconnects; the outbox is not
// touched by the offending message.
//
// SessionQueue holds what other threads hand to the session between polls
// (live ad-hoc results, platform samples, a Goodbye request), bounded.
//
// Thread-safety: thread-compatible (the caller serializes all calls). The
// outbox, sink and callbacks are called from the calling thread.
//
// Example (one stream; `now` is a monotonic time):
//   SessionProtocol p(options, outbox, sink);
//   Write(p.StartStream(now));
//   for each controller message m:
//     if (!p.OnControllerMessage(m, now).ok()) close the stream;
//   if (!p.CheckDeadlines(now).ok()) close the stream;
//   if (p.CanSend()) for (auto& out : p.Poll(now, wall_now, inputs))
//   Write(out); wait until a message arrives or p.NextDeadline();
//   ... and when the stream ends: p.EndStream();
#ifndef FLEETCANARY_AGENT_SESSION_SESSION_PROTOCOL_H_
#define FLEETCANARY_AGENT_SESSION_SESSION_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/outbox/outbox.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace agent {

// Receives the controller's desired AssignmentSet. Called on the session's
// driver thread; may take a while but must not call back into the session.
class AssignmentSink {
 public:
  virtual ~AssignmentSink() = default;
  virtual void OnAssignments(const v1::AssignmentSet& set) = 0;
};

struct SessionProtocolOptions {
  // Identity sent in Hello (last_acked_sequence is filled in).
  v1::Hello hello;
  // Used until the controller's Welcome says otherwise.
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // Longest wait for Welcome after opening a stream.
  absl::Duration welcome_timeout = absl::Seconds(10);
  int max_batch_outcomes = 500;
  size_t max_batch_bytes = 1 << 20;
  int max_unacked_batches = 4;
  // Reports in-flight probes in heartbeats (optional).
  std::function<uint32_t()> in_flight;
  // Receives the controller's ad-hoc probes; must not block. Unset: they
  // are logged and ignored.
  std::function<void(const v1::AdhocProbe&)> on_adhoc_probe;
};

struct SessionProtocolStats {
  bool welcomed = false;        // Welcome received on the current stream.
  uint64_t connects_total = 0;  // Streams that got a Welcome.
  uint64_t batches_sent_total = 0;
  uint64_t outcomes_sent_total = 0;
  uint64_t acks_total = 0;
  uint64_t assignment_version = 0;
  uint64_t acked_sequence = 0;
  uint64_t platform_samples_sent_total = 0;
};

// What other threads queued for the stream since the last poll.
struct SessionInputs {
  std::optional<std::string> goodbye_reason;  // Set: send Goodbye.
  std::vector<v1::AdhocResult> adhoc_results;
  std::vector<v1::PlatformMetricSample> platform_samples;
};

// Bounded queues feeding SessionInputs. Thread-compatible.
class SessionQueue {
 public:
  static constexpr size_t kMaxAdhocResults = 10000;

  // `max_platform_samples`: most platform samples kept; older ones are
  // dropped first and counted.
  explicit SessionQueue(size_t max_platform_samples)
      : max_platform_samples_(max_platform_samples) {}

  // Keeps `result` unless kMaxAdhocResults wait already (then it is
  // dropped: live results are best effort, the outbox has them all).
  void AddAdhocResult(v1::AdhocResult result);
  // Appends the batch's samples, then drops the oldest beyond the bound.
  void AddPlatformMetrics(v1::PlatformMetricBatch batch);
  // Asks for a Goodbye with `reason` (the last request wins).
  void RequestGoodbye(std::string reason);

  bool has_adhoc_results() const { return !adhoc_.empty(); }
  size_t platform_samples() const { return platform_.size(); }
  uint64_t platform_dropped_total() const { return platform_dropped_total_; }

  // Moves everything queued out (the Goodbye request stays).
  SessionInputs Take();

 private:
  const size_t max_platform_samples_;
  std::deque<v1::AdhocResult> adhoc_;
  std::deque<v1::PlatformMetricSample> platform_;
  uint64_t platform_dropped_total_ = 0;
  std::optional<std::string> goodbye_reason_;
};

class SessionProtocol {
 public:
  // Platform samples per PlatformMetricBatch message.
  static constexpr int kMaxPlatformSamplesPerMessage = 1000;

  // `outbox` and `sink` must outlive the protocol. Reads the outbox's
  // acknowledged sequence into stats().
  SessionProtocol(const SessionProtocolOptions& options, Outbox* outbox,
                  AssignmentSink* sink);

  // A new stream opened at `now`: forgets the previous stream's state and
  // returns the Hello to send first.
  v1::AgentMessage StartStream(absl::Duration now);

  // Handles one controller message received at `now` (it also proves the
  // controller alive). FAILED_PRECONDITION for an Ack, AssignmentSet or
  // AdhocProbe before Welcome or a second Welcome, OUT_OF_RANGE for an Ack
  // beyond what was sent; after an error every further message of the stream is
  // ignored (FAILED_PRECONDITION). Outbox errors are logged, not returned (the
  // stream goes on).
  absl::Status OnControllerMessage(const v1::ControllerMessage& message,
                                   absl::Duration now);

  // DEADLINE_EXCEEDED when the stream is to be closed at `now`: no Welcome
  // within welcome_timeout, or no controller message for 2 heartbeat
  // intervals. OK otherwise.
  absl::Status CheckDeadlines(absl::Duration now);

  // Whether Poll may send: welcomed, no Goodbye sent, no protocol error.
  bool CanSend() const;

  // The messages to write now, in order: for a requested Goodbye, a last
  // Heartbeat (so the controller gets the final dropped count: drops after
  // the last batch and heartbeat would otherwise never reach it) and the
  // Goodbye (then nothing else, now or later on this stream); else the
  // ad-hoc results, outcome
  // batches up to the unacked window, the platform samples and a heartbeat
  // when one is due (wall time `wall_now`). Without CanSend() it returns
  // nothing and `inputs` are dropped.
  std::vector<v1::AgentMessage> Poll(absl::Duration now, absl::Time wall_now,
                                     SessionInputs inputs);

  // Latest monotonic time to call CheckDeadlines/Poll again if nothing
  // arrives: the next heartbeat (the Welcome timeout before Welcome; none
  // after Goodbye) or the silence deadline, whichever is first.
  absl::Duration NextDeadline() const;

  // The stream ended (for any reason). Returns whether it had carried our
  // Goodbye (the controller took it: do not reconnect).
  bool EndStream();

  bool goodbye_sent() const { return goodbye_sent_; }
  // Batches sent on this stream and not yet acknowledged.
  size_t unacked_batches() const { return unacked_.size(); }
  absl::Duration heartbeat_interval() const { return heartbeat_interval_; }
  const SessionProtocolStats& stats() const { return stats_; }

 private:
  void OnWelcome(const v1::Welcome& welcome, absl::Duration now);
  absl::Status OnAck(const v1::Ack& ack);
  void AddOutcomeBatches(std::vector<v1::AgentMessage>* out);
  void AddPlatformSamples(std::vector<v1::PlatformMetricSample> samples,
                          std::vector<v1::AgentMessage>* out);
  v1::AgentMessage MakeHeartbeat(absl::Time wall_now);

  const SessionProtocolOptions options_;
  Outbox* const outbox_;
  AssignmentSink* const sink_;
  absl::Duration heartbeat_interval_;
  SessionProtocolStats stats_;

  // Per stream (StartStream resets them).
  absl::Duration started_;
  absl::Duration last_rx_;
  absl::Duration next_heartbeat_;
  bool welcomed_ = false;
  bool failed_ = false;  // A protocol error: the stream is to be closed.
  bool goodbye_sent_ = false;
  uint64_t cursor_ = 0;           // Last sequence sent (or resumed from).
  std::deque<uint64_t> unacked_;  // Last sequence of each batch in flight.
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_SESSION_SESSION_PROTOCOL_H_
