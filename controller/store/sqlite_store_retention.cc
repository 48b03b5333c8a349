// SqliteStore: retention (Store::Prune), in bounded transactions.
#include <vector>

#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

namespace {

// The bounded DELETE of each step but kRollUpMinutes (nullptr for that
// one); parameters: cutoff, limit.
const char* DeleteSql(PruneStep step) {
  switch (step) {
    case PruneStep::kFailures:
      return "DELETE FROM raw_failures WHERE id IN (SELECT id FROM "
             "raw_failures WHERE start_us < ? LIMIT ?)";
    case PruneStep::kVerdicts:
      return "DELETE FROM verdicts WHERE id IN (SELECT id FROM verdicts "
             "WHERE updated_us < ? LIMIT ?)";
    case PruneStep::kPlatformSamples:
      return "DELETE FROM platform_samples WHERE rowid IN (SELECT rowid FROM "
             "platform_samples WHERE period_start_us < ? LIMIT ?)";
    case PruneStep::kHours:
      return "DELETE FROM stream_hours WHERE rowid IN (SELECT rowid FROM "
             "stream_hours WHERE hour < ? LIMIT ?)";
    case PruneStep::kRollUpMinutes:
      break;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<PruneResult> SqliteStore::Prune(
    absl::Time now, const RetentionOptions& retention) {
  // The lock is released between transactions.
  return RunPrune(
      now, retention,
      [this](PruneStep step, int64_t cutoff, int64_t limit, int64_t* n) {
        absl::MutexLock lock(&mu_);
        auto body = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          if (step == PruneStep::kRollUpMinutes) {
            return RollUpMinutesLocked(cutoff, limit, n);
          }
          Stmt d(db_, DeleteSql(step));
          d.Bind(1, cutoff).Bind(2, limit);
          if (d.Step() != SQLITE_DONE) return Error("pruning");
          *n = sqlite3_changes(db_);
          return absl::OkStatus();
        };
        FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
        absl::Status s = CheckFenceLocked();
        if (s.ok()) s = body();
        if (s.ok()) s = Exec("COMMIT");
        if (!s.ok()) Exec("ROLLBACK").IgnoreError();
        return s;
      });
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
