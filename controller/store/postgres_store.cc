// PostgreSQL implementation of Store, over libpq. One connection, serialized
// by a mutex; every write is one transaction. The tables have the SQLite
// store's names and meaning; counters and histogram buckets are BIGINT[]
// (element-wise added in SQL by fleetcanary_add_counts inside an UPSERT), so
// operators can read them with plain SQL.
//
// A lost connection is reopened on the next call; a call that fails because
// the server is unreachable, shutting down, read-only or failing over returns
// UNAVAILABLE. A COMMIT whose answer was lost may have committed: callers
// that keep derived state (ingest's watermarks) re-read it after any error.
#include <libpq-fe.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
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

// UPSERT tail adding a stream row's counters to the existing ones (t).
constexpr char kAddStats[] =
    " probes = t.probes + excluded.probes,"
    " counts = fleetcanary_add_counts(t.counts, excluded.counts),"
    " ttfb_sum = t.ttfb_sum + excluded.ttfb_sum,"
    " ttfb_buckets = fleetcanary_add_counts(t.ttfb_buckets,"
    " excluded.ttfb_buckets),"
    " duration_sum = t.duration_sum + excluded.duration_sum,"
    " duration_buckets = fleetcanary_add_counts(t.duration_buckets,"
    " excluded.duration_buckets),"
    " received_bytes = t.received_bytes + excluded.received_bytes";

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

// One query parameter: text, or binary (BYTEA).
struct Param {
  std::string value;
  bool binary = false;
};
Param P(const std::string& s) { return {s, false}; }
Param P(int64_t v) { return {absl::StrCat(v), false}; }
Param P(uint64_t v) { return {absl::StrCat(static_cast<int64_t>(v)), false}; }
Param P(int v) { return {absl::StrCat(v), false}; }
Param P(bool v) { return {v ? "true" : "false", false}; }
Param P(double v) { return {absl::StrFormat("%.17g", v), false}; }
Param Blob(const std::string& s) { return {s, true}; }

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

// SQLSTATEs after which a retry later may succeed (connection, shutdown,
// read-only, recovery, serialization).
bool Transient(const std::string& sqlstate) {
  return absl::StartsWith(sqlstate, "08") ||  // Connection exception.
         absl::StartsWith(sqlstate, "57") ||  // Operator intervention.
         absl::StartsWith(sqlstate, "53") ||  // Insufficient resources.
         sqlstate == "25006" ||               // Read-only transaction.
         sqlstate == "40001" || sqlstate == "40P01";
}

