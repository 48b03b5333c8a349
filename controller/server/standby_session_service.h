// Private to controller/server: the AgentSession service a standby replica
// serves. Every stream is refused at once with UNAVAILABLE "not the leader;
// leader=<address>" (or "leader=unknown" before the lease was read), so an
// agent moves on to the leader.
//
// Thread-safety: thread-safe. The elector, once set, must outlive the
// service.
#ifndef FLEETCANARY_CONTROLLER_SERVER_STANDBY_SESSION_SERVICE_H_
#define FLEETCANARY_CONTROLLER_SERVER_STANDBY_SESSION_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "controller/leader/leader_elector.h"
#include "fleetcanary/v1/session.grpc.pb.h"

namespace fleetcanary {
namespace controller {

class StandbySessionService : public v1::AgentSession::CallbackService {
 public:
  // Where leader_address() reads the lease from (nullptr: unknown).
  void set_elector(LeaderElector* elector);

  // Refuses the stream, naming the leader.
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext*) override;

  // The leader's address as last read ("" when unknown).
  std::string leader_address();

 private:
  absl::Mutex mu_;
  LeaderElector* elector_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SERVER_STANDBY_SESSION_SERVICE_H_
