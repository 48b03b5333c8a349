// SQLite implementation of Store. One connection, serialized by a mutex; WAL
// journal with synchronous=NORMAL. Per-minute and total stream aggregates
// store their counters as packed little-endian uint64 vectors, added in SQL by
// the application-defined function u64add(old, new) inside an UPSERT, so a
// commit is one statement per touched row whatever the number of outcomes.
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto/time_convert.h"
#include "common/sqlite/sqlite_util.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace {

// Schema migrations; migration i brings user_version from i to i+1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE targets(name TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE schedules(id TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE agents(
  agent_id TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  applied_sequence INTEGER NOT NULL,
  dropped_total INTEGER NOT NULL,
  last_seen_us INTEGER NOT NULL);
CREATE TABLE stream_minutes(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, adhoc INTEGER NOT NULL, minute INTEGER NOT NULL,
  probes INTEGER NOT NULL, counts BLOB NOT NULL,
  ttfb_sum REAL NOT NULL, ttfb_buckets BLOB NOT NULL,
  duration_sum REAL NOT NULL, duration_buckets BLOB NOT NULL,
  received_bytes INTEGER NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc, minute)) WITHOUT ROWID;
CREATE INDEX stream_minutes_by_minute ON stream_minutes(minute);
CREATE TABLE stream_totals(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, adhoc INTEGER NOT NULL,
  probes INTEGER NOT NULL, counts BLOB NOT NULL,
  ttfb_sum REAL NOT NULL, ttfb_buckets BLOB NOT NULL,
  duration_sum REAL NOT NULL, duration_buckets BLOB NOT NULL,
  received_bytes INTEGER NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc)) WITHOUT ROWID;
CREATE TABLE raw_failures(
  id INTEGER PRIMARY KEY,
  agent_id TEXT NOT NULL, sequence INTEGER NOT NULL,
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, start_us INTEGER NOT NULL,
  outcome_class INTEGER NOT NULL, status INTEGER NOT NULL,
  platform_request_id TEXT NOT NULL, probe_id TEXT NOT NULL,
  outcome BLOB NOT NULL);
CREATE INDEX raw_failures_by_start ON raw_failures(start_us);
CREATE TABLE platform_samples(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  metric TEXT NOT NULL, stat TEXT NOT NULL, period_start_us INTEGER NOT NULL,
  value REAL NOT NULL, sample BLOB NOT NULL,
  PRIMARY KEY(region, target, mode, metric, stat, period_start_us));
CREATE INDEX platform_samples_by_start ON platform_samples(period_start_us);
CREATE TABLE verdicts(
  id INTEGER PRIMARY KEY, updated_us INTEGER NOT NULL, kind INTEGER NOT NULL,
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_class TEXT NOT NULL, state INTEGER NOT NULL, verdict BLOB NOT NULL);
CREATE INDEX verdicts_by_updated ON verdicts(updated_us);
CREATE TABLE counters(name TEXT PRIMARY KEY, value REAL NOT NULL);
)sql",
    R"sql(
CREATE TABLE leases(
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, address TEXT NOT NULL,
  epoch INTEGER NOT NULL, expires_us INTEGER NOT NULL);
)sql",
    R"sql(
CREATE TABLE detector_state(
  id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL);
)sql",
    R"sql(
CREATE TABLE stream_hours(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, adhoc INTEGER NOT NULL, hour INTEGER NOT NULL,
  probes INTEGER NOT NULL, counts BLOB NOT NULL,
  ttfb_sum REAL NOT NULL, ttfb_buckets BLOB NOT NULL,
  duration_sum REAL NOT NULL, duration_buckets BLOB NOT NULL,
  received_bytes INTEGER NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc, hour));
CREATE INDEX stream_hours_by_hour ON stream_hours(hour);
)sql",
};

std::string PackU64(const uint64_t* v, size_t n) {
  std::string out(n * 8, '\0');
  for (size_t i = 0; i < n; ++i) {
    for (int b = 0; b < 8; ++b)
      out[i * 8 + b] = static_cast<char>(v[i] >> (8 * b));
  }
  return out;
}

