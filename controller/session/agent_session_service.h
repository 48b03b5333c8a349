// gRPC adapter of AgentSession.Connect over a SessionHub (callback API).
//
// One reactor per stream: reads one message at a time and hands it to the
// Session (which may pause reading: flow control, see session_hub.h); writes
// are queued and issued one at a time; Finish waits for the queued writes. The
// service knows nothing of the protocol, except that it checks the first Hello
// against the connection's identity (see AgentSessionAuth) before the session
// sees it.
//
// Thread-safety: the service is thread-safe; `hub` must outlive it.
#ifndef FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_
#define FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_

#include <functional>
#include <string>
#include <vector>

#include "controller/session/session_hub.h"
#include "fleetcanary/v1/session.grpc.pb.h"

namespace fleetcanary {
namespace controller {

// Who may open a session. On a mutually authenticated (mTLS) connection the
// agent's identity comes from its client certificate
// (spiffe://fleetcanary/agent/<region>/<name>): the Hello must claim that
// region, and an agent_id equal to <name> -- or, when `agent_id_pattern` is
// set, one that matches it as a whole (ECMAScript regex, "{cert}" standing for
// <name>; e.g. "{cert}-[a-z0-9]+-[a-z0-9]{5}" for the pods of a Deployment
// that share its certificate). A mere prefix never matches. Any Hello (mTLS or
// not) must name an allowed region. Refused streams end with PERMISSION_DENIED
// or UNAUTHENTICATED and a message saying why, and call `on_refused`.
struct AgentSessionAuth {
  // Regions agents may serve; empty = any.
  std::vector<std::string> allowed_regions;
  // Connections must carry a verified agent certificate (set with mTLS).
  bool require_certificate = false;
  // Optional: agent ids a certificate may claim besides its own name (see
  // above). Empty = exactly the certificate's name.
  std::string agent_id_pattern;
  // Called once per refused stream (e.g. to count it).
  std::function<void(const absl::Status&)> on_refused;
};

class AgentSessionService : public v1::AgentSession::CallbackService {
 public:
  explicit AgentSessionService(SessionHub* hub, AgentSessionAuth auth = {})
      : hub_(hub), auth_(std::move(auth)) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  SessionHub* const hub_;
  const AgentSessionAuth auth_;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SESSION_AGENT_SESSION_SERVICE_H_
