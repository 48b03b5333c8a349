#include "controller/store/store_rows.h"

#include <algorithm>

#include "common/status/status_util.h"

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

absl::StatusOr<PruneResult> RunPrune(absl::Time now,
                                     const RetentionOptions& retention,
                                     PruneTransaction transaction) {
  const PruneCutoffs cut = PruneCutoffs::At(now, retention);
  const int64_t limit =
      std::max<int64_t>(1, retention.max_rows_per_transaction);
  PruneResult result;
  const struct {
    PruneStep step;
    int64_t cutoff;
    int64_t* count;
  } steps[] = {
      {PruneStep::kRollUpMinutes, cut.minute, &result.minutes_deleted},
      {PruneStep::kFailures, cut.raw_us, &result.failures_deleted},
      {PruneStep::kVerdicts, cut.raw_us, &result.verdicts_deleted},
      {PruneStep::kPlatformSamples, cut.platform_us,
       &result.platform_samples_deleted},
      {PruneStep::kHours, cut.hour, &result.hours_deleted},
  };
  for (const auto& s : steps) {
    for (;;) {
      int64_t n = 0;
      FC_RETURN_IF_ERROR(transaction(s.step, s.cutoff, limit, &n));
      ++result.transactions;
      *s.count += n;
      if (n < limit) break;
    }
  }
  return result;
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