std::vector<uint64_t> UnpackU64(const void* data, int bytes) {
  std::vector<uint64_t> out(bytes / 8);
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | p[i * 8 + b];
    out[i] = v;
  }
  return out;
}

// u64add(a, b): element-wise sum of two packed vectors (length = longer one).
void U64AddFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  std::vector<uint64_t> a =
      UnpackU64(sqlite3_value_blob(argv[0]), sqlite3_value_bytes(argv[0]));
  std::vector<uint64_t> b =
      UnpackU64(sqlite3_value_blob(argv[1]), sqlite3_value_bytes(argv[1]));
  if (a.size() < b.size()) a.resize(b.size());
  for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
  std::string packed = PackU64(a.data(), a.size());
  sqlite3_result_blob(ctx, packed.data(), packed.size(), SQLITE_TRANSIENT);
}

// UPSERT tail adding a stream row's counters to the existing ones.
constexpr char kAddStats[] =
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
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close_v2(db_); }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    FC_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
    FC_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
    sqlite3_busy_timeout(db_, 5000);
    if (sqlite3_create_function(db_, "u64add", 2,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                &U64AddFn, nullptr, nullptr) != SQLITE_OK) {
      return Error("registering u64add");
    }
    return MigrateSqlite(db_, kMigrations, "store", "sqlite store");
  }

  absl::Status Commit(const WriteBatch& batch, CommitResult* result) override {
    absl::MutexLock lock(&mu_);
    if (result) result->platform_previous.clear();
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = CheckFenceLocked();
    if (s.ok()) s = CommitLocked(batch, result);
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    s = Exec("COMMIT");
    if (!s.ok()) Exec("ROLLBACK").IgnoreError();
    return s;
  }

  absl::StatusOr<std::vector<AgentRecord>> LoadAgents() override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT agent_id, region, applied_sequence, dropped_total, "
           "last_seen_us FROM agents ORDER BY agent_id");
    std::vector<AgentRecord> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      AgentRecord r;
      r.agent_id = q.Text(0);
      r.region = q.Text(1);
      r.applied_sequence = q.Int(2);
      r.dropped_total = q.Int(3);
      r.last_seen = absl::FromUnixMicros(q.Int(4));
      out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return Error("loading agents");
    return out;
  }

  absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT region, target, mode, size_bytes, adhoc, counts, ttfb_sum, "
           "ttfb_buckets, duration_sum, duration_buckets, received_bytes "
           "FROM stream_totals ORDER BY region, target, mode, size_bytes, "
           "adhoc");
    std::vector<StreamTotal> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      StreamTotal t;
      ReadKey(q, 0, &t.key);
      ReadStats(q, 5, &t.stats);
      out.push_back(std::move(t));
    }
    if (rc != SQLITE_DONE) return Error("loading stream totals");
    return out;
  }

  absl::StatusOr<std::map<std::string, double>> LoadCounters() override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_, "SELECT name, value FROM counters");
    std::map<std::string, double> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) out[q.Text(0)] = q.Double(1);
    if (rc != SQLITE_DONE) return Error("loading counters");
    return out;
  }

  absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t from_minute, int64_t to_minute) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT region, target, mode, size_bytes, adhoc, counts, ttfb_sum, "
           "ttfb_buckets, duration_sum, duration_buckets, received_bytes, "
           "minute FROM stream_minutes WHERE minute >= ? AND minute < ? "
           "ORDER BY region, target, mode, size_bytes, adhoc, minute");
    q.Bind(1, from_minute).Bind(2, to_minute);
    std::vector<StreamMinute> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      StreamMinute m;
      ReadKey(q, 0, &m.key);
      ReadStats(q, 5, &m.stats);
      m.minute = q.Int(11);
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return Error("querying stream minutes");
    return out;
  }

  absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(
      int64_t from_hour, int64_t to_hour) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT region, target, mode, size_bytes, adhoc, counts, ttfb_sum, "
           "ttfb_buckets, duration_sum, duration_buckets, received_bytes, "
           "hour FROM stream_hours WHERE hour >= ? AND hour < ? "
           "ORDER BY region, target, mode, size_bytes, adhoc, hour");
    q.Bind(1, from_hour).Bind(2, to_hour);
    std::vector<StreamHour> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      StreamHour h;
      ReadKey(q, 0, &h.key);
      ReadStats(q, 5, &h.stats);
      h.hour = q.Int(11);
      out.push_back(std::move(h));
    }
    if (rc != SQLITE_DONE) return Error("querying stream hours");
    return out;
  }

  absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(
      absl::Time since, size_t limit) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT outcome FROM raw_failures WHERE start_us >= ? "
           "ORDER BY start_us, id LIMIT ?");
    q.Bind(1, absl::ToUnixMicros(since)).Bind(2, static_cast<int64_t>(limit));
    std::vector<v1::Outcome> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      v1::Outcome o;
      if (!o.ParseFromString(q.Blob(0))) {
        return absl::DataLossError("unparseable raw failure in store");
      }
      out.push_back(std::move(o));
    }
    if (rc != SQLITE_DONE) return Error("querying failures");
    return out;
  }

  absl::StatusOr<std::vector<v1::PlatformMetricSample>> QueryPlatformSamples(
      absl::Time from, absl::Time to) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT sample FROM platform_samples WHERE period_start_us >= ? "
           "AND period_start_us < ? ORDER BY period_start_us, region, target, "
           "mode, metric, stat");
    q.Bind(1, absl::ToUnixMicros(from)).Bind(2, absl::ToUnixMicros(to));
    std::vector<v1::PlatformMetricSample> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      v1::PlatformMetricSample s;
      if (!s.ParseFromString(q.Blob(0))) {
        return absl::DataLossError("unparseable platform sample in store");
      }
      out.push_back(std::move(s));
    }
    if (rc != SQLITE_DONE) return Error("querying platform samples");
    return out;
  }

  absl::StatusOr<v1::FleetConfig> LoadFleet() override {
    absl::MutexLock lock(&mu_);
    v1::FleetConfig fleet;
    {
      Stmt q(db_, "SELECT spec FROM targets ORDER BY name");
      int rc;
      while ((rc = q.Step()) == SQLITE_ROW) {
        if (!fleet.add_targets()->ParseFromString(q.Blob(0))) {
          return absl::DataLossError("unparseable target in store");
        }
      }
      if (rc != SQLITE_DONE) return Error("loading targets");
    }
    Stmt q(db_, "SELECT spec FROM schedules ORDER BY id");
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      if (!fleet.add_schedules()->ParseFromString(q.Blob(0))) {
        return absl::DataLossError("unparseable schedule in store");
      }
    }
    if (rc != SQLITE_DONE) return Error("loading schedules");
    return fleet;
  }

  absl::Status SaveFleet(const std::vector<v1::Target>& put_targets,
                         const std::vector<v1::Schedule>& put_schedules,
                         const std::vector<std::string>& delete_ids) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      FC_RETURN_IF_ERROR(CheckFenceLocked());
      Stmt t(db_, "INSERT OR REPLACE INTO targets(name, spec) VALUES(?, ?)");
      for (const v1::Target& target : put_targets) {
        t.Bind(1, target.name()).BindBlob(2, target.SerializeAsString());
        if (t.Step() != SQLITE_DONE) return Error("saving target");
        t.Reset();
      }
      Stmt p(db_, "INSERT OR REPLACE INTO schedules(id, spec) VALUES(?, ?)");
      for (const v1::Schedule& schedule : put_schedules) {
        p.Bind(1, schedule.id()).BindBlob(2, schedule.SerializeAsString());
        if (p.Step() != SQLITE_DONE) return Error("saving schedule");
        p.Reset();
      }
      Stmt d(db_, "DELETE FROM schedules WHERE id = ?");
      for (const std::string& id : delete_ids) {
        d.Bind(1, id);
        if (d.Step() != SQLITE_DONE) return Error("deleting schedule");
        d.Reset();
      }
      return absl::OkStatus();
    }();
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    return Exec("COMMIT");
  }

  absl::Status AppendVerdict(const v1::Verdict& verdict) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = AppendVerdictLocked(verdict);
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) Exec("ROLLBACK").IgnoreError();
    return s;
  }

  absl::Status AppendVerdictLocked(const v1::Verdict& verdict)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    Stmt q(db_,
           "INSERT INTO verdicts(updated_us, kind, region, target, mode, "
           "size_class, state, verdict) VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
    q.Bind(1, TimestampToUnixMicros(verdict.updated()))
        .Bind(2, static_cast<int64_t>(verdict.kind()))
        .Bind(3, verdict.key().region())
        .Bind(4, verdict.key().target())
        .Bind(5, static_cast<int64_t>(verdict.key().mode()))
        .Bind(6, verdict.key().size_class())
        .Bind(7, static_cast<int64_t>(verdict.state()))
        .BindBlob(8, verdict.SerializeAsString());
    if (q.Step() != SQLITE_DONE) return Error("appending verdict");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(absl::Time since,
                                                        size_t limit) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "SELECT verdict FROM verdicts WHERE updated_us >= ? "
           "ORDER BY updated_us, id LIMIT ?");
    q.Bind(1, absl::ToUnixMicros(since)).Bind(2, static_cast<int64_t>(limit));
    std::vector<v1::Verdict> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      v1::Verdict v;
      if (!v.ParseFromString(q.Blob(0))) {
        return absl::DataLossError("unparseable verdict in store");
      }
      out.push_back(std::move(v));
    }
    if (rc != SQLITE_DONE) return Error("listing verdicts");
    return out;
  }

  absl::Status SaveDetectorState(const std::string& blob) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      FC_RETURN_IF_ERROR(CheckFenceLocked());
      Stmt q(db_,
             "INSERT OR REPLACE INTO detector_state(id, state) VALUES(1, ?)");
      q.BindBlob(1, blob);
      if (q.Step() != SQLITE_DONE) return Error("saving detector state");
      return absl::OkStatus();
    }();
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) Exec("ROLLBACK").IgnoreError();
    return s;
  }

  absl::StatusOr<std::string> LoadDetectorState() override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_, "SELECT state FROM detector_state WHERE id = 1");
    const int rc = q.Step();
    if (rc == SQLITE_DONE) {
      return absl::NotFoundError("store: no detector state saved");
    }
    if (rc != SQLITE_ROW) return Error("loading detector state");
    return q.Blob(0);
  }

  absl::StatusOr<PruneResult> Prune(
      absl::Time now, const RetentionOptions& retention) override {
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

  absl::Status Ping() override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_, "SELECT 1");
    if (q.Step() != SQLITE_ROW) return Error("ping");
    return absl::OkStatus();
  }

  absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                           const std::string& address,
                                           absl::Time now,
                                           absl::Duration ttl) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::StatusOr<LeaderLease> lease = ReadLeaseLocked();
    absl::Status s = lease.status();
    if (s.ok()) {
      const bool renew = lease->holder == holder && lease->expires > now;
      if (renew || lease->expires <= now) {
        if (!renew) ++lease->epoch;
        lease->holder = holder;
        lease->address = address;
        lease->expires = now + ttl;
        Stmt q(db_,
               "INSERT OR REPLACE INTO leases(name, holder, address, epoch, "
               "expires_us) VALUES('leader', ?, ?, ?, ?)");
        q.Bind(1, holder).Bind(2, address).Bind(3, lease->epoch);
        q.Bind(4, absl::ToUnixMicros(lease->expires));
        if (q.Step() != SQLITE_DONE) s = Error("taking the lease");
      }
    }
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    return lease;
  }

  absl::StatusOr<LeaderLease> ReadLease() override {
    absl::MutexLock lock(&mu_);
    return ReadLeaseLocked();
  }

  absl::Status ReleaseLease(const std::string& holder) override {
    absl::MutexLock lock(&mu_);
    Stmt q(db_,
           "UPDATE leases SET expires_us = ? WHERE name = 'leader' AND "
           "holder = ?");
    q.Bind(1, std::numeric_limits<int64_t>::min()).Bind(2, holder);
    if (q.Step() != SQLITE_DONE) return Error("releasing the lease");
    return absl::OkStatus();
  }

  void SetFencingEpoch(int64_t epoch) override {
    absl::MutexLock lock(&mu_);
    fence_epoch_ = epoch;
  }

 private:
  absl::StatusOr<LeaderLease> ReadLeaseLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt q(db_,
           "SELECT holder, address, epoch, expires_us FROM leases "
           "WHERE name = 'leader'");
    LeaderLease lease;
    const int rc = q.Step();
    if (rc == SQLITE_ROW) {
      lease.holder = q.Text(0);
      lease.address = q.Text(1);
      lease.epoch = q.Int(2);
      lease.expires = q.Int(3) == std::numeric_limits<int64_t>::min()
                          ? absl::InfinitePast()
                          : absl::FromUnixMicros(q.Int(3));
    } else if (rc != SQLITE_DONE) {
      return Error("reading the lease");
    }
    return lease;
  }

  // Inside a write transaction: FAILED_PRECONDITION when fenced.
  absl::Status CheckFenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fence_epoch_ == 0) return absl::OkStatus();
    FC_ASSIGN_OR_RETURN(LeaderLease lease, ReadLeaseLocked());
    if (lease.epoch != fence_epoch_) {
      return absl::FailedPreconditionError(
          absl::StrCat("sqlite store: fenced: leader epoch ", fence_epoch_,
                       " superseded by ", lease.epoch));
    }
    return absl::OkStatus();
  }

  // Adds `stats` to the hourly aggregate of (key, hour).
  absl::Status AddHourLocked(const StreamKey& key, int64_t hour,
                             const StreamStats& stats)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static const std::string kSql = absl::StrCat(
        "INSERT INTO stream_hours(region, target, mode, size_bytes, adhoc, "
        "hour, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
        "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?) ON CONFLICT DO UPDATE SET",
        kAddStats);
    Stmt q(db_, kSql.c_str());
    BindKey(q, 1, key);
    q.Bind(6, hour);
    BindStats(q, 7, stats);
    if (q.Step() != SQLITE_DONE) return Error("adding stream hour");
    return absl::OkStatus();
  }

  // Inside a transaction: moves at most `limit` per-minute rows below
  // `cutoff` into the hourly aggregates; *n = rows moved.
  absl::Status RollUpMinutesLocked(int64_t cutoff, int64_t limit, int64_t* n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<StreamMinute> rows;
    {
      Stmt q(db_,
             "SELECT region, target, mode, size_bytes, adhoc, counts, "
             "ttfb_sum, ttfb_buckets, duration_sum, duration_buckets, "
             "received_bytes, minute FROM stream_minutes WHERE minute < ? "
             "ORDER BY minute LIMIT ?");
      q.Bind(1, cutoff).Bind(2, limit);
      int rc;
      while ((rc = q.Step()) == SQLITE_ROW) {
        StreamMinute m;
        ReadKey(q, 0, &m.key);
        ReadStats(q, 5, &m.stats);
        m.minute = q.Int(11);
        rows.push_back(std::move(m));
      }
      if (rc != SQLITE_DONE) return Error("reading minutes to roll up");
    }
    std::map<std::pair<StreamKey, int64_t>, StreamStats> hours;
    for (const StreamMinute& m : rows) {
      hours[{m.key, HourOfMinute(m.minute)}].Merge(m.stats);
    }
    for (const auto& [k, stats] : hours) {
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

  absl::Status Error(absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return SqliteError(db_, "sqlite store", what);
  }

  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return SqliteExec(db_, sql, "sqlite store");
  }

  static void ReadKey(Stmt& q, int col, StreamKey* key) {
    key->region = q.Text(col);
    key->target = q.Text(col + 1);
    key->mode = static_cast<v1::InvokeMode>(q.Int(col + 2));
    key->size_bytes = q.Int(col + 3);
    key->adhoc = q.Int(col + 4) != 0;
  }

  // Columns: counts, ttfb_sum, ttfb_buckets, duration_sum, duration_buckets,
  // received_bytes.
  static void ReadStats(Stmt& q, int col, StreamStats* stats) {
    std::vector<uint64_t> counts = q.U64s(col);
    for (size_t i = 0; i < counts.size() && i < stats->counts.size(); ++i) {
      stats->counts[i] = counts[i];
    }
    stats->ttfb.sum = q.Double(col + 1);
    stats->ttfb.buckets = q.U64s(col + 2);
    stats->ttfb.buckets.resize(kNumLatencyBuckets);
    stats->duration.sum = q.Double(col + 3);
    stats->duration.buckets = q.U64s(col + 4);
    stats->duration.buckets.resize(kNumLatencyBuckets);
    stats->received_bytes = q.Int(col + 5);
  }

  // Binds probes, counts, ttfb_sum, ttfb_buckets, duration_sum,
  // duration_buckets, received_bytes starting at `i`.
  static void BindStats(Stmt& q, int i, const StreamStats& s) {
    q.Bind(i, static_cast<int64_t>(s.probes()))
        .BindBlob(i + 1, PackU64(s.counts.data(), s.counts.size()))
        .Bind(i + 2, s.ttfb.sum)
        .BindBlob(i + 3, PackU64(s.ttfb.buckets.data(), s.ttfb.buckets.size()))
        .Bind(i + 4, s.duration.sum)
        .BindBlob(i + 5,
                  PackU64(s.duration.buckets.data(), s.duration.buckets.size()))
        .Bind(i + 6, static_cast<int64_t>(s.received_bytes));
  }

  static void BindKey(Stmt& q, int i, const StreamKey& k) {
    q.Bind(i, k.region)
        .Bind(i + 1, k.target)
        .Bind(i + 2, static_cast<int64_t>(k.mode))
        .Bind(i + 3, static_cast<int64_t>(k.size_bytes))
        .Bind(i + 4, static_cast<int64_t>(k.adhoc ? 1 : 0));
  }

  absl::Status CommitLocked(const WriteBatch& batch, CommitResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static constexpr char kAddCounter[] =
        "INSERT INTO counters(name, value) VALUES(?, ?) "
        "ON CONFLICT DO UPDATE SET value = value + excluded.value";
    if (!batch.agents.empty()) {
      Stmt q(db_,
             "INSERT OR REPLACE INTO agents(agent_id, region, "
             "applied_sequence, dropped_total, last_seen_us) "
             "VALUES(?, ?, ?, ?, ?)");
      for (const AgentRecord& a : batch.agents) {
        q.Bind(1, a.agent_id)
            .Bind(2, a.region)
            .Bind(3, static_cast<int64_t>(a.applied_sequence))
            .Bind(4, static_cast<int64_t>(a.dropped_total))
            .Bind(5, a.last_seen == absl::InfinitePast()
                         ? int64_t{0}
                         : absl::ToUnixMicros(a.last_seen));
        if (q.Step() != SQLITE_DONE) return Error("saving agent watermark");
        q.Reset();
      }
    }
    if (!batch.minutes.empty() || !batch.total_deltas.empty()) {
      const std::string minute_sql = absl::StrCat(
          "INSERT INTO stream_minutes(region, target, mode, size_bytes, adhoc, "
          "minute, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
          "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
          "?, ?, ?, ?) ON CONFLICT DO UPDATE SET",
          kAddStats);
      const std::string total_sql = absl::StrCat(
          "INSERT INTO stream_totals(region, target, mode, size_bytes, adhoc, "
          "probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
          "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
          "?, ?, ?) ON CONFLICT DO UPDATE SET",
          kAddStats);
      Stmt m(db_, minute_sql.c_str());
      Stmt t(db_, total_sql.c_str());
      if (!m.ok() || !t.ok()) return Error("preparing aggregate upsert");
      std::map<StreamKey, StreamStats> totals;
      for (const StreamMinute& sm : batch.minutes) {
        BindKey(m, 1, sm.key);
        m.Bind(6, sm.minute);
        BindStats(m, 7, sm.stats);
        if (m.Step() != SQLITE_DONE) return Error("adding stream minute");
        m.Reset();
        if (batch.minutes_in_totals) totals[sm.key].Merge(sm.stats);
      }
      for (const StreamTotal& st : batch.total_deltas) {
        totals[st.key].Merge(st.stats);
      }
      for (const auto& [key, stats] : totals) {
        BindKey(t, 1, key);
        BindStats(t, 6, stats);
        if (t.Step() != SQLITE_DONE) return Error("adding stream total");
        t.Reset();
      }
    }
    for (const StreamHour& h : batch.hours) {
      FC_RETURN_IF_ERROR(AddHourLocked(h.key, h.hour, h.stats));
    }
    if (!batch.failures.empty()) {
      Stmt q(db_,
             "INSERT INTO raw_failures(agent_id, sequence, region, target, "
             "mode, size_bytes, start_us, outcome_class, status, "
             "platform_request_id, probe_id, outcome) "
             "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      for (const v1::Outcome& o : batch.failures) {
        q.Bind(1, o.agent_id())
            .Bind(2, static_cast<int64_t>(o.sequence()))
            .Bind(3, o.region())
            .Bind(4, o.target())
            .Bind(5, static_cast<int64_t>(o.mode()))
            .Bind(6, static_cast<int64_t>(o.requested_bytes()))
            .Bind(7, TimestampToUnixMicros(o.start_time()))
            .Bind(8, static_cast<int64_t>(o.outcome_class()))
            .Bind(9, static_cast<int64_t>(o.status()))
            .Bind(10, o.platform_request_id())
            .Bind(11, o.probe_id())
            .BindBlob(12, o.SerializeAsString());
        if (q.Step() != SQLITE_DONE) return Error("saving raw failure");
        q.Reset();
      }
    }
    if (!batch.platform_samples.empty()) {
      Stmt get(db_,
               "SELECT value FROM platform_samples WHERE region = ? AND "
               "target = ? AND mode = ? AND metric = ? AND stat = ? AND "
               "period_start_us = ?");
      Stmt put(db_,
               "INSERT OR REPLACE INTO platform_samples(region, target, mode, "
               "metric, stat, period_start_us, value, sample) "
               "VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
      Stmt counter(db_, kAddCounter);
      for (const v1::PlatformMetricSample& s : batch.platform_samples) {
        get.Bind(1, s.region())
            .Bind(2, s.target())
            .Bind(3, static_cast<int64_t>(s.mode()))
            .Bind(4, s.metric())
            .Bind(5, s.stat())
            .Bind(6, TimestampToUnixMicros(s.period_start()));
        const int rc = get.Step();
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
          return Error("reading platform sample");
        }
        const double previous = rc == SQLITE_ROW ? get.Double(0) : 0.0;
        if (result) result->platform_previous.push_back(previous);
        get.Reset();
        const size_t i = &s - batch.platform_samples.data();
        if (i < batch.platform_counters.size() &&
            !batch.platform_counters[i].empty() && s.value() > previous) {
          counter.Bind(1, batch.platform_counters[i])
              .Bind(2, s.value() - previous);
          if (counter.Step() != SQLITE_DONE) return Error("adding counter");
          counter.Reset();
        }
        put.Bind(1, s.region())
            .Bind(2, s.target())
            .Bind(3, static_cast<int64_t>(s.mode()))
            .Bind(4, s.metric())
            .Bind(5, s.stat())
            .Bind(6, TimestampToUnixMicros(s.period_start()))
            .Bind(7, s.value())
            .BindBlob(8, s.SerializeAsString());
        if (put.Step() != SQLITE_DONE) return Error("saving platform sample");
        put.Reset();
      }
    }
    if (!batch.counter_deltas.empty()) {
      Stmt q(db_, kAddCounter);
      for (const auto& [name, delta] : batch.counter_deltas) {
        q.Bind(1, name).Bind(2, delta);
        if (q.Step() != SQLITE_DONE) return Error("adding counter");
        q.Reset();
      }
    }
    return absl::OkStatus();
  }

  absl::Mutex mu_;
  // State below is protected by mu_.
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  int64_t fence_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> CreateSqliteStore(
    const SqliteStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("store path: required");
  }
  FC_ASSIGN_OR_RETURN(sqlite3 * db, OpenSqlite(options.path, "store"));
  auto store = std::make_unique<SqliteStore>(db);
  FC_RETURN_IF_ERROR(
      Annotate(store->Init(), absl::StrCat("opening store ", options.path)));
  return store;
}

}  // namespace controller
}  // namespace fleetcanary
