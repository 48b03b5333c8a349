// PostgresStore: Commit, the atomic ingest write.
#include <map>
#include <string>
#include <vector>

#include "common/proto/time_convert.h"
#include "controller/store/postgres_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::Status PostgresStore::Commit(const WriteBatch& batch,
                                   CommitResult* result) {
  absl::MutexLock lock(&mu_);
  if (result) result->platform_previous.clear();
  return InTransactionLocked([&] { return CommitLocked(batch, result); });
}

absl::Status PostgresStore::AddHourLocked(const StreamKey& key, int64_t hour,
                                          const StreamStats& stats) {
  static const std::string kSql = absl::StrCat(
      "INSERT INTO stream_hours AS t(region, target, mode, size_bytes, "
      "adhoc, hour, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
      "duration_buckets, received_bytes) VALUES($1, $2, $3, $4, $5, $6, $7, "
      "$8, $9, $10, $11, $12, $13) ON CONFLICT (region, target, mode, "
      "size_bytes, adhoc, hour) DO UPDATE SET",
      kPostgresAddStats);
  std::vector<Param> p;
  AddKey(&p, key);
  p.push_back(P(hour));
  AddStats(&p, stats);
  return ExecLocked(kSql, p).status();
}

namespace {

constexpr char kAddCounter[] =
    "INSERT INTO counters AS t(name, value) VALUES($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET value = t.value + excluded.value";

}  // namespace

absl::Status PostgresStore::CommitLocked(const WriteBatch& batch,
                                         CommitResult* result) {
  FC_RETURN_IF_ERROR(SaveAgentsLocked(batch.agents));
  if (!batch.minutes.empty() || !batch.total_deltas.empty()) {
    FC_RETURN_IF_ERROR(AddStreamRowsLocked(batch));
  }
  for (const StreamHour& h : batch.hours) {
    FC_RETURN_IF_ERROR(AddHourLocked(h.key, h.hour, h.stats));
  }
  FC_RETURN_IF_ERROR(SaveFailuresLocked(batch.failures));
  FC_RETURN_IF_ERROR(SavePlatformSamplesLocked(batch, result));
  return AddCountersLocked(batch.counter_deltas);
}

absl::Status PostgresStore::SaveAgentsLocked(
    const std::vector<AgentRecord>& agents) {
  for (const AgentRecord& a : agents) {
    FC_RETURN_IF_ERROR(
        ExecLocked(
            "INSERT INTO agents(agent_id, region, applied_sequence, "
            "dropped_total, last_seen_us) VALUES($1, $2, $3, $4, $5) "
            "ON CONFLICT (agent_id) DO UPDATE SET region = excluded.region, "
            "applied_sequence = excluded.applied_sequence, "
            "dropped_total = excluded.dropped_total, "
            "last_seen_us = excluded.last_seen_us",
            {P(a.agent_id), P(a.region), P(a.applied_sequence),
             P(a.dropped_total), P(LastSeenMicros(a.last_seen))})
            .status());
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::AddStreamRowsLocked(const WriteBatch& batch) {
  static const std::string kMinuteSql = absl::StrCat(
      "INSERT INTO stream_minutes AS t(region, target, mode, size_bytes, "
      "adhoc, minute, probes, counts, ttfb_sum, ttfb_buckets, "
      "duration_sum, duration_buckets, received_bytes) VALUES($1, $2, $3, "
      "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (region, "
      "target, mode, size_bytes, adhoc, minute) DO UPDATE SET",
      kPostgresAddStats);
  static const std::string kTotalSql = absl::StrCat(
      "INSERT INTO stream_totals AS t(region, target, mode, size_bytes, "
      "adhoc, probes, counts, ttfb_sum, ttfb_buckets, duration_sum, "
      "duration_buckets, received_bytes) VALUES($1, $2, $3, $4, $5, $6, "
      "$7, $8, $9, $10, $11, $12) ON CONFLICT (region, target, mode, "
      "size_bytes, adhoc) DO UPDATE SET",
      kPostgresAddStats);
  for (const StreamMinute& sm : batch.minutes) {
    std::vector<Param> p;
    AddKey(&p, sm.key);
    p.push_back(P(sm.minute));
    AddStats(&p, sm.stats);
    FC_RETURN_IF_ERROR(ExecLocked(kMinuteSql, p).status());
  }
  for (const auto& [key, stats] : TotalsToAdd(batch)) {
    std::vector<Param> p;
    AddKey(&p, key);
    AddStats(&p, stats);
    FC_RETURN_IF_ERROR(ExecLocked(kTotalSql, p).status());
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::SaveFailuresLocked(
    const std::vector<v1::Outcome>& failures) {
  for (const v1::Outcome& o : failures) {
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
  return absl::OkStatus();
}

absl::Status PostgresStore::SavePlatformSamplesLocked(const WriteBatch& batch,
                                                      CommitResult* result) {
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
      FC_RETURN_IF_ERROR(ExecLocked(kAddCounter, {P(batch.platform_counters[i]),
                                                  P(s.value() - previous)})
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
  return absl::OkStatus();
}

absl::Status PostgresStore::AddCountersLocked(
    const std::map<std::string, double>& deltas) {
  for (const auto& [name, delta] : deltas) {
    FC_RETURN_IF_ERROR(ExecLocked(kAddCounter, {P(name), P(delta)}).status());
  }
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
