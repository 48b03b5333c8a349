// Cancels an agent may not have received (see pending_cancels.h).
#include "controller/api/pending_cancels.h"

#include <utility>

#include "common/log/log.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {

void PendingCancels::Add(const std::string& agent_id,
                         const v1::AdhocProbe& cancel) {
  absl::MutexLock lock(&mu_);
  std::deque<Entry>& q = pending_[agent_id];
  for (const Entry& e : q) {
    if (e.cancel.adhoc_id() == cancel.adhoc_id()) return;
  }
  q.push_back({cancel, clock_->MonotonicNow() + ttl_});
  while (q.size() > kMaxPerAgent) {
    LogWarning("adhoc_cancel_forgotten",
               {{"agent", agent_id},
                {"adhoc_id", q.front().cancel.adhoc_id()},
                {"reason", "too many pending cancels for this agent"}});
    q.pop_front();
  }
}

std::vector<v1::AdhocProbe> PendingCancels::Take(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::AdhocProbe> out;
  auto it = pending_.find(agent_id);
  if (it == pending_.end()) return out;
  const absl::Duration now = clock_->MonotonicNow();
  for (Entry& e : it->second) {
    if (e.expires > now) out.push_back(std::move(e.cancel));
  }
  pending_.erase(it);
  return out;
}

size_t PendingCancels::size() {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, q] : pending_) n += q.size();
  return n;
}

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary
