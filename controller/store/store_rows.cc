#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

std::map<StreamKey, StreamStats> TotalsToAdd(const WriteBatch& batch) {
  std::map<StreamKey, StreamStats> totals;
  if (batch.minutes_in_totals) {
    for (const StreamMinute& m : batch.minutes) totals[m.key].Merge(m.stats);
  }
  for (const StreamTotal& t : batch.total_deltas) totals[t.key].Merge(t.stats);
  return totals;
}

std::map<std::pair<StreamKey, int64_t>, StreamStats> MergeByHour(
    const std::vector<StreamMinute>& minutes) {
  std::map<std::pair<StreamKey, int64_t>, StreamStats> hours;
  for (const StreamMinute& m : minutes) {
    hours[{m.key, HourOfMinute(m.minute)}].Merge(m.stats);
  }
  return hours;
}

int64_t LastSeenMicros(absl::Time last_seen) {
  return last_seen == absl::InfinitePast() ? int64_t{0}
                                           : absl::ToUnixMicros(last_seen);
}

absl::Time LeaseExpiryFromMicros(int64_t expires_us) {
  return expires_us == kLeaseNeverExpiresUs ? absl::InfinitePast()
                                            : absl::FromUnixMicros(expires_us);
}

bool TakeOrRenewLease(LeaderLease* lease, const std::string& holder,
                      const std::string& address, absl::Time now,
                      absl::Duration ttl) {
  const bool renew = lease->holder == holder && lease->expires > now;
  const bool take = !renew && lease->expires <= now;
  if (!renew && !take) return false;
  if (take) ++lease->epoch;
  lease->holder = holder;
  lease->address = address;
  lease->expires = now + ttl;
  return true;
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
