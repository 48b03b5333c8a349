// The controller's durable state: targets and schedules, agents with their
// applied-sequence watermark, per-minute aggregates per stream, all-time
// totals per stream (so metrics survive restarts), recent raw failures,
// platform metric samples, verdict history, named counter totals and the
// verdict engine's detector state.
//
// Three implementations of one interface:
//   - CreateSqliteStore(): a SQLite file in WAL mode (synchronous=NORMAL: a
//     committed transaction survives a process crash; a power loss may lose
//     the last few transactions but never corrupts the file). The schema is
//     versioned with PRAGMA user_version and migrated forward on open.
//   - CreatePostgresStore(): a PostgreSQL database (libpq), for several
//     controller replicas sharing one database. Same tables and meaning
//     (counter vectors are BIGINT[] there); schema versioned in the
//     schema_version table, migrated forward under an advisory lock.
//   - CreateMemoryStore(): plain C++ containers, for unit tests of ingest and
//     the scheduler.
//
// Exactly-once ingest relies on Commit() being atomic: every part of a
// WriteBatch (data and watermarks) is applied, or none is.
//
// Thread-safety: every method is thread-safe (calls are serialized inside).
#ifndef FLEETCANARY_CONTROLLER_STORE_STORE_H_
#define FLEETCANARY_CONTROLLER_STORE_STORE_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/stream_stats.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace controller {

// The stream aggregate types live in analysis/ (shared with the report).
using analysis::HourOfMinute;
using analysis::kLatencyBucketBounds;
using analysis::kNumLatencyBuckets;
using analysis::kNumOutcomeClasses;
using analysis::LatencyHistogram;
using analysis::MinuteOf;
using analysis::StreamKey;
using analysis::StreamMinute;
using analysis::StreamStats;

// Per-minute aggregates past their retention, rolled up per hour (hour =
// Unix seconds / 3600): the same counts and histograms, so verdicts,
// reports and dashboards over old periods keep working at hour resolution.
struct StreamHour {
  StreamKey key;
  int64_t hour = 0;
  StreamStats stats;
};

struct StreamTotal {
  StreamKey key;
  StreamStats stats;
};

// Per-agent ingest state.
struct AgentRecord {
  std::string agent_id;
  std::string region;
  // Highest sequence committed (the watermark); 0 before the first outcome.
  uint64_t applied_sequence = 0;
  // Latest cumulative drop count the agent reported (never decreases).
  uint64_t dropped_total = 0;
  absl::Time last_seen = absl::InfinitePast();
};

// One atomic unit of change.
struct WriteBatch {
  // Upserted (replacing the row).
  std::vector<AgentRecord> agents;
  // Added to the per-minute aggregates and to the all-time stream totals.
  std::vector<StreamMinute> minutes;
  // Non-OK outcomes kept raw (with their request ids) until raw_retention.
  std::vector<v1::Outcome> failures;
  // Upserted by (region, target, mode, metric, stat, period_start).
  std::vector<v1::PlatformMetricSample> platform_samples;
  // Parallel to platform_samples (or empty): when entry i is non-empty, the
  // named counter grows by max(0, new value - value replaced), in the same
  // transaction, so platform totals count each datapoint once even when
  // CloudWatch revises it.
  std::vector<std::string> platform_counters;
  // Added to named counter totals.
  std::map<std::string, double> counter_deltas;
  // Added to the all-time stream totals only (CopyStore: totals also hold
  // history already pruned from the per-minute rows).
  std::vector<StreamTotal> total_deltas;
  // Whether `minutes` also add to the totals (false only for CopyStore).
  bool minutes_in_totals = true;
  // Added to the hourly aggregates only (CopyStore).
  std::vector<StreamHour> hours;

  bool empty() const {
    return agents.empty() && minutes.empty() && failures.empty() &&
           platform_samples.empty() && counter_deltas.empty() &&
           total_deltas.empty() && hours.empty();
  }
};

struct CommitResult {
  // For each platform sample of the batch, the value it replaced (0 if new).
  std::vector<double> platform_previous;
};

struct RetentionOptions {
  // Raw failures and verdict history.
  absl::Duration raw_retention = absl::Hours(24 * 7);
  // Per-minute aggregates (then rolled up into hourly ones) and platform
  // samples.
  absl::Duration aggregate_retention = absl::Hours(24 * 90);
  // Hourly aggregates.
  absl::Duration hourly_retention = absl::Hours(24 * 730);
  // Rows one Prune transaction touches at most, so retention never holds
  // the database (and ingest) for long.
  int64_t max_rows_per_transaction = 5000;
};

// The leader lease that controller replicas sharing one store compete for
// (one row, "leader", in the leases table).
struct LeaderLease {
  std::string holder;   // Replica id; "" before anyone took it.
  std::string address;  // Where agents reach the holder (host:port).
  // Fencing epoch: incremented whenever the lease is taken (rather than
  // renewed by its unexpired holder).
  int64_t epoch = 0;
  absl::Time expires = absl::InfinitePast();
};

