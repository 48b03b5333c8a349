// PostgresStore: the schema and its migrations, opening the database, and
// the row codec. The other methods live by concern in postgres_store_*.cc
// (see postgres_store_impl.h).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status/status_util.h"
#include "controller/store/postgres_store_impl.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {
namespace {

// Schema migrations; migration i brings schema_version from i to i+1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE targets(name TEXT PRIMARY KEY, spec BYTEA NOT NULL);
CREATE TABLE schedules(id TEXT PRIMARY KEY, spec BYTEA NOT NULL);
CREATE TABLE agents(
  agent_id TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  applied_sequence BIGINT NOT NULL,
  dropped_total BIGINT NOT NULL,
  last_seen_us BIGINT NOT NULL);
CREATE TABLE stream_minutes(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes BIGINT NOT NULL, adhoc BOOLEAN NOT NULL, minute BIGINT NOT NULL,
  probes BIGINT NOT NULL, counts BIGINT[] NOT NULL,
  ttfb_sum DOUBLE PRECISION NOT NULL, ttfb_buckets BIGINT[] NOT NULL,
  duration_sum DOUBLE PRECISION NOT NULL, duration_buckets BIGINT[] NOT NULL,
  received_bytes BIGINT NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc, minute));
CREATE INDEX stream_minutes_by_minute ON stream_minutes(minute);
CREATE TABLE stream_totals(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes BIGINT NOT NULL, adhoc BOOLEAN NOT NULL,
  probes BIGINT NOT NULL, counts BIGINT[] NOT NULL,
  ttfb_sum DOUBLE PRECISION NOT NULL, ttfb_buckets BIGINT[] NOT NULL,
  duration_sum DOUBLE PRECISION NOT NULL, duration_buckets BIGINT[] NOT NULL,
  received_bytes BIGINT NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc));
CREATE TABLE raw_failures(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agent_id TEXT NOT NULL, sequence BIGINT NOT NULL,
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes BIGINT NOT NULL, start_us BIGINT NOT NULL,
  outcome_class INTEGER NOT NULL, status INTEGER NOT NULL,
  platform_request_id TEXT NOT NULL, probe_id TEXT NOT NULL,
  outcome BYTEA NOT NULL);
CREATE INDEX raw_failures_by_start ON raw_failures(start_us);
CREATE TABLE platform_samples(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  metric TEXT NOT NULL, stat TEXT NOT NULL, period_start_us BIGINT NOT NULL,
  value DOUBLE PRECISION NOT NULL, sample BYTEA NOT NULL,
  PRIMARY KEY(region, target, mode, metric, stat, period_start_us));
CREATE INDEX platform_samples_by_start ON platform_samples(period_start_us);
CREATE TABLE verdicts(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  updated_us BIGINT NOT NULL, kind INTEGER NOT NULL,
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_class TEXT NOT NULL, state INTEGER NOT NULL, verdict BYTEA NOT NULL);
CREATE INDEX verdicts_by_updated ON verdicts(updated_us);
CREATE TABLE counters(name TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL);
CREATE FUNCTION fleetcanary_add_counts(a BIGINT[], b BIGINT[])
  RETURNS BIGINT[] LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i),
                  '{}'::BIGINT[])
  FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) $$;
)sql",
    R"sql(
CREATE TABLE leases(
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, address TEXT NOT NULL,
  epoch BIGINT NOT NULL, expires_us BIGINT NOT NULL);
)sql",
    R"sql(
CREATE TABLE detector_state(
  id INTEGER PRIMARY KEY CHECK (id = 1), state BYTEA NOT NULL);
)sql",
    R"sql(
CREATE TABLE stream_hours(
  region TEXT NOT NULL, target TEXT NOT NULL, mode INTEGER NOT NULL,
  size_bytes BIGINT NOT NULL, adhoc BOOLEAN NOT NULL, hour BIGINT NOT NULL,
  probes BIGINT NOT NULL, counts BIGINT[] NOT NULL,
  ttfb_sum DOUBLE PRECISION NOT NULL, ttfb_buckets BIGINT[] NOT NULL,
  duration_sum DOUBLE PRECISION NOT NULL, duration_buckets BIGINT[] NOT NULL,
  received_bytes BIGINT NOT NULL,
  PRIMARY KEY(region, target, mode, size_bytes, adhoc, hour));
CREATE INDEX stream_hours_by_hour ON stream_hours(hour);
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);
// Key of the advisory lock that serializes schema migrations of replicas.
constexpr int64_t kMigrationLockKey = 0x666c6565746361;  // "fleetca"

}  // namespace

std::string ArrayText(const uint64_t* v, size_t n) {
  std::string out = "{";
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, static_cast<int64_t>(v[i]));
  }
  out += '}';
  return out;
}