class PostgresStore : public Store {
 public:
  explicit PostgresStore(const PostgresStoreOptions& options)
      : options_(options) {}
  ~PostgresStore() override {
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr) PQfinish(conn_);
  }

  absl::Status Init() {
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
            ExecLocked("INSERT INTO schema_version(version) VALUES(0)")
                .status());
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

  absl::Status Commit(const WriteBatch& batch, CommitResult* result) override {
    absl::MutexLock lock(&mu_);
    if (result) result->platform_previous.clear();
    return InTransactionLocked([&] { return CommitLocked(batch, result); });
  }

  absl::StatusOr<std::vector<AgentRecord>> LoadAgents() override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(Rows q,
                        ExecLocked("SELECT agent_id, region, applied_sequence, "
                                   "dropped_total, last_seen_us FROM agents "
                                   "ORDER BY agent_id"));
    std::vector<AgentRecord> out;
    for (int i = 0; i < q.size(); ++i) {
      AgentRecord r;
      r.agent_id = q.Text(i, 0);
      r.region = q.Text(i, 1);
      r.applied_sequence = q.Int(i, 2);
      r.dropped_total = q.Int(i, 3);
      r.last_seen = absl::FromUnixMicros(q.Int(i, 4));
      out.push_back(std::move(r));
    }
    return out;
  }

  absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT region, target, mode, size_bytes, adhoc, counts, "
                   "ttfb_sum, ttfb_buckets, duration_sum, duration_buckets, "
                   "received_bytes FROM stream_totals ORDER BY region, "
                   "target, mode, size_bytes, adhoc"));
    std::vector<StreamTotal> out;
    for (int i = 0; i < q.size(); ++i) {
      StreamTotal t;
      ReadKey(q, i, 0, &t.key);
      ReadStats(q, i, 5, &t.stats);
      out.push_back(std::move(t));
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, double>> LoadCounters() override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(Rows q, ExecLocked("SELECT name, value FROM counters"));
    std::map<std::string, double> out;
    for (int i = 0; i < q.size(); ++i) out[q.Text(i, 0)] = q.Double(i, 1);
    return out;
  }

  absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t from_minute, int64_t to_minute) override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT region, target, mode, size_bytes, adhoc, counts, "
                   "ttfb_sum, ttfb_buckets, duration_sum, duration_buckets, "
                   "received_bytes, minute FROM stream_minutes "
                   "WHERE minute >= $1 AND minute < $2 ORDER BY region, "
                   "target, mode, size_bytes, adhoc, minute",
                   {P(from_minute), P(to_minute)}));
    std::vector<StreamMinute> out;
    for (int i = 0; i < q.size(); ++i) {
      StreamMinute m;
      ReadKey(q, i, 0, &m.key);
      ReadStats(q, i, 5, &m.stats);
      m.minute = q.Int(i, 11);
      out.push_back(std::move(m));
    }
    return out;
  }

  absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(
      int64_t from_hour, int64_t to_hour) override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT region, target, mode, size_bytes, adhoc, counts, "
                   "ttfb_sum, ttfb_buckets, duration_sum, duration_buckets, "
                   "received_bytes, hour FROM stream_hours "
                   "WHERE hour >= $1 AND hour < $2 ORDER BY region, "
                   "target, mode, size_bytes, adhoc, hour",
                   {P(from_hour), P(to_hour)}));
    std::vector<StreamHour> out;
    for (int i = 0; i < q.size(); ++i) {
      StreamHour h;
      ReadKey(q, i, 0, &h.key);
      ReadStats(q, i, 5, &h.stats);
      h.hour = q.Int(i, 11);
      out.push_back(std::move(h));
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(
      absl::Time since, size_t limit) override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT outcome FROM raw_failures WHERE "
                   "start_us >= $1 ORDER BY start_us, id LIMIT $2",
                   {P(absl::ToUnixMicros(since)), P(ClampLimit(limit))}));
    std::vector<v1::Outcome> out;
    for (int i = 0; i < q.size(); ++i) {
      v1::Outcome o;
      if (!o.ParseFromString(q.Bytes(i, 0))) {
        return absl::DataLossError("unparseable raw failure in store");
      }
      out.push_back(std::move(o));
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::PlatformMetricSample>> QueryPlatformSamples(
      absl::Time from, absl::Time to) override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT sample FROM platform_samples WHERE "
                   "period_start_us >= $1 AND period_start_us < $2 "
                   "ORDER BY period_start_us, region, target, mode, "
                   "metric, stat",
                   {P(absl::ToUnixMicros(from)), P(absl::ToUnixMicros(to))}));
    std::vector<v1::PlatformMetricSample> out;
    for (int i = 0; i < q.size(); ++i) {
      v1::PlatformMetricSample s;
      if (!s.ParseFromString(q.Bytes(i, 0))) {
        return absl::DataLossError("unparseable platform sample in store");
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  absl::StatusOr<v1::FleetConfig> LoadFleet() override {
    absl::MutexLock lock(&mu_);
    v1::FleetConfig fleet;
    FC_ASSIGN_OR_RETURN(Rows t,
                        ExecLocked("SELECT spec FROM targets ORDER BY name"));
    for (int i = 0; i < t.size(); ++i) {
      if (!fleet.add_targets()->ParseFromString(t.Bytes(i, 0))) {
        return absl::DataLossError("unparseable target in store");
      }
    }
    FC_ASSIGN_OR_RETURN(Rows s,
                        ExecLocked("SELECT spec FROM schedules ORDER BY id"));
    for (int i = 0; i < s.size(); ++i) {
      if (!fleet.add_schedules()->ParseFromString(s.Bytes(i, 0))) {
        return absl::DataLossError("unparseable schedule in store");
      }
    }
    return fleet;
  }

  absl::Status SaveFleet(const std::vector<v1::Target>& put_targets,
                         const std::vector<v1::Schedule>& put_schedules,
                         const std::vector<std::string>& delete_ids) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() -> absl::Status {
      for (const v1::Target& target : put_targets) {
        FC_RETURN_IF_ERROR(
            ExecLocked("INSERT INTO targets(name, spec) VALUES($1, $2) "
                       "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                       {P(target.name()), Blob(target.SerializeAsString())})
                .status());
      }
      for (const v1::Schedule& schedule : put_schedules) {
        FC_RETURN_IF_ERROR(
            ExecLocked("INSERT INTO schedules(id, spec) VALUES($1, $2) "
                       "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
                       {P(schedule.id()), Blob(schedule.SerializeAsString())})
                .status());
      }
      for (const std::string& id : delete_ids) {
        FC_RETURN_IF_ERROR(
            ExecLocked("DELETE FROM schedules WHERE id = $1", {P(id)})
                .status());
      }
      return absl::OkStatus();
    });
  }

  absl::Status AppendVerdict(const v1::Verdict& verdict) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() -> absl::Status {
      return ExecLocked(
                 "INSERT INTO verdicts(updated_us, kind, region, target, mode, "
                 "size_class, state, verdict) "
                 "VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
                 {P(TimestampToUnixMicros(verdict.updated())),
                  P(static_cast<int>(verdict.kind())),
                  P(verdict.key().region()), P(verdict.key().target()),
                  P(static_cast<int>(verdict.key().mode())),
                  P(verdict.key().size_class()),
                  P(static_cast<int>(verdict.state())),
                  Blob(verdict.SerializeAsString())})
          .status();
    });
  }

  absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(absl::Time since,
                                                        size_t limit) override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("SELECT verdict FROM verdicts WHERE updated_us >= "
                   "$1 ORDER BY updated_us, id LIMIT $2",
                   {P(absl::ToUnixMicros(since)), P(ClampLimit(limit))}));
    std::vector<v1::Verdict> out;
    for (int i = 0; i < q.size(); ++i) {
      v1::Verdict v;
      if (!v.ParseFromString(q.Bytes(i, 0))) {
        return absl::DataLossError("unparseable verdict in store");
      }
      out.push_back(std::move(v));
    }
    return out;
  }

  absl::Status SaveDetectorState(const std::string& blob) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() -> absl::Status {
      return ExecLocked(
                 "INSERT INTO detector_state(id, state) VALUES(1, $1) "
                 "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                 {Blob(blob)})
          .status();
    });
  }

  absl::StatusOr<std::string> LoadDetectorState() override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q, ExecLocked("SELECT state FROM detector_state WHERE id = 1"));
    if (q.size() == 0) {
      return absl::NotFoundError("store: no detector state saved");
    }
    return q.Bytes(0, 0);
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
          FC_RETURN_IF_ERROR(InTransactionLocked([&] { return step(&n); }));
        }
        ++result.transactions;
        *count += n;
        if (n < limit) return absl::OkStatus();
      }
    };
    auto del = [&](const char* sql, int64_t cutoff) {
      return
          [this, sql, cutoff, limit](int64_t* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
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
    FC_RETURN_IF_ERROR(repeat(
        del("DELETE FROM platform_samples WHERE ctid IN (SELECT ctid FROM "
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

  // Answers, and takes writes: a server in recovery (a standby) or a
  // read-only session is as unavailable for the controller as a dead one.
  absl::Status Ping() override {
    absl::MutexLock lock(&mu_);
    FC_ASSIGN_OR_RETURN(
        Rows q, ExecLocked("SELECT pg_is_in_recovery() OR "
                           "current_setting('transaction_read_only') = 'on'"));
    if (q.size() > 0 && q.Bool(0, 0)) {
      return absl::UnavailableError(
          "postgres store: the database is read-only (in recovery or "
          "default_transaction_read_only)");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                           const std::string& address,
                                           absl::Time now,
                                           absl::Duration ttl) override {
    absl::MutexLock lock(&mu_);
    LeaderLease lease;
    FC_RETURN_IF_ERROR(InTransactionLocked(
        [&]() -> absl::Status {
          FC_RETURN_IF_ERROR(
              ExecLocked("INSERT INTO leases(name, holder, address, epoch, "
                         "expires_us) VALUES('leader', '', '', 0, $1) "
                         "ON CONFLICT (name) DO NOTHING",
                         {P(std::numeric_limits<int64_t>::min())})
                  .status());
          FC_ASSIGN_OR_RETURN(lease, ReadLeaseLocked(/*for_update=*/true));
          const bool renew = lease.holder == holder && lease.expires > now;
          if (!renew && lease.expires > now) return absl::OkStatus();
          if (!renew) ++lease.epoch;
          lease.holder = holder;
          lease.address = address;
          lease.expires = now + ttl;
          return ExecLocked(
                     "UPDATE leases SET holder = $1, address = $2, epoch = $3, "
                     "expires_us = $4 WHERE name = 'leader'",
                     {P(holder), P(address), P(lease.epoch),
                      P(absl::ToUnixMicros(lease.expires))})
              .status();
        },
        /*fenced=*/false));
    return lease;
  }

  absl::StatusOr<LeaderLease> ReadLease() override {
    absl::MutexLock lock(&mu_);
    return ReadLeaseLocked(/*for_update=*/false);
  }

  absl::Status ReleaseLease(const std::string& holder) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked(
               "UPDATE leases SET expires_us = $1 WHERE name = 'leader' AND "
               "holder = $2",
               {P(std::numeric_limits<int64_t>::min()), P(holder)})
        .status();
  }

  void SetFencingEpoch(int64_t epoch) override {
    absl::MutexLock lock(&mu_);
    fence_epoch_ = epoch;
  }

 private:
  static int64_t ClampLimit(size_t limit) {
    return limit > static_cast<size_t>(INT64_MAX) ? INT64_MAX
                                                  : static_cast<int64_t>(limit);
  }

  // Opens the connection (or reopens a broken one).
  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) {
      return absl::OkStatus();
    }
    if (conn_ != nullptr) {
      PQfinish(conn_);
      conn_ = nullptr;
      prepared_.clear();
    }
    // Defaults first: settings in the URL override them (expand_dbname).
    const std::string connect_timeout = absl::StrCat(
        std::max<int64_t>(2, absl::ToInt64Seconds(options_.connect_timeout)));
    const char* keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "application_name",
                          "dbname",
                          nullptr};
    const char* values[] = {connect_timeout.c_str(),
                            "10",
                            "5",
                            "3",
                            "30000",
                            "fleetcanary-controller",
                            options_.url.c_str(),
                            nullptr};
    conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (conn_ == nullptr) {
      return absl::ResourceExhaustedError("postgres store: out of memory");
    }
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn_);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
        msg.pop_back();
      }
      PQfinish(conn_);
      conn_ = nullptr;
      if (connected_once_) {
        LogWarning("postgres_store_unreachable", {{"error", msg}});
      }
      return absl::UnavailableError(
          absl::StrCat("postgres store: connecting: ", msg));
    }
    // Server notices ("relation already exists, skipping") are not errors.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    if (connected_once_) LogInfo("postgres_store_reconnected");
    connected_once_ = true;
    return absl::OkStatus();
  }

  // Runs one statement (prepared once per connection). Rows on success.
  absl::StatusOr<Rows> ExecLocked(const std::string& sql,
                                  const std::vector<Param>& params = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!in_transaction_) FC_RETURN_IF_ERROR(ConnectLocked());
    if (conn_ == nullptr) {
      return absl::UnavailableError("postgres store: connection lost");
    }
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      const std::string name = absl::StrCat("s", prepared_.size());
      Result r(PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr));
      FC_RETURN_IF_ERROR(Check(r.get(), sql));
      it = prepared_.emplace(sql, name).first;
    }
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size());
    std::vector<int> formats(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      values[i] = params[i].value.data();
      lengths[i] = static_cast<int>(params[i].value.size());
      formats[i] = params[i].binary ? 1 : 0;
    }
    Result r(PQexecPrepared(conn_, it->second.c_str(),
                            static_cast<int>(params.size()), values.data(),
                            lengths.data(), formats.data(), 0));
    FC_RETURN_IF_ERROR(Check(r.get(), sql));
    return Rows(std::move(r));
  }

  // Runs several statements without parameters (migrations).
  absl::Status ExecScriptLocked(const char* sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Result r(PQexec(conn_, sql));
    return Check(r.get(), "migration");
  }

  absl::Status Check(PGresult* r, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const ExecStatusType st =
        r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      return absl::OkStatus();
    }
    const char* state =
        r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const std::string sqlstate = state ? state : "";
    std::string msg = r != nullptr ? PQresultErrorMessage(r) : "";
    if (msg.empty()) msg = PQerrorMessage(conn_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    const std::string text =
        absl::StrCat("postgres store: ", what.substr(0, 60), ": ", msg,
                     sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
    if (PQstatus(conn_) != CONNECTION_OK || Transient(sqlstate)) {
      return absl::UnavailableError(text);
    }
    if (sqlstate == "P0001" && absl::StrContains(msg, "fenced")) {
      return absl::FailedPreconditionError(text);
    }
    return absl::InternalError(text);
  }

  void RollbackLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    in_transaction_ = false;
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) return;
    Result r(PQexec(conn_, "ROLLBACK"));
  }

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

  // Inside a write transaction: the lease row is share-locked until the
  // commit, so a successor's take (FOR UPDATE) waits for this transaction,
  // and a transaction that starts after the take sees the new epoch.
  absl::Status CheckFenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fence_epoch_ == 0) return absl::OkStatus();
    FC_ASSIGN_OR_RETURN(
        Rows q, ExecLocked("SELECT epoch FROM leases WHERE name = 'leader' "
                           "FOR SHARE"));
    const int64_t epoch = q.size() > 0 ? q.Int(0, 0) : 0;
    if (epoch != fence_epoch_) {
      return absl::FailedPreconditionError(
          absl::StrCat("postgres store: fenced: leader epoch ", fence_epoch_,
                       " superseded by ", epoch));
    }
    return absl::OkStatus();
  }

  // Adds `stats` to the hourly aggregate of (key, hour).
  absl::Status AddHourLocked(const StreamKey& key, int64_t hour,
                             const StreamStats& stats)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static const std::string kSql = absl::StrCat(
        "INSERT INTO stream_hours AS t(region, target, mode, size_bytes, "
        "adhoc, hour, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
        "duration_buckets, received_bytes) VALUES($1, $2, $3, $4, $5, $6, $7, "
        "$8, $9, $10, $11, $12, $13) ON CONFLICT (region, target, mode, "
        "size_bytes, adhoc, hour) DO UPDATE SET",
        kAddStats);
    std::vector<Param> p;
    AddKey(&p, key);
    p.push_back(P(hour));
    AddStats(&p, stats);
    return ExecLocked(kSql, p).status();
  }

  // Inside a transaction: moves at most `limit` per-minute rows below
  // `cutoff` into the hourly aggregates (rows locked, so concurrent ingest
  // into them waits); *n = rows moved.
  absl::Status RollUpMinutesLocked(int64_t cutoff, int64_t limit, int64_t* n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked("DELETE FROM stream_minutes WHERE ctid IN (SELECT ctid "
                   "FROM stream_minutes WHERE minute < $1 ORDER BY minute "
                   "LIMIT $2 FOR UPDATE) RETURNING region, target, mode, "
                   "size_bytes, adhoc, counts, ttfb_sum, ttfb_buckets, "
                   "duration_sum, duration_buckets, received_bytes, minute",
                   {P(cutoff), P(limit)}));
    std::map<std::pair<StreamKey, int64_t>, StreamStats> hours;
    for (int i = 0; i < q.size(); ++i) {
      StreamKey key;
      StreamStats stats;
      ReadKey(q, i, 0, &key);
      ReadStats(q, i, 5, &stats);
      hours[{key, HourOfMinute(q.Int(i, 11))}].Merge(stats);
    }
    for (const auto& [k, stats] : hours) {
      FC_RETURN_IF_ERROR(AddHourLocked(k.first, k.second, stats));
    }
    *n = q.size();
    return absl::OkStatus();
  }

  absl::StatusOr<LeaderLease> ReadLeaseLocked(bool for_update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_ASSIGN_OR_RETURN(
        Rows q,
        ExecLocked(for_update ? "SELECT holder, address, epoch, expires_us "
                                "FROM leases WHERE name = 'leader' FOR UPDATE"
                              : "SELECT holder, address, epoch, expires_us "
                                "FROM leases WHERE name = 'leader'"));
    LeaderLease lease;
    if (q.size() > 0) {
      lease.holder = q.Text(0, 0);
      lease.address = q.Text(0, 1);
      lease.epoch = q.Int(0, 2);
      lease.expires = q.Int(0, 3) == std::numeric_limits<int64_t>::min()
                          ? absl::InfinitePast()
                          : absl::FromUnixMicros(q.Int(0, 3));
    }
    return lease;
  }

  static void ReadKey(const Rows& q, int row, int col, StreamKey* key) {
    key->region = q.Text(row, col);
    key->target = q.Text(row, col + 1);
    key->mode = static_cast<v1::InvokeMode>(q.Int(row, col + 2));
    key->size_bytes = q.Int(row, col + 3);
    key->adhoc = q.Bool(row, col + 4);
  }

  // Columns: counts, ttfb_sum, ttfb_buckets, duration_sum, duration_buckets,
  // received_bytes.
  static void ReadStats(const Rows& q, int row, int col, StreamStats* stats) {
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

  static void AddKey(std::vector<Param>* p, const StreamKey& k) {
    p->push_back(P(k.region));
    p->push_back(P(k.target));
    p->push_back(P(static_cast<int>(k.mode)));
    p->push_back(P(k.size_bytes));
    p->push_back(P(k.adhoc));
  }

  static void AddStats(std::vector<Param>* p, const StreamStats& s) {
    p->push_back(P(s.probes()));
    p->push_back(P(ArrayText(s.counts.data(), s.counts.size())));
    p->push_back(P(s.ttfb.sum));
    p->push_back(P(ArrayText(s.ttfb.buckets.data(), s.ttfb.buckets.size())));
    p->push_back(P(s.duration.sum));
    p->push_back(
        P(ArrayText(s.duration.buckets.data(), s.duration.buckets.size())));
    p->push_back(P(s.received_bytes));
  }

  absl::Status CommitLocked(const WriteBatch& batch, CommitResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static constexpr char kAddCounter[] =
        "INSERT INTO counters AS t(name, value) VALUES($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET value = t.value + excluded.value";
    for (const AgentRecord& a : batch.agents) {
      FC_RETURN_IF_ERROR(
          ExecLocked(
              "INSERT INTO agents(agent_id, region, applied_sequence, "
              "dropped_total, last_seen_us) VALUES($1, $2, $3, $4, $5) "
              "ON CONFLICT (agent_id) DO UPDATE SET region = excluded.region, "
              "applied_sequence = excluded.applied_sequence, "
              "dropped_total = excluded.dropped_total, "
              "last_seen_us = excluded.last_seen_us",
              {P(a.agent_id), P(a.region), P(a.applied_sequence),
               P(a.dropped_total),
               P(a.last_seen == absl::InfinitePast()
                     ? int64_t{0}
                     : absl::ToUnixMicros(a.last_seen))})
              .status());
    }
    if (!batch.minutes.empty() || !batch.total_deltas.empty()) {
      static const std::string kMinuteSql = absl::StrCat(
          "INSERT INTO stream_minutes AS t(region, target, mode, size_bytes, "
          "adhoc, minute, probes, counts, ttfb_sum, ttfb_buckets, "
          "duration_sum, duration_buckets, received_bytes) VALUES($1, $2, $3, "
          "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (region, "
          "target, mode, size_bytes, adhoc, minute) DO UPDATE SET",
          kAddStats);
      static const std::string kTotalSql = absl::StrCat(
          "INSERT INTO stream_totals AS t(region, target, mode, size_bytes, "
          "adhoc, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
          "duration_buckets, received_bytes) VALUES($1, $2, $3, $4, $5, $6, "
          "$7, $8, $9, $10, $11, $12) ON CONFLICT (region, target, mode, "
          "size_bytes, adhoc) DO UPDATE SET",
          kAddStats);
      std::map<StreamKey, StreamStats> totals;
      for (const StreamMinute& sm : batch.minutes) {
        std::vector<Param> p;
        AddKey(&p, sm.key);
        p.push_back(P(sm.minute));
        AddStats(&p, sm.stats);
        FC_RETURN_IF_ERROR(ExecLocked(kMinuteSql, p).status());
        if (batch.minutes_in_totals) totals[sm.key].Merge(sm.stats);
      }
      for (const StreamTotal& st : batch.total_deltas) {
        totals[st.key].Merge(st.stats);
      }
      for (const auto& [key, stats] : totals) {
        std::vector<Param> p;
        AddKey(&p, key);
        AddStats(&p, stats);
        FC_RETURN_IF_ERROR(ExecLocked(kTotalSql, p).status());
      }
    }
    for (const StreamHour& h : batch.hours) {
      FC_RETURN_IF_ERROR(AddHourLocked(h.key, h.hour, h.stats));
    }
    for (const v1::Outcome& o : batch.failures) {
      FC_RETURN_IF_ERROR(
          ExecLocked(
              "INSERT INTO raw_failures(agent_id, sequence, region, "
              "target, mode, size_bytes, start_us, outcome_class, "
              "status, platform_request_id, probe_id, outcome) "
              "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
              "$12)",
              {P(o.agent_id()), P(o.sequence()), P(o.region()), P(o.target()),
               P(static_cast<int>(o.mode())), P(o.requested_bytes()),
               P(TimestampToUnixMicros(o.start_time())),
               P(static_cast<int>(o.outcome_class())),
               P(static_cast<int>(o.status())), P(o.platform_request_id()),
               P(o.probe_id()), Blob(o.SerializeAsString())})
              .status());
    }
    for (size_t i = 0; i < batch.platform_samples.size(); ++i) {
      const v1::PlatformMetricSample& s = batch.platform_samples[i];
      std::vector<Param> key = {P(s.region()),
                                P(s.target()),
                                P(static_cast<int>(s.mode())),
                                P(s.metric()),
                                P(s.stat()),
                                P(TimestampToUnixMicros(s.period_start()))};
      FC_ASSIGN_OR_RETURN(
          Rows prev,
          ExecLocked("SELECT value FROM platform_samples WHERE region = $1 "
                     "AND target = $2 AND mode = $3 AND metric = $4 AND "
                     "stat = $5 AND period_start_us = $6 FOR UPDATE",
                     key));
      const double previous = prev.size() > 0 ? prev.Double(0, 0) : 0.0;
      if (result) result->platform_previous.push_back(previous);
      if (i < batch.platform_counters.size() &&
          !batch.platform_counters[i].empty() && s.value() > previous) {
        FC_RETURN_IF_ERROR(
            ExecLocked(kAddCounter,
                       {P(batch.platform_counters[i]), P(s.value() - previous)})
                .status());
      }
      key.push_back(P(s.value()));
      key.push_back(Blob(s.SerializeAsString()));
      FC_RETURN_IF_ERROR(
          ExecLocked("INSERT INTO platform_samples(region, target, mode, "
                     "metric, stat, period_start_us, value, sample) "
                     "VALUES($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT "
                     "(region, target, mode, metric, stat, period_start_us) "
                     "DO UPDATE SET value = excluded.value, "
                     "sample = excluded.sample",
                     key)
              .status());
    }
    for (const auto& [name, delta] : batch.counter_deltas) {
      FC_RETURN_IF_ERROR(ExecLocked(kAddCounter, {P(name), P(delta)}).status());
    }
    return absl::OkStatus();
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

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> CreatePostgresStore(
    const PostgresStoreOptions& options) {
  if (!absl::StartsWith(options.url, "postgresql://") &&
      !absl::StartsWith(options.url, "postgres://")) {
    return absl::InvalidArgumentError(
        "store: a PostgreSQL URL starts with postgresql://");
  }
  auto store = std::make_unique<PostgresStore>(options);
  FC_RETURN_IF_ERROR(Annotate(store->Init(), "opening PostgreSQL store"));
  return store;
}

}  // namespace controller
}  // namespace fleetcanary
