// gRPC adapter of AgentSession.Connect over a SessionHub (callback API).
//
// One reactor per stream: reads one message at a time and hands it to the
// Session; writes are queued and issued one at a time; Finish waits for the
// queued writes. The service knows nothing of the protocol.
//
// Thread-safety: the service is thread-safe; `hub` must outlive it.
#ifndef FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_
#define FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_

#include "controller/session/session_hub.h"
#include "fleetcanary/v1/session.grpc.pb.h"

namespace fleetcanary {
namespace controller {

class AgentSessionService : public v1::AgentSession::CallbackService {
 public:
  explicit AgentSessionService(SessionHub* hub) : hub_(hub) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  SessionHub* const hub_;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_