struct PruneResult {
  int64_t failures_deleted = 0;
  // Per-minute rows rolled up into hourly aggregates and deleted.
  int64_t minutes_deleted = 0;
  int64_t platform_samples_deleted = 0;
  int64_t verdicts_deleted = 0;
  int64_t hours_deleted = 0;
  // Transactions committed (each touching at most max_rows_per_transaction
  // rows).
  int64_t transactions = 0;

  int64_t rows_deleted() const {
    return failures_deleted + minutes_deleted + platform_samples_deleted +
           verdicts_deleted + hours_deleted;
  }
};

// What Prune removes at `now` (for implementations): rows strictly below
// each cutoff.
struct PruneCutoffs {
  int64_t raw_us = 0;       // raw_failures.start_us, verdicts.updated_us.
  int64_t minute = 0;       // stream_minutes.minute (a whole hour's first).
  int64_t platform_us = 0;  // platform_samples.period_start_us.
  int64_t hour = 0;         // stream_hours.hour.

  static PruneCutoffs At(absl::Time now, const RetentionOptions& retention);
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies the whole batch atomically. On error nothing is applied.
  virtual absl::Status Commit(const WriteBatch& batch,
                              CommitResult* result) = 0;

  virtual absl::StatusOr<std::vector<AgentRecord>> LoadAgents() = 0;
  virtual absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() = 0;
  virtual absl::StatusOr<std::map<std::string, double>> LoadCounters() = 0;

  // Aggregates with from_minute <= minute < to_minute, ordered by key, minute.
  virtual absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t from_minute, int64_t to_minute) = 0;
  // Hourly aggregates with from_hour <= hour < to_hour, ordered by key, hour.
  virtual absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(
      int64_t from_hour, int64_t to_hour) = 0;
  // Raw failures that started at or after `since`, oldest first, at most
  // `limit`.
  virtual absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(
      absl::Time since, size_t limit) = 0;
  // Platform samples with from <= period_start < to.
  virtual absl::StatusOr<std::vector<v1::PlatformMetricSample>>
  QueryPlatformSamples(absl::Time from, absl::Time to) = 0;

  // Targets and schedules.
  virtual absl::StatusOr<v1::FleetConfig> LoadFleet() = 0;
  // Upserts targets (by name) and schedules (by id), deletes schedules by id;
  // atomically.
  virtual absl::Status SaveFleet(
      const std::vector<v1::Target>& put_targets,
      const std::vector<v1::Schedule>& put_schedules,
      const std::vector<std::string>& delete_ids) = 0;

  // Verdict history, ordered by `updated`.
  virtual absl::Status AppendVerdict(const v1::Verdict& verdict) = 0;
  virtual absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(
      absl::Time since, size_t limit) = 0;
  // Detector state: the verdict engine's serialized state, one opaque blob
  // replaced as a whole. Writes are fenced like Commit.
  virtual absl::Status SaveDetectorState(const std::string& blob) = 0;
  // NOT_FOUND when none was saved yet.
  virtual absl::StatusOr<std::string> LoadDetectorState() = 0;

  // Checks that the store answers (a trivial read): UNAVAILABLE when not.
  virtual absl::Status Ping() { return LoadCounters().status(); }

  // Leader election among replicas sharing this store. Takes the lease for
  // `holder` when it is free or expired at `now` (epoch + 1), or renews it
  // when `holder` has it unexpired (same epoch); either way it then expires
  // at now + ttl and names `address`. Otherwise changes nothing. Returns the
  // lease as it stands after the call: held by `holder` iff it is the
  // leader. Replicas' clocks must agree to well within ttl (NTP).
  // The default implementation returns UNIMPLEMENTED.
  virtual absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                                   const std::string& address,
                                                   absl::Time now,
                                                   absl::Duration ttl) {
    (void)holder, (void)address, (void)now, (void)ttl;
    return absl::UnimplementedError("store: no leader lease");
  }
  virtual absl::StatusOr<LeaderLease> ReadLease() {
    return absl::UnimplementedError("store: no leader lease");
  }
  // Expires the lease now if `holder` has it (a successor need not wait).
  virtual absl::Status ReleaseLease(const std::string& holder) {
    (void)holder;
    return absl::UnimplementedError("store: no leader lease");
  }
  // Fencing: with epoch > 0, every later write through this object
  // (Commit, SaveFleet, AppendVerdict, SaveDetectorState, Prune) checks inside
  // its own transaction that the lease's epoch is still `epoch`, and otherwise
  // fails with FAILED_PRECONDITION ("fenced") applying nothing; so a stalled
  // old leader that wakes up after a successor took over cannot write. 0 (the
  // default) turns the check off.
  virtual void SetFencingEpoch(int64_t epoch) { (void)epoch; }

  // Enforces `retention` at `now`, in transactions of at most
  // max_rows_per_transaction rows each (fenced like every write; the store's
  // lock is released between them, so ingest goes on):
  //   - per-minute aggregates of whole hours that ended before
  //     now - aggregate_retention are added to the hourly aggregates and
  //     deleted in the same transaction (a late minute row of such an hour
  //     is added at the next run);
  //   - raw failures and verdict history older than now - raw_retention,
  //     platform samples older than now - aggregate_retention and hourly
  //     aggregates of hours that ended before now - hourly_retention are
  //     deleted.
  // Stream totals and counters are never pruned. On error, what earlier
  // transactions did stays done (a later run goes on from there).
  virtual absl::StatusOr<PruneResult> Prune(
      absl::Time now, const RetentionOptions& retention) = 0;
};

