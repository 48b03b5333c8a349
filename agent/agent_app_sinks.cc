#include "agent/agent_app_sinks.h"

#include "agent/platform/cloudwatch_client.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace agent {

void PlatformGuardSink::OnAssignments(const v1::AssignmentSet& set) {
  v1::AssignmentSet checked = set;
  std::map<std::pair<std::string, std::string>, bool> targets;
  for (v1::Assignment& a : *checked.mutable_assignments()) {
    if (!a.url().has_cloudwatch()) continue;
    platform::MetricsTarget t;
    t.region = a.region();
    t.identity = a.url().cloudwatch();
    const std::string endpoint = platform::EndpointFor(t, default_endpoint_);
    absl::Status allowed = guard_->CheckUrl(endpoint);
    bool& ok =
        targets.try_emplace({a.region(), a.target()}, true).first->second;
    if (!allowed.ok()) {
      ok = false;
      LogWarning("platform_endpoint_refused", {{"target", a.target()},
                                               {"endpoint", endpoint},
                                               {"error", allowed.ToString()}});
      a.mutable_url()->clear_cloudwatch();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    targets_ = std::move(targets);
  }
  next_->OnAssignments(checked);
}

std::map<std::pair<std::string, std::string>, bool>
PlatformGuardSink::targets() {
  absl::MutexLock lock(&mu_);
  return targets_;
}

}  // namespace agent
}  // namespace fleetcanary
