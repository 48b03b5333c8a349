// PostgresStore: retention (Store::Prune), in bounded transactions.
#include <algorithm>
#include <vector>

#include "controller/store/postgres_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<PruneResult> PostgresStore::Prune(
    absl::Time now, const RetentionOptions& retention) {
  const PruneCutoffs cut = PruneCutoffs::At(now, retention);
  const int64_t limit =
      std::max<int64_t>(1, retention.max_rows_per_transaction);
  PruneResult result;
  // Each step repeats bounded transactions until one touches fewer than
  // `limit` rows; the lock is released between transactions.
  auto repeat = [&](auto step, int64_t* count) -> absl::Status {
    for (;;) {
      int64_t n = 0;
      {
        absl::MutexLock lock(&mu_);
        FC_RETURN_IF_ERROR(InTransactionLocked([&] { return step(&n); }));
      }
      ++result.transactions;
      *count += n;
      if (n < limit) return absl::OkStatus();
    }
  };
  auto del = [&](const char* sql, int64_t cutoff) {
    return [this, sql, cutoff, limit](int64_t* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
               mu_) -> absl::Status {
      FC_ASSIGN_OR_RETURN(Rows r, ExecLocked(sql, {P(cutoff), P(limit)}));
      *n = r.Affected();
      return absl::OkStatus();
    };
  };
  FC_RETURN_IF_ERROR(repeat(
      [&](int64_t* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return RollUpMinutesLocked(cut.minute, limit, n);
      },
      &result.minutes_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM raw_failures WHERE id IN (SELECT id FROM "
                 "raw_failures WHERE start_us < $1 LIMIT $2)",
                 cut.raw_us),
             &result.failures_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM verdicts WHERE id IN (SELECT id FROM verdicts "
                 "WHERE updated_us < $1 LIMIT $2)",
                 cut.raw_us),
             &result.verdicts_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM platform_samples WHERE ctid IN (SELECT ctid FROM "
                 "platform_samples WHERE period_start_us < $1 LIMIT $2)",
                 cut.platform_us),
             &result.platform_samples_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM stream_hours WHERE ctid IN (SELECT ctid FROM "
                 "stream_hours WHERE hour < $1 LIMIT $2)",
                 cut.hour),
             &result.hours_deleted));
  return result;
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
