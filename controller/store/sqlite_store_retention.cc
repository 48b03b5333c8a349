// SqliteStore: retention (Store::Prune), in bounded transactions.
#include <algorithm>
#include <vector>

#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<PruneResult> SqliteStore::Prune(
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
        FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
        absl::Status s = CheckFenceLocked();
        if (s.ok()) s = step(&n);
        if (s.ok()) s = Exec("COMMIT");
        if (!s.ok()) {
          Exec("ROLLBACK").IgnoreError();
          return s;
        }
      }
      ++result.transactions;
      *count += n;
      if (n < limit) return absl::OkStatus();
    }
  };
  auto del = [&](const char* sql, int64_t cutoff) {
    return [this, sql, cutoff, limit](int64_t* n) -> absl::Status {
      Stmt d(db_, sql);
      d.Bind(1, cutoff).Bind(2, limit);
      if (d.Step() != SQLITE_DONE) return Error("pruning");
      *n = sqlite3_changes(db_);
      return absl::OkStatus();
    };
  };
  FC_RETURN_IF_ERROR(repeat(
      [&](int64_t* n) { return RollUpMinutesLocked(cut.minute, limit, n); },
      &result.minutes_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM raw_failures WHERE id IN (SELECT id FROM "
                 "raw_failures WHERE start_us < ? LIMIT ?)",
                 cut.raw_us),
             &result.failures_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM verdicts WHERE id IN (SELECT id FROM verdicts "
                 "WHERE updated_us < ? LIMIT ?)",
                 cut.raw_us),
             &result.verdicts_deleted));
  FC_RETURN_IF_ERROR(repeat(
      del("DELETE FROM platform_samples WHERE rowid IN (SELECT rowid FROM "
          "platform_samples WHERE period_start_us < ? LIMIT ?)",
          cut.platform_us),
      &result.platform_samples_deleted));
  FC_RETURN_IF_ERROR(
      repeat(del("DELETE FROM stream_hours WHERE rowid IN (SELECT rowid FROM "
                 "stream_hours WHERE hour < ? LIMIT ?)",
                 cut.hour),
             &result.hours_deleted));
  return result;
}

absl::Status SqliteStore::RollUpMinutesLocked(int64_t cutoff, int64_t limit,
                                              int64_t* n) {
  std::vector<StreamMinute> rows;
  {
    Stmt q(db_,
           "SELECT region, target, mode, size_bytes, adhoc, counts, "
           "ttfb_sum, ttfb_buckets, duration_sum, duration_buckets, "
           "received_bytes, minute FROM stream_minutes WHERE minute < ? "
           "ORDER BY minute LIMIT ?");
    q.Bind(1, cutoff).Bind(2, limit);
    FC_RETURN_IF_ERROR(
        ReadMinutesLocked(q, "reading minutes to roll up", &rows));
  }
  for (const auto& [k, stats] : MergeByHour(rows)) {
    FC_RETURN_IF_ERROR(AddHourLocked(k.first, k.second, stats));
  }
  Stmt d(db_,
         "DELETE FROM stream_minutes WHERE region = ? AND target = ? AND "
         "mode = ? AND size_bytes = ? AND adhoc = ? AND minute = ?");
  for (const StreamMinute& m : rows) {
    BindKey(d, 1, m.key);
    d.Bind(6, m.minute);
    if (d.Step() != SQLITE_DONE) return Error("deleting rolled-up minute");
    d.Reset();
  }
  *n = static_cast<int64_t>(rows.size());
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
