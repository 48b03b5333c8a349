// SqliteStore: Commit, the atomic ingest write.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::Status SqliteStore::Commit(const WriteBatch& batch,
                                 CommitResult* result) {
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

absl::Status SqliteStore::AddHourLocked(const StreamKey& key, int64_t hour,
                                        const StreamStats& stats) {
  static const std::string kSql = absl::StrCat(
      "INSERT INTO stream_hours(region, target, mode, size_bytes, adhoc, "
      "hour, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
      "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
      "?, ?, ?, ?) ON CONFLICT DO UPDATE SET",
      kSqliteAddStats);
  Stmt q(db_, kSql.c_str());
  BindKey(q, 1, key);
  q.Bind(6, hour);
  BindStats(q, 7, stats);
  if (q.Step() != SQLITE_DONE) return Error("adding stream hour");
  return absl::OkStatus();
}

namespace {

constexpr char kAddCounter[] =
    "INSERT INTO counters(name, value) VALUES(?, ?) "
    "ON CONFLICT DO UPDATE SET value = value + excluded.value";

}  // namespace

absl::Status SqliteStore::CommitLocked(const WriteBatch& batch,
                                       CommitResult* result) {
  if (!batch.agents.empty()) {
    FC_RETURN_IF_ERROR(SaveAgentsLocked(batch.agents));
  }
  if (!batch.minutes.empty() || !batch.total_deltas.empty()) {
    FC_RETURN_IF_ERROR(AddStreamRowsLocked(batch));
  }
  for (const StreamHour& h : batch.hours) {
    FC_RETURN_IF_ERROR(AddHourLocked(h.key, h.hour, h.stats));
  }
  if (!batch.failures.empty()) {
    FC_RETURN_IF_ERROR(SaveFailuresLocked(batch.failures));
  }
  if (!batch.platform_samples.empty()) {
    FC_RETURN_IF_ERROR(SavePlatformSamplesLocked(batch, result));
  }
  if (!batch.counter_deltas.empty()) {
    FC_RETURN_IF_ERROR(AddCountersLocked(batch.counter_deltas));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::SaveAgentsLocked(
    const std::vector<AgentRecord>& agents) {
  Stmt q(db_,
         "INSERT OR REPLACE INTO agents(agent_id, region, "
         "applied_sequence, dropped_total, last_seen_us) "
         "VALUES(?, ?, ?, ?, ?)");
  for (const AgentRecord& a : agents) {
    q.Bind(1, a.agent_id)
        .Bind(2, a.region)
        .Bind(3, static_cast<int64_t>(a.applied_sequence))
        .Bind(4, static_cast<int64_t>(a.dropped_total))
        .Bind(5, LastSeenMicros(a.last_seen));
    if (q.Step() != SQLITE_DONE) return Error("saving agent watermark");
    q.Reset();
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::AddStreamRowsLocked(const WriteBatch& batch) {
  const std::string minute_sql = absl::StrCat(
      "INSERT INTO stream_minutes(region, target, mode, size_bytes, adhoc, "
      "minute, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
      "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
      "?, ?, ?, ?) ON CONFLICT DO UPDATE SET",
      kSqliteAddStats);
  const std::string total_sql = absl::StrCat(
      "INSERT INTO stream_totals(region, target, mode, size_bytes, adhoc, "
      "probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
      "duration_buckets, received_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, "
      "?, ?, ?) ON CONFLICT DO UPDATE SET",
      kSqliteAddStats);
  Stmt m(db_, minute_sql.c_str());
  Stmt t(db_, total_sql.c_str());
  if (!m.ok() || !t.ok()) return Error("preparing aggregate upsert");
  for (const StreamMinute& sm : batch.minutes) {
    BindKey(m, 1, sm.key);
    m.Bind(6, sm.minute);
    BindStats(m, 7, sm.stats);
    if (m.Step() != SQLITE_DONE) return Error("adding stream minute");
    m.Reset();
  }
  for (const auto& [key, stats] : TotalsToAdd(batch)) {
    BindKey(t, 1, key);
    BindStats(t, 6, stats);
    if (t.Step() != SQLITE_DONE) return Error("adding stream total");
    t.Reset();
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::SaveFailuresLocked(
    const std::vector<v1::Outcome>& failures) {
  Stmt q(db_,
         "INSERT INTO raw_failures(agent_id, sequence, region, target, "
         "mode, size_bytes, start_us, outcome_class, status, "
         "platform_request_id, probe_id, outcome) "
         "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const v1::Outcome& o : failures) {
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
  return absl::OkStatus();
}

absl::Status SqliteStore::SavePlatformSamplesLocked(const WriteBatch& batch,
                                                    CommitResult* result) {
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
      counter.Bind(1, batch.platform_counters[i]).Bind(2, s.value() - previous);
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
  return absl::OkStatus();
}

absl::Status SqliteStore::AddCountersLocked(
    const std::map<std::string, double>& deltas) {
  Stmt q(db_, kAddCounter);
  for (const auto& [name, delta] : deltas) {
    q.Bind(1, name).Bind(2, delta);
    if (q.Step() != SQLITE_DONE) return Error("adding counter");
    q.Reset();
  }
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
