#include "controller/server/standby_session_service.h"

#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace controller {
namespace {

// Finishes at once with `message`; deletes itself when done.
class Refuse
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  explicit Refuse(const std::string& message) {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
  }
  void OnDone() override { delete this; }
};

}  // namespace

void StandbySessionService::set_elector(LeaderElector* elector) {
  absl::MutexLock lock(&mu_);
  elector_ = elector;
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>*
StandbySessionService::Connect(grpc::CallbackServerContext*) {
  const std::string leader = leader_address();
  return new Refuse(absl::StrCat("not the leader; leader=",
                                 leader.empty() ? "unknown" : leader));
}

std::string StandbySessionService::leader_address() {
  absl::MutexLock lock(&mu_);
  return elector_ != nullptr ? elector_->lease().address : std::string();
}

}  // namespace controller
}  // namespace fleetcanary
