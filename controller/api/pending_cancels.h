// Cancels of ad-hoc runs an agent may not have received (internal to
// controller/api/; the public interface is admin_core.h): sent while it was
// LOST (its stream closed, or about to be) or when it had no session. An
// agent keeps probing an ad-hoc run across reconnects, so they are sent
// again when its next session is welcomed, until `ttl` (the longest a run
// may last) ends. At most 64 are kept per agent (the oldest is forgotten,
// log adhoc_cancel_forgotten); one per run.
//
// Thread-safety: thread-safe.
#ifndef FLEETCANARY_CONTROLLER_API_PENDING_CANCELS_H_
#define FLEETCANARY_CONTROLLER_API_PENDING_CANCELS_H_

#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {

class PendingCancels {
 public:
  PendingCancels(Clock* clock, absl::Duration ttl) : clock_(clock), ttl_(ttl) {}

  // Keeps `cancel` for `agent_id` (no-op when its run's is already kept).
  void Add(const std::string& agent_id, const v1::AdhocProbe& cancel);

  // Removes and returns the agent's unexpired pending cancels.
  std::vector<v1::AdhocProbe> Take(const std::string& agent_id);

  // Cancels kept, over all agents.
  size_t size();

 private:
  static constexpr size_t kMaxPerAgent = 64;
  struct Entry {
    v1::AdhocProbe cancel;
    absl::Duration expires;
  };
  Clock* const clock_;
  const absl::Duration ttl_;
  absl::Mutex mu_;
  std::map<std::string, std::deque<Entry>> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_PENDING_CANCELS_H_