struct SqliteStoreOptions {
  // File path; created (with its directory's permission) if missing.
  std::string path;
};

// Opens (creating and migrating as needed) a SQLite store.
// Errors: INTERNAL/UNAVAILABLE when the file cannot be opened or migrated,
// FAILED_PRECONDITION when its schema is newer than this binary knows.
absl::StatusOr<std::unique_ptr<Store>> CreateSqliteStore(
    const SqliteStoreOptions& options);

// A store held in process memory; lost on exit. For tests.
std::unique_ptr<Store> CreateMemoryStore();

// Per-stream counts of from_minute <= minute < to_minute at the finest
// resolution `store` still holds: every per-minute row, plus every hourly
// rollup (Store::Prune) of an hour overlapping the range as one row at the
// hour's first minute (minute = hour * 60, possibly before from_minute: a
// rolled-up hour is not split). Minute and hour rows never count the same
// outcome twice (a rollup deletes what it adds), so sums over the result are
// the stream's counts. Ordered by key, minute. Errors: the store's.
absl::StatusOr<std::vector<StreamMinute>> QueryStreamCounts(Store* store,
                                                            int64_t from_minute,
                                                            int64_t to_minute);

struct PostgresStoreOptions {
  // libpq connection URL, postgresql://user[:password]@host[:port]/dbname
  // [?param=value...]; parameters in the URL override the defaults below.
  std::string url;
  // How long one connection attempt may take (URL's connect_timeout wins).
  absl::Duration connect_timeout = absl::Seconds(5);
  // Server-side bounds that keep one replica from blocking another forever
  // (set as session parameters; an `options` parameter in the URL replaces
  // them). A statement waits at most `lock_timeout` for a lock, then fails
  // UNAVAILABLE and the caller retries. A session idle inside a transaction
  // for `idle_in_transaction_timeout` -- its process stalled or hung while
  // holding row locks, e.g. on the leader lease -- is ended by the server,
  // which releases the locks so a standby can take over.
  absl::Duration lock_timeout = absl::Seconds(10);
  absl::Duration idle_in_transaction_timeout = absl::Seconds(10);
};

// The libpq `options` value that applies `options`' server-side bounds to a
// session ("-c lock_timeout=... -c idle_in_transaction_session_timeout=...").
std::string PostgresSessionOptions(const PostgresStoreOptions& options);

// Connects to PostgreSQL and creates/migrates the schema. A connection lost
// later is reopened on the next call; calls fail with UNAVAILABLE while the
// server is unreachable, read-only or shutting down (nothing is applied).
// Errors: INVALID_ARGUMENT for a URL that is not postgresql://...,
// UNAVAILABLE when the server cannot be reached, FAILED_PRECONDITION when the
// schema is newer than this binary knows.
absl::StatusOr<std::unique_ptr<Store>> CreatePostgresStore(
    const PostgresStoreOptions& options);

// Opens the store a URL names:
//   sqlite:///absolute/path.db, sqlite://relative/path.db or sqlite:path.db
//   postgresql://... (or postgres://...)
//   memory: (tests)
// Errors: INVALID_ARGUMENT naming `what` (e.g. "--store") for another
// scheme; otherwise those of the factory.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                                 absl::string_view what);

struct CopyStats {
  int64_t agents = 0;
  int64_t minutes = 0;
  int64_t hours = 0;
  int64_t totals = 0;
  int64_t failures = 0;
  int64_t platform_samples = 0;
  int64_t verdicts = 0;
  int64_t counters = 0;
  int64_t detector_states = 0;  // 0 or 1.
  int64_t targets = 0;
  int64_t schedules = 0;
};

// Copies everything `from` holds into `to` (which must be empty: no agents,
// stream totals or schedules, else FAILED_PRECONDITION), in transactions of
// at most `rows_per_commit` rows. The leader lease is not copied. On error
// `to` may hold part of the data: start again with an empty destination.
absl::StatusOr<CopyStats> CopyStore(Store* from, Store* to,
                                    size_t rows_per_commit = 5000);

// `url` without its password (for logs).
std::string RedactStoreUrl(const std::string& url);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_STORE_STORE_H_
