// CopyStore: one store's contents into another (migrate between SQLite and
// PostgreSQL), in bounded transactions.
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace {

// Commits `batch` when it holds `limit` rows or `force`; then clears it.
absl::Status Flush(Store* to, WriteBatch* batch, size_t rows, size_t limit,
                   bool force) {
  if (rows == 0 || (!force && rows < limit)) return absl::OkStatus();
  FC_RETURN_IF_ERROR(to->Commit(*batch, nullptr));
  *batch = WriteBatch();
  batch->minutes_in_totals = false;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CopyStats> CopyStore(Store* from, Store* to,
                                    size_t rows_per_commit) {
  if (rows_per_commit == 0) rows_per_commit = 1;
  {
    FC_ASSIGN_OR_RETURN(auto agents, to->LoadAgents());
    FC_ASSIGN_OR_RETURN(auto totals, to->LoadStreamTotals());
    FC_ASSIGN_OR_RETURN(auto fleet, to->LoadFleet());
    if (!agents.empty() || !totals.empty() || fleet.targets_size() > 0 ||
        fleet.schedules_size() > 0) {
      return absl::FailedPreconditionError(
          "--to: the destination store is not empty (copy into a new "
          "database)");
    }
  }
  CopyStats stats;
  FC_ASSIGN_OR_RETURN(v1::FleetConfig fleet, from->LoadFleet());
  FC_RETURN_IF_ERROR(
      to->SaveFleet({fleet.targets().begin(), fleet.targets().end()},
                    {fleet.schedules().begin(), fleet.schedules().end()}, {}));
  stats.targets = fleet.targets_size();
  stats.schedules = fleet.schedules_size();

  WriteBatch batch;
  batch.minutes_in_totals = false;
  size_t rows = 0;
  auto add = [&]() -> absl::Status {
    ++rows;
    absl::Status s = Flush(to, &batch, rows, rows_per_commit, false);
    if (rows >= rows_per_commit) rows = 0;
    return s;
  };
  FC_ASSIGN_OR_RETURN(auto totals, from->LoadStreamTotals());
  for (StreamTotal& t : totals) {
    batch.total_deltas.push_back(std::move(t));
    ++stats.totals;
    FC_RETURN_IF_ERROR(add());
  }
  FC_ASSIGN_OR_RETURN(auto minutes, from->QueryStreamMinutes(
                                        std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
  for (StreamMinute& m : minutes) {
    batch.minutes.push_back(std::move(m));
    ++stats.minutes;
    FC_RETURN_IF_ERROR(add());
  }
  FC_ASSIGN_OR_RETURN(
      auto hours, from->QueryStreamHours(std::numeric_limits<int64_t>::min(),
                                         std::numeric_limits<int64_t>::max()));
  for (StreamHour& h : hours) {
    batch.hours.push_back(std::move(h));
    ++stats.hours;
    FC_RETURN_IF_ERROR(add());
  }
  FC_ASSIGN_OR_RETURN(auto failures,
                      from->QueryFailures(absl::InfinitePast(),
                                          std::numeric_limits<size_t>::max()));
  for (v1::Outcome& o : failures) {
    batch.failures.push_back(std::move(o));
    ++stats.failures;
    FC_RETURN_IF_ERROR(add());
  }
  FC_ASSIGN_OR_RETURN(
      auto samples,
      from->QueryPlatformSamples(absl::InfinitePast(), absl::InfiniteFuture()));
  for (v1::PlatformMetricSample& s : samples) {
    batch.platform_samples.push_back(std::move(s));
    ++stats.platform_samples;
    FC_RETURN_IF_ERROR(add());
  }
  FC_ASSIGN_OR_RETURN(auto counters, from->LoadCounters());
  for (const auto& [name, value] : counters) {
    batch.counter_deltas[name] = value;
    ++stats.counters;
    FC_RETURN_IF_ERROR(add());
  }
  // Watermarks last: a copy interrupted before them is visibly incomplete.
  FC_ASSIGN_OR_RETURN(auto agents, from->LoadAgents());
  for (AgentRecord& a : agents) {
    batch.agents.push_back(std::move(a));
    ++stats.agents;
    FC_RETURN_IF_ERROR(add());
  }
  FC_RETURN_IF_ERROR(Flush(to, &batch, rows, rows_per_commit, true));
  FC_ASSIGN_OR_RETURN(auto verdicts,
                      from->ListVerdicts(absl::InfinitePast(),
                                         std::numeric_limits<size_t>::max()));
  for (const v1::Verdict& v : verdicts) {
    FC_RETURN_IF_ERROR(to->AppendVerdict(v));
    ++stats.verdicts;
  }
  absl::StatusOr<std::string> detector_state = from->LoadDetectorState();
  if (detector_state.ok()) {
    FC_RETURN_IF_ERROR(to->SaveDetectorState(*detector_state));
    stats.detector_states = 1;
  } else if (!absl::IsNotFound(detector_state.status())) {
    return detector_state.status();
  }
  return stats;
}

}  // namespace controller
}  // namespace fleetcanary
