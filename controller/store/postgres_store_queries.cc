// PostgresStore: reads of ingest state and of the aggregates, failures and
// platform samples that verdicts, reports and the admin API query.
#include <string>
#include <utility>
#include <vector>

#include "controller/store/postgres_store_impl.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<std::vector<AgentRecord>> PostgresStore::LoadAgents() {
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

absl::StatusOr<std::vector<StreamTotal>> PostgresStore::LoadStreamTotals() {
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

absl::StatusOr<std::map<std::string, double>> PostgresStore::LoadCounters() {
  absl::MutexLock lock(&mu_);
  FC_ASSIGN_OR_RETURN(Rows q, ExecLocked("SELECT name, value FROM counters"));
  std::map<std::string, double> out;
  for (int i = 0; i < q.size(); ++i) out[q.Text(i, 0)] = q.Double(i, 1);
  return out;
}

absl::StatusOr<std::vector<StreamMinute>> PostgresStore::QueryStreamMinutes(
    int64_t from_minute, int64_t to_minute) {
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

absl::StatusOr<std::vector<StreamHour>> PostgresStore::QueryStreamHours(
    int64_t from_hour, int64_t to_hour) {
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

absl::StatusOr<std::vector<v1::Outcome>> PostgresStore::QueryFailures(
    absl::Time since, size_t limit) {
  absl::MutexLock lock(&mu_);
  FC_ASSIGN_OR_RETURN(
      Rows q, ExecLocked("SELECT outcome FROM raw_failures WHERE "
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

absl::StatusOr<std::vector<v1::PlatformMetricSample>>
PostgresStore::QueryPlatformSamples(absl::Time from, absl::Time to) {
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

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
