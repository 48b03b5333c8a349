// Internal to agent_app: the AssignmentSinks between the session and the
// parts that act on assignments. FanOut hands each set to every part and
// counts the sets applied (readiness); PlatformGuardSink strips the
// CloudWatch identity of assignments whose metrics endpoint the platform
// guard refuses before the platform loop sees them.
//
// Thread-safety: OnAssignments is called on the session's thread only
// (AssignmentSink contract); FanOut::applied() and
// PlatformGuardSink::targets() may be called from any thread.
#ifndef FLEETCANARY_AGENT_AGENT_APP_SINKS_H_
#define FLEETCANARY_AGENT_AGENT_APP_SINKS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/session/session_protocol.h"
#include "common/net/target_guard.h"

namespace fleetcanary {
namespace agent {

// Drops the CloudWatch identity of assignments whose metrics endpoint the
// platform guard refuses (the endpoint comes from the controller; each
// refusal is logged), then hands the set on to `next`.
class PlatformGuardSink : public AssignmentSink {
 public:
  // `next` must outlive this object. `default_endpoint`: the operator's
  // CloudWatch endpoint override ("" = the region's).
  PlatformGuardSink(std::unique_ptr<TargetGuard> guard, AssignmentSink* next,
                    std::string default_endpoint)
      : guard_(std::move(guard)),
        next_(next),
        default_endpoint_(std::move(default_endpoint)) {}

  void OnAssignments(const v1::AssignmentSet& set) override;

  // Of the last set: (region, target) with CloudWatch configured -> whether
  // its endpoint was allowed.
  std::map<std::pair<std::string, std::string>, bool> targets();

 private:
  const std::unique_ptr<TargetGuard> guard_;
  AssignmentSink* const next_;
  const std::string default_endpoint_;
  // State below is protected by mu_.
  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, bool> targets_
      ABSL_GUARDED_BY(mu_);
};

// Hands each AssignmentSet to every added sink, in the order added, and
// counts the sets applied (readiness).
class FanOut : public AssignmentSink {
 public:
  // REQUIRES: before the first OnAssignments; `sink` outlives this object.
  void Add(AssignmentSink* sink) { sinks_.push_back(sink); }
  void OnAssignments(const v1::AssignmentSet& set) override {
    for (AssignmentSink* s : sinks_) s->OnAssignments(set);
    applied_.fetch_add(1, std::memory_order_relaxed);
  }
  // Sets handed on so far.
  uint64_t applied() const { return applied_.load(std::memory_order_relaxed); }

 private:
  std::vector<AssignmentSink*> sinks_;
  std::atomic<uint64_t> applied_{0};
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_AGENT_APP_SINKS_H_
