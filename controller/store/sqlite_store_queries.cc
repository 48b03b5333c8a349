// SqliteStore: reads of ingest state and of the aggregates, failures and
// platform samples that verdicts, reports and the admin API query.
#include <string>
#include <utility>
#include <vector>

#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<std::vector<AgentRecord>> SqliteStore::LoadAgents() {
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

absl::StatusOr<std::vector<StreamTotal>> SqliteStore::LoadStreamTotals() {
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

absl::StatusOr<std::map<std::string, double>> SqliteStore::LoadCounters() {
  absl::MutexLock lock(&mu_);
  Stmt q(db_, "SELECT name, value FROM counters");
  std::map<std::string, double> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out[q.Text(0)] = q.Double(1);
  if (rc != SQLITE_DONE) return Error("loading counters");
  return out;
}

absl::StatusOr<std::vector<StreamMinute>> SqliteStore::QueryStreamMinutes(
    int64_t from_minute, int64_t to_minute) {
  absl::MutexLock lock(&mu_);
  Stmt q(db_,
         "SELECT region, target, mode, size_bytes, adhoc, counts, ttfb_sum, "
         "ttfb_buckets, duration_sum, duration_buckets, received_bytes, "
         "minute FROM stream_minutes WHERE minute >= ? AND minute < ? "
         "ORDER BY region, target, mode, size_bytes, adhoc, minute");
  q.Bind(1, from_minute).Bind(2, to_minute);
  std::vector<StreamMinute> out;
  FC_RETURN_IF_ERROR(ReadMinutesLocked(q, "querying stream minutes", &out));
  return out;
}

absl::StatusOr<std::vector<StreamHour>> SqliteStore::QueryStreamHours(
    int64_t from_hour, int64_t to_hour) {
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

absl::StatusOr<std::vector<v1::Outcome>> SqliteStore::QueryFailures(
    absl::Time since, size_t limit) {
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

absl::StatusOr<std::vector<v1::PlatformMetricSample>>
SqliteStore::QueryPlatformSamples(absl::Time from, absl::Time to) {
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

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
