// Private to the store: the PostgreSQL implementation of Store (store.h)
// over libpq, its query parameters and result accessors. Its methods are
// defined by concern across postgres_store*.cc:
//   postgres_store.cc             schema, migrations, opening, row codec
//   postgres_store_connection.cc  connecting, statements, errors, Ping
//   postgres_store_ingest.cc      Commit (ingest writes)
//   postgres_store_queries.cc     agents, totals, counters, aggregates,
//                                 failures, platform samples
//   postgres_store_fleet.cc       targets/schedules, verdict history,
//                                 detector state
//   postgres_store_retention.cc   Prune (rollups and deletion)
//   postgres_store_lease.cc       leader lease and fencing
//
// One connection, serialized by a mutex; every write is one transaction. The
// tables have the SQLite store's names and meaning; counters and histogram
// buckets are BIGINT[] (element-wise added in SQL by fleetcanary_add_counts
// inside an UPSERT), so operators can read them with plain SQL.
//
// A lost connection is reopened on the next call; a call that fails because
// the server is unreachable, shutting down, read-only or failing over returns
// UNAVAILABLE. A COMMIT whose answer was lost may have committed: callers
// that keep derived state (ingest's watermarks) re-read it after any error.
//
// Thread-safety: every public method takes mu_; *Locked methods require it.
#ifndef FLEETCANARY_CONTROLLER_STORE_POSTGRES_STORE_IMPL_H_
#define FLEETCANARY_CONTROLLER_STORE_POSTGRES_STORE_IMPL_H_

#include <libpq-fe.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

// `n` values as a BIGINT[] literal ("{1,2,3}").
std::string ArrayText(const uint64_t* v, size_t n);
// The inverse of ArrayText (unparseable elements read as 0).
std::vector<uint64_t> ParseArray(const char* text);

// UPSERT tail adding a stream row's counters to the existing ones (t).
inline constexpr char kPostgresAddStats[] =
    " probes = t.probes + excluded.probes,"
    " counts = fleetcanary_add_counts(t.counts, excluded.counts),"
    " ttfb_sum = t.ttfb_sum + excluded.ttfb_sum,"
    " ttfb_buckets = fleetcanary_add_counts(t.ttfb_buckets,"
    " excluded.ttfb_buckets),"
    " duration_sum = t.duration_sum + excluded.duration_sum,"
    " duration_buckets = fleetcanary_add_counts(t.duration_buckets,"
    " excluded.duration_buckets),"
    " received_bytes = t.received_bytes + excluded.received_bytes";

// One query parameter: text, or binary (BYTEA).
struct Param {
  std::string value;
  bool binary = false;
};
inline Param P(const std::string& s) { return {s, false}; }
inline Param P(int64_t v) { return {absl::StrCat(v), false}; }
inline Param P(uint64_t v) {
  return {absl::StrCat(static_cast<int64_t>(v)), false};
}
inline Param P(int v) { return {absl::StrCat(v), false}; }
inline Param P(bool v) { return {v ? "true" : "false", false}; }
inline Param P(double v) { return {absl::StrFormat("%.17g", v), false}; }
inline Param Blob(const std::string& s) { return {s, true}; }

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// Accessors of one result.
class Rows {
 public:
  explicit Rows(Result r) : r_(std::move(r)) {}
  int size() const { return PQntuples(r_.get()); }
  bool Null(int row, int col) const {
    return PQgetisnull(r_.get(), row, col) != 0;
  }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       PQgetlength(r_.get(), row, col));
  }
  int64_t Int(int row, int col) const {
    int64_t v = 0;
    if (!absl::SimpleAtoi(PQgetvalue(r_.get(), row, col), &v)) v = 0;
    return v;
  }
  bool Bool(int row, int col) const {
    return PQgetvalue(r_.get(), row, col)[0] == 't';
  }
  double Double(int row, int col) const {
    return std::strtod(PQgetvalue(r_.get(), row, col), nullptr);
  }
  std::string Bytes(int row, int col) const {
    size_t n = 0;
    unsigned char* p = PQunescapeBytea(
        reinterpret_cast<const unsigned char*>(PQgetvalue(r_.get(), row, col)),
        &n);
    if (p == nullptr) return std::string();
    std::string out(reinterpret_cast<const char*>(p), n);
    PQfreemem(p);
    return out;
  }
  std::vector<uint64_t> U64s(int row, int col) const {
    return ParseArray(PQgetvalue(r_.get(), row, col));
  }
  int64_t Affected() const {
    int64_t n = 0;
    if (!absl::SimpleAtoi(PQcmdTuples(r_.get()), &n)) n = 0;
    return n;
  }

 private:
  Result r_;
};

