// Private to the store: the SQLite implementation of Store (store.h), its
// prepared-statement wrapper and row codec. Its methods are defined by
// concern across sqlite_store*.cc:
//   sqlite_store.cc            schema, migrations, opening, row codec
//   sqlite_store_ingest.cc     Commit (ingest writes)
//   sqlite_store_queries.cc    agents, totals, counters, aggregates, failures,
//                              platform samples
//   sqlite_store_fleet.cc      targets/schedules, verdict history, detector
//                              state
//   sqlite_store_retention.cc  Prune (rollups and deletion)
//   sqlite_store_lease.cc      leader lease and fencing
//
// One connection, serialized by a mutex; WAL journal with synchronous=NORMAL.
// Per-minute, hourly and total stream aggregates store their counters as
// packed little-endian uint64 vectors, added in SQL by the
// application-defined function u64add(old, new) inside an UPSERT, so a
// commit is one statement per touched row whatever the number of outcomes.
//
// Thread-safety: every public method takes mu_; *Locked methods require it.
#ifndef FLEETCANARY_CONTROLLER_STORE_SQLITE_STORE_IMPL_H_
#define FLEETCANARY_CONTROLLER_STORE_SQLITE_STORE_IMPL_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

// `n` values as a packed little-endian uint64 vector (8 bytes each).
std::string PackU64(const uint64_t* v, size_t n);
// The inverse of PackU64 (a trailing partial value is ignored).
std::vector<uint64_t> UnpackU64(const void* data, int bytes);

// UPSERT tail adding a stream row's counters to the existing ones.
inline constexpr char kSqliteAddStats[] =
    " probes = probes + excluded.probes,"
    " counts = u64add(counts, excluded.counts),"
    " ttfb_sum = ttfb_sum + excluded.ttfb_sum,"
    " ttfb_buckets = u64add(ttfb_buckets, excluded.ttfb_buckets),"
    " duration_sum = duration_sum + excluded.duration_sum,"
    " duration_buckets = u64add(duration_buckets,"
    " excluded.duration_buckets),"
    " received_bytes = received_bytes + excluded.received_bytes";

// A prepared statement, reset after each use.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  std::string Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? std::string(static_cast<const char*>(p),
                           sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  std::vector<uint64_t> U64s(int col) {
    return UnpackU64(sqlite3_column_blob(stmt_, col),
                     sqlite3_column_bytes(stmt_, col));
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteStore : public Store {
 public:
  // Takes ownership of `db` (closed on destruction).
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close_v2(db_); }

  // Sets the connection up and migrates the schema to the current version.
  absl::Status Init();

  absl::Status Commit(const WriteBatch& batch, CommitResult* result) override;

  absl::StatusOr<std::vector<AgentRecord>> LoadAgents() override;
  absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() override;
  absl::StatusOr<std::map<std::string, double>> LoadCounters() override;
  absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t from_minute, int64_t to_minute) override;
  absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(
      int64_t from_hour, int64_t to_hour) override;
  absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(absl::Time since,
                                                         size_t limit) override;
  absl::StatusOr<std::vector<v1::PlatformMetricSample>> QueryPlatformSamples(
      absl::Time from, absl::Time to) override;

  absl::StatusOr<v1::FleetConfig> LoadFleet() override;
  absl::Status SaveFleet(const std::vector<v1::Target>& put_targets,
                         const std::vector<v1::Schedule>& put_schedules,
                         const std::vector<std::string>& delete_ids) override;
  absl::Status AppendVerdict(const v1::Verdict& verdict) override;
  absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(absl::Time since,
                                                        size_t limit) override;
  absl::Status SaveDetectorState(const std::string& blob) override;
  absl::StatusOr<std::string> LoadDetectorState() override;

  absl::StatusOr<PruneResult> Prune(absl::Time now,
                                    const RetentionOptions& retention) override;
  absl::Status Ping() override;

  absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                           const std::string& address,
                                           absl::Time now,
                                           absl::Duration ttl) override;
  absl::StatusOr<LeaderLease> ReadLease() override;
  absl::Status ReleaseLease(const std::string& holder) override;
  void SetFencingEpoch(int64_t epoch) override;

 private:
  // Ingest (sqlite_store_ingest.cc), inside Commit's transaction.
  absl::Status CommitLocked(const WriteBatch& batch, CommitResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveAgentsLocked(const std::vector<AgentRecord>& agents)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the batch's minutes to stream_minutes and TotalsToAdd(batch) to
  // stream_totals.
  absl::Status AddStreamRowsLocked(const WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveFailuresLocked(const std::vector<v1::Outcome>& failures)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Upserts the platform samples, growing their named counters (see
  // WriteBatch::platform_counters) and reporting the replaced values.
  absl::Status SavePlatformSamplesLocked(const WriteBatch& batch,
                                         CommitResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AddCountersLocked(const std::map<std::string, double>& deltas)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `stats` to the hourly aggregate of (key, hour).
  absl::Status AddHourLocked(const StreamKey& key, int64_t hour,
                             const StreamStats& stats)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Verdict history (sqlite_store_fleet.cc), inside a transaction.
  absl::Status AppendVerdictLocked(const v1::Verdict& verdict)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Retention (sqlite_store_retention.cc). Inside a transaction: moves at
  // most `limit` per-minute rows below `cutoff` into the hourly aggregates;
  // *n = rows moved.
  absl::Status RollUpMinutesLocked(int64_t cutoff, int64_t limit, int64_t* n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lease (sqlite_store_lease.cc).
  absl::StatusOr<LeaderLease> ReadLeaseLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inside a write transaction: FAILED_PRECONDITION when fenced.
  absl::Status CheckFenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Connection (sqlite_store.cc).
  absl::Status Error(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Row codec (sqlite_store.cc). Columns: region, target, mode, size_bytes,
  // adhoc.
  static void ReadKey(Stmt& q, int col, StreamKey* key);
  // Columns: counts, ttfb_sum, ttfb_buckets, duration_sum, duration_buckets,
  // received_bytes.
  static void ReadStats(Stmt& q, int col, StreamStats* stats);
  // Steps `q` to its end, appending one StreamMinute per row to `out`.
  // Columns: ReadKey's, ReadStats', minute. Error(what) when a step fails.
  absl::Status ReadMinutesLocked(Stmt& q, absl::string_view what,
                                 std::vector<StreamMinute>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Binds probes, counts, ttfb_sum, ttfb_buckets, duration_sum,
  // duration_buckets, received_bytes starting at `i`.
  static void BindStats(Stmt& q, int i, const StreamStats& s);
  static void BindKey(Stmt& q, int i, const StreamKey& k);

  absl::Mutex mu_;
  // State below is protected by mu_.
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  int64_t fence_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_STORE_SQLITE_STORE_IMPL_H_
