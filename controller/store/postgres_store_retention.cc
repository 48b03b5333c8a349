// PostgresStore: retention (Store::Prune), in bounded transactions.
#include <vector>

#include "controller/store/postgres_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

namespace {

// The bounded DELETE of each step but kRollUpMinutes (nullptr for that
// one); $1 = cutoff, $2 = limit.
const char* DeleteSql(PruneStep step) {
  switch (step) {
    case PruneStep::kFailures:
      return "DELETE FROM raw_failures WHERE id IN (SELECT id FROM "
             "raw_failures WHERE start_us < $1 LIMIT $2)";
    case PruneStep::kVerdicts:
      return "DELETE FROM verdicts WHERE id IN (SELECT id FROM verdicts "
             "WHERE updated_us < $1 LIMIT $2)";
    case PruneStep::kPlatformSamples:
      return "DELETE FROM platform_samples WHERE ctid IN (SELECT ctid FROM "
             "platform_samples WHERE period_start_us < $1 LIMIT $2)";
    case PruneStep::kHours:
      return "DELETE FROM stream_hours WHERE ctid IN (SELECT ctid FROM "
             "stream_hours WHERE hour < $1 LIMIT $2)";
    case PruneStep::kRollUpMinutes:
      break;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<PruneResult> PostgresStore::Prune(
    absl::Time now, const RetentionOptions& retention) {
  // The lock is released between transactions.
  return RunPrune(
      now, retention,
      [this](PruneStep step, int64_t cutoff, int64_t limit, int64_t* n) {
        absl::MutexLock lock(&mu_);
        return InTransactionLocked(
            [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
              if (step == PruneStep::kRollUpMinutes) {
                return RollUpMinutesLocked(cutoff, limit, n);
              }
              FC_ASSIGN_OR_RETURN(
                  Rows r, ExecLocked(DeleteSql(step), {P(cutoff), P(limit)}));
              *n = r.Affected();
              return absl::OkStatus();
            });
      });
}

absl::Status PostgresStore::RollUpMinutesLocked(int64_t cutoff, int64_t limit,
                                                int64_t* n) {
  FC_ASSIGN_OR_RETURN(
      Rows q,
      ExecLocked("DELETE FROM stream_minutes WHERE ctid IN (SELECT ctid "
                 "FROM stream_minutes WHERE minute < $1 ORDER BY minute "
                 "LIMIT $2 FOR UPDATE) RETURNING region, target, mode, "
                 "size_bytes, adhoc, counts, ttfb_sum, ttfb_buckets, "
                 "duration_sum, duration_buckets, received_bytes, minute",
                 {P(cutoff), P(limit)}));
  std::vector<StreamMinute> rows(q.size());
  for (int i = 0; i < q.size(); ++i) {
    ReadKey(q, i, 0, &rows[i].key);
    ReadStats(q, i, 5, &rows[i].stats);
    rows[i].minute = q.Int(i, 11);
  }
  for (const auto& [k, stats] : MergeByHour(rows)) {
    FC_RETURN_IF_ERROR(AddHourLocked(k.first, k.second, stats));
  }
  *n = q.size();
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
