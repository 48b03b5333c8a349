// SqliteStore: the schema and its migrations, opening the file, the
// connection helpers and the row codec. The other methods live by concern in
// sqlite_store_*.cc (see sqlite_store_impl.h).
#include <sqlite3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sqlite/sqlite_util.h"
#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {
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

}  // namespace

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

absl::Status SqliteStore::Init() {
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

absl::Status SqliteStore::Ping() {
  absl::MutexLock lock(&mu_);
  Stmt q(db_, "SELECT 1");
  if (q.Step() != SQLITE_ROW) return Error("ping");
  return absl::OkStatus();
}

absl::Status SqliteStore::Error(absl::string_view what) {
  return SqliteError(db_, "sqlite store", what);
}

absl::Status SqliteStore::Exec(const std::string& sql) {
  return SqliteExec(db_, sql, "sqlite store");
}

void SqliteStore::ReadKey(Stmt& q, int col, StreamKey* key) {
  key->region = q.Text(col);
  key->target = q.Text(col + 1);
  key->mode = static_cast<v1::InvokeMode>(q.Int(col + 2));
  key->size_bytes = q.Int(col + 3);
  key->adhoc = q.Int(col + 4) != 0;
}

void SqliteStore::ReadStats(Stmt& q, int col, StreamStats* stats) {
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

absl::Status SqliteStore::ReadMinutesLocked(Stmt& q, absl::string_view what,
                                            std::vector<StreamMinute>* out) {
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    StreamMinute m;
    ReadKey(q, 0, &m.key);
    ReadStats(q, 5, &m.stats);
    m.minute = q.Int(11);
    out->push_back(std::move(m));
  }
  if (rc != SQLITE_DONE) return Error(what);
  return absl::OkStatus();
}

void SqliteStore::BindStats(Stmt& q, int i, const StreamStats& s) {
  q.Bind(i, static_cast<int64_t>(s.probes()))
      .BindBlob(i + 1, PackU64(s.counts.data(), s.counts.size()))
      .Bind(i + 2, s.ttfb.sum)
      .BindBlob(i + 3, PackU64(s.ttfb.buckets.data(), s.ttfb.buckets.size()))
      .Bind(i + 4, s.duration.sum)
      .BindBlob(i + 5,
                PackU64(s.duration.buckets.data(), s.duration.buckets.size()))
      .Bind(i + 6, static_cast<int64_t>(s.received_bytes));
}

void SqliteStore::BindKey(Stmt& q, int i, const StreamKey& k) {
  q.Bind(i, k.region)
      .Bind(i + 1, k.target)
      .Bind(i + 2, static_cast<int64_t>(k.mode))
      .Bind(i + 3, static_cast<int64_t>(k.size_bytes))
      .Bind(i + 4, static_cast<int64_t>(k.adhoc ? 1 : 0));
}

}  // namespace store_internal

absl::StatusOr<std::unique_ptr<Store>> CreateSqliteStore(
    const SqliteStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("store path: required");
  }
  FC_ASSIGN_OR_RETURN(sqlite3 * db, OpenSqlite(options.path, "store"));
  auto store = std::make_unique<store_internal::SqliteStore>(db);
  FC_RETURN_IF_ERROR(
      Annotate(store->Init(), absl::StrCat("opening store ", options.path)));
  return store;
}

}  // namespace controller
}  // namespace fleetcanary
