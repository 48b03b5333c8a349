// The controller side of AgentSession.Connect, without gRPC.
//
// One SessionHub per controller; one Session per agent stream. The transport
// (the gRPC reactor in agent_session_service.h) hands every received message
// to Session::OnMessage and implements SessionSink to send and to finish.
//
// Protocol (proto/fleetcanary/v1/session.proto): the agent's first message is
// Hello; the session answers Welcome (with the committed watermark) and the
// agent's AssignmentSet, then pushes a new set whenever the scheduler changes
// it. OutcomeBatches go to Ingest; each is acknowledged (Ack) only after its
// transaction committed. Heartbeats flow both ways every heartbeat_interval;
// a stream silent for the liveness timeout is finished (the agent
// reconnects). Flow control: at most `max_inflight_batches` uncommitted
// batches per stream, and none while ingest is saturated (its queue bound,
// IngestOptions::max_queued_outcomes): the stream stops being read until
// commits catch up, so HTTP/2 flow control holds further batches in the
// agent's durable outbox (nothing is refused or lost; the agent's window of
// unacknowledged batches simply stays full). Heartbeats keep flowing to the
// agent, and a paused stream is not timed out, by the session or by the
// scheduler's liveness check (the agent is not LOST for our backlog).
//
// Drain(): stops accepting streams and messages, commits and acknowledges
// what was received, sends Drain and finishes every stream.
//
// Thread-safety: all methods are thread-safe. Sessions are shared_ptrs so
// late ingest callbacks never touch a freed stream.
#ifndef FLEETCANARY_CONTROLLER_SESSION_SESSION_HUB_H_
#define FLEETCANARY_CONTROLLER_SESSION_SESSION_HUB_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/fleet/scheduler.h"
#include "controller/ingest/ingest.h"
#include "controller/metrics/controller_metrics.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {

// Implemented by the transport. Both methods must not block.
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  // Queues a message; dropped once the stream is finishing.
  virtual void Send(v1::ControllerMessage message) = 0;
  // Ends the stream with `status` after queued messages were written.
  virtual void Finish(const absl::Status& status) = 0;
  // Restarts reading after OnMessage() returned false.
  virtual void ResumeReads() = 0;
};

class Session {
 public:
  virtual ~Session() = default;
  // Handles one received message, which it may move from (the transport
  // reads the next message into it afresh). Returns whether the transport
  // should read the next one now; if false, the session calls
  // sink->ResumeReads() later.
  virtual bool OnMessage(v1::AgentMessage& message) = 0;
  // The stream ended (any reason); the sink must not be used afterwards.
  virtual void OnClosed() = 0;
};

struct SessionHubOptions {
  std::string controller_id = "fleetcanary-controller";
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // A stream with no message for this long is finished (0 = 2 intervals).
  absl::Duration liveness_timeout = absl::ZeroDuration();
  absl::Duration metrics_period = absl::Seconds(60);
  int max_inflight_batches = 8;
};

class SessionHub {
 public:
  virtual ~SessionHub() = default;

  // Starts the heartbeat timer. Dependencies must outlive the hub.
  static absl::StatusOr<std::unique_ptr<SessionHub>> Create(
      const SessionHubOptions& options, Ingest* ingest, Scheduler* scheduler,
      ControllerMetrics* metrics, Clock* clock);

  // A new stream. Null when draining (the transport then finishes the
  // stream with UNAVAILABLE). `sink` must stay valid until OnClosed().
  virtual std::shared_ptr<Session> Open(SessionSink* sink) = 0;

  // Stops accepting, commits and acks what was received, sends Drain and
  // finishes every stream. Waits up to `timeout` for streams to close.
  virtual void Drain(const std::string& reason, absl::Duration timeout) = 0;

  virtual int active_sessions() = 0;

  // Sends `message` on the open, welcomed session of `agent_id` (the admin
  // API's ad-hoc probes). NOT_FOUND when the agent has no such session.
  virtual absl::Status SendToAgent(const std::string& agent_id,
                                   v1::ControllerMessage message) = 0;
  // Receives every AdhocResult an agent sends, with the agent id of its
  // Hello. Called on transport threads: must not block. Replaces any
  // previous handler.
  using AdhocResultHandler = std::function<void(const std::string& agent_id,
                                                const v1::AdhocResult& result)>;
  virtual void SetAdhocResultHandler(AdhocResultHandler handler) = 0;
  // Called with the agent id each time an agent's session is welcomed
  // (after Welcome was sent, so SendToAgent reaches it): the admin API
  // re-sends cancels the agent may have missed while LOST. Called on
  // transport/ingest threads without hub locks held; must not block.
  using AgentWelcomedHandler = std::function<void(const std::string& agent_id)>;
  virtual void SetAgentWelcomedHandler(AgentWelcomedHandler handler) = 0;
  // Stops the heartbeat timer. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SESSION_SESSION_HUB_H_