class PostgresStore : public Store {
 public:
  explicit PostgresStore(const PostgresStoreOptions& options)
      : options_(options) {}
  ~PostgresStore() override {
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr) PQfinish(conn_);
  }

  // Connects and creates/migrates the schema (under an advisory lock, so
  // replicas starting together migrate once).
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
  // Answers, and takes writes: a server in recovery (a standby) or a
  // read-only session is as unavailable for the controller as a dead one.
  absl::Status Ping() override;

  absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                           const std::string& address,
                                           absl::Time now,
                                           absl::Duration ttl) override;
  absl::StatusOr<LeaderLease> ReadLease() override;
  absl::Status ReleaseLease(const std::string& holder) override;
  void SetFencingEpoch(int64_t epoch) override;

 private:
  // Connection (postgres_store_connection.cc).
  // Opens the connection (or reopens a broken one).
  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs one statement (prepared once per connection). Rows on success.
  absl::StatusOr<Rows> ExecLocked(const std::string& sql,
                                  const std::vector<Param>& params = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs several statements without parameters (migrations).
  absl::Status ExecScriptLocked(const char* sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK for a successful result; else UNAVAILABLE (connection lost or a
  // transient SQLSTATE), FAILED_PRECONDITION (fenced) or INTERNAL.
  absl::Status Check(PGresult* r, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RollbackLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // BEGIN; fencing check (unless `fenced` is false); body; COMMIT. On any
  // error the transaction is rolled back.
  template <typename Body>
  absl::Status InTransactionLocked(Body body, bool fenced = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_RETURN_IF_ERROR(ExecLocked("BEGIN").status());
    in_transaction_ = true;
    absl::Status s = fenced ? CheckFenceLocked() : absl::OkStatus();
    if (s.ok()) s = body();
    if (s.ok()) s = ExecLocked("COMMIT").status();
    if (!s.ok()) {
      RollbackLocked();
      return s;
    }
    in_transaction_ = false;
    return absl::OkStatus();
  }

  // Ingest (postgres_store_ingest.cc), inside Commit's transaction.
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

  // Retention (postgres_store_retention.cc). Inside a transaction: moves at
  // most `limit` per-minute rows below `cutoff` into the hourly aggregates
  // (rows locked, so concurrent ingest into them waits); *n = rows moved.
  absl::Status RollUpMinutesLocked(int64_t cutoff, int64_t limit, int64_t* n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lease (postgres_store_lease.cc).
  absl::StatusOr<LeaderLease> ReadLeaseLocked(bool for_update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inside a write transaction: the lease row is share-locked until the
  // commit, so a successor's take (FOR UPDATE) waits for this transaction,
  // and a transaction that starts after the take sees the new epoch.
  absl::Status CheckFenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Row codec (postgres_store.cc). Columns: region, target, mode,
  // size_bytes, adhoc.
  static void ReadKey(const Rows& q, int row, int col, StreamKey* key);
  // Columns: counts, ttfb_sum, ttfb_buckets, duration_sum, duration_buckets,
  // received_bytes.
  static void ReadStats(const Rows& q, int row, int col, StreamStats* stats);
  static void AddKey(std::vector<Param>* p, const StreamKey& k);
  static void AddStats(std::vector<Param>* p, const StreamStats& s);
  // A LIMIT parameter: `limit` capped at INT64_MAX.
  static int64_t ClampLimit(size_t limit) {
    return limit > static_cast<size_t>(INT64_MAX) ? INT64_MAX
                                                  : static_cast<int64_t>(limit);
  }

  const PostgresStoreOptions options_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  PGconn* conn_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool connected_once_ ABSL_GUARDED_BY(mu_) = false;
  bool in_transaction_ ABSL_GUARDED_BY(mu_) = false;
  int64_t fence_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // SQL text -> prepared statement name, for the current connection.
  std::map<std::string, std::string> prepared_ ABSL_GUARDED_BY(mu_);
};

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_STORE_POSTGRES_STORE_IMPL_H_
