// Row-level rules the SQL stores (SQLite, PostgreSQL) and the memory store
// share: which totals a batch adds, how minutes roll up into hours, how
// retention proceeds and how the leader lease is taken. Only the rules; each
// store keeps its own SQL.
//
// Thread-safety: pure functions.
#ifndef FLEETCANARY_CONTROLLER_STORE_STORE_ROWS_H_
#define FLEETCANARY_CONTROLLER_STORE_STORE_ROWS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

// What `batch` adds to the all-time stream totals: its minutes (when
// minutes_in_totals) and its total_deltas, merged per stream, in key order.
std::map<StreamKey, StreamStats> TotalsToAdd(const WriteBatch& batch);

// Per-minute rows merged per (stream, hour of the minute), in that order.
std::map<std::pair<StreamKey, int64_t>, StreamStats> MergeByHour(
    const std::vector<StreamMinute>& minutes);

// One step of Store::Prune in the SQL stores.
enum class PruneStep {
  kRollUpMinutes,    // stream_minutes below PruneCutoffs::minute into hours.
  kFailures,         // raw_failures below PruneCutoffs::raw_us.
  kVerdicts,         // verdicts below PruneCutoffs::raw_us.
  kPlatformSamples,  // platform_samples below PruneCutoffs::platform_us.
  kHours,            // stream_hours below PruneCutoffs::hour.
};

// One bounded retention transaction: does `step` for at most `limit` rows
// below `cutoff` in a transaction of its own (taking and releasing the
// store's lock), sets *n to the rows it touched. On error nothing of it is
// applied.
using PruneTransaction = absl::FunctionRef<absl::Status(
    PruneStep step, int64_t cutoff, int64_t limit, int64_t* n)>;

// Store::Prune's plan: the steps above in order, with the cutoffs of
// PruneCutoffs::At(now, retention) and limit = max(1,
// max_rows_per_transaction); each step repeats `transaction` until one
// touches fewer than `limit` rows. Returns the rows per step and the
// transactions run; stops at the first error and returns it.
absl::StatusOr<PruneResult> RunPrune(absl::Time now,
                                     const RetentionOptions& retention,
                                     PruneTransaction transaction);

// agents.last_seen_us of `last_seen`: 0 for InfinitePast (never seen).
int64_t LastSeenMicros(absl::Time last_seen);

// leases.expires_us: INT64_MIN stands for InfinitePast (released or never
// taken).
constexpr int64_t kLeaseNeverExpiresUs = INT64_MIN;
absl::Time LeaseExpiryFromMicros(int64_t expires_us);

// Store::AcquireLease's rule applied to `lease` as read at `now`: renews it
// when `holder` holds it unexpired (same epoch), takes it when it is free or
// expired (epoch + 1); either way it then names `holder` and `address` and
// expires at now + ttl. Returns whether `lease` changed (false: someone else
// holds it, nothing to write).
bool TakeOrRenewLease(LeaderLease* lease, const std::string& holder,
                      const std::string& address, absl::Time now,
                      absl::Duration ttl);

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_STORE_STORE_ROWS_H_