std::vector<uint64_t> ParseArray(const char* text) {
  std::vector<uint64_t> out;
  absl::string_view s(text);
  if (absl::ConsumePrefix(&s, "{")) absl::ConsumeSuffix(&s, "}");
  if (s.empty()) return out;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) v = 0;
    out.push_back(static_cast<uint64_t>(v));
  }
  return out;
}

absl::Status PostgresStore::Init() {
  absl::MutexLock lock(&mu_);
  FC_RETURN_IF_ERROR(ConnectLocked());
  FC_RETURN_IF_ERROR(ExecLocked("BEGIN").status());
  absl::Status s = [&]() -> absl::Status {
    FC_RETURN_IF_ERROR(
        ExecLocked("SELECT pg_advisory_xact_lock($1)", {P(kMigrationLockKey)})
            .status());
    FC_RETURN_IF_ERROR(ExecLocked("CREATE TABLE IF NOT EXISTS schema_version("
                                  "version INTEGER NOT NULL)")
                           .status());
    FC_ASSIGN_OR_RETURN(Rows v,
                        ExecLocked("SELECT version FROM schema_version"));
    int version = 0;
    if (v.size() == 0) {
      FC_RETURN_IF_ERROR(
          ExecLocked("INSERT INTO schema_version(version) VALUES(0)").status());
    } else {
      version = static_cast<int>(v.Int(0, 0));
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("store schema version ", version,
                       " is newer than this binary's ", kSchemaVersion));
    }
    for (int i = version; i < kSchemaVersion; ++i) {
      FC_RETURN_IF_ERROR(
          Annotate(ExecScriptLocked(kMigrations[i]),
                   absl::StrCat("migrating store to version ", i + 1)));
    }
    return ExecLocked("UPDATE schema_version SET version = $1",
                      {P(kSchemaVersion)})
        .status();
  }();
  if (!s.ok()) {
    RollbackLocked();
    return s;
  }
  return ExecLocked("COMMIT").status();
}

void PostgresStore::ReadKey(const Rows& q, int row, int col, StreamKey* key) {
  key->region = q.Text(row, col);
  key->target = q.Text(row, col + 1);
  key->mode = static_cast<v1::InvokeMode>(q.Int(row, col + 2));
  key->size_bytes = q.Int(row, col + 3);
  key->adhoc = q.Bool(row, col + 4);
}

void PostgresStore::ReadStats(const Rows& q, int row, int col,
                              StreamStats* stats) {
  std::vector<uint64_t> counts = q.U64s(row, col);
  for (size_t i = 0; i < counts.size() && i < stats->counts.size(); ++i) {
    stats->counts[i] = counts[i];
  }
  stats->ttfb.sum = q.Double(row, col + 1);
  stats->ttfb.buckets = q.U64s(row, col + 2);
  stats->ttfb.buckets.resize(kNumLatencyBuckets);
  stats->duration.sum = q.Double(row, col + 3);
  stats->duration.buckets = q.U64s(row, col + 4);
  stats->duration.buckets.resize(kNumLatencyBuckets);
  stats->received_bytes = q.Int(row, col + 5);
}

void PostgresStore::AddKey(std::vector<Param>* p, const StreamKey& k) {
  p->push_back(P(k.region));
  p->push_back(P(k.target));
  p->push_back(P(static_cast<int>(k.mode)));
  p->push_back(P(k.size_bytes));
  p->push_back(P(k.adhoc));
}

void PostgresStore::AddStats(std::vector<Param>* p, const StreamStats& s) {
  p->push_back(P(s.probes()));
  p->push_back(P(ArrayText(s.counts.data(), s.counts.size())));
  p->push_back(P(s.ttfb.sum));
  p->push_back(P(ArrayText(s.ttfb.buckets.data(), s.ttfb.buckets.size())));
  p->push_back(P(s.duration.sum));
  p->push_back(
      P(ArrayText(s.duration.buckets.data(), s.duration.buckets.size())));
  p->push_back(P(s.received_bytes));
}

}  // namespace store_internal

std::string PostgresSessionOptions(const PostgresStoreOptions& options) {
  auto ms = [](absl::Duration d) {
    return std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
  };
  return absl::StrCat("-c lock_timeout=", ms(options.lock_timeout),
                      " -c idle_in_transaction_session_timeout=",
                      ms(options.idle_in_transaction_timeout));
}

absl::StatusOr<std::unique_ptr<Store>> CreatePostgresStore(
    const PostgresStoreOptions& options) {
  if (!absl::StartsWith(options.url, "postgresql://") &&
      !absl::StartsWith(options.url, "postgres://")) {
    return absl::InvalidArgumentError(
        "store: a PostgreSQL URL starts with postgresql://");
  }
  auto store = std::make_unique<store_internal::PostgresStore>(options);
  FC_RETURN_IF_ERROR(Annotate(store->Init(), "opening PostgreSQL store"));
  return store;
}

}  // namespace controller
}  // namespace fleetcanary
