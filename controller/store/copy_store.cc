// CopyStore: one store's contents into another (migrate between SQLite and
// PostgreSQL), in bounded transactions.
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
namespace {

// Fails unless `to` holds no agents, stream totals, targets or schedules.
absl::Status CheckDestinationEmpty(Store* to) {
  FC_ASSIGN_OR_RETURN(auto agents, to->LoadAgents());
  FC_ASSIGN_OR_RETURN(auto totals, to->LoadStreamTotals());
  FC_ASSIGN_OR_RETURN(auto fleet, to->LoadFleet());
  if (!agents.empty() || !totals.empty() || fleet.targets_size() > 0 ||
      fleet.schedules_size() > 0) {
    return absl::FailedPreconditionError(
        "--to: the destination store is not empty (copy into a new "
        "database)");
  }
  return absl::OkStatus();
}

// Copies the fleet configuration (targets and schedules) in one save.
absl::Status CopyFleet(Store* from, Store* to, CopyStats* stats) {
  FC_ASSIGN_OR_RETURN(v1::FleetConfig fleet, from->LoadFleet());
  FC_RETURN_IF_ERROR(
      to->SaveFleet({fleet.targets().begin(), fleet.targets().end()},
                    {fleet.schedules().begin(), fleet.schedules().end()}, {}));
  stats->targets = fleet.targets_size();
  stats->schedules = fleet.schedules_size();
  return absl::OkStatus();
}

// Collects rows into one WriteBatch and commits it to `to` every `limit`
// rows; Finish() commits the remainder.
class BatchWriter {
 public:
  BatchWriter(Store* to, size_t limit) : to_(to), limit_(limit) {
    batch_.minutes_in_totals = false;
  }

  WriteBatch& batch() { return batch_; }

  // Counts one row just added to batch(); commits when `limit` are pending.
  absl::Status Added() {
    ++rows_;
    absl::Status s = Flush(false);
    if (rows_ >= limit_) rows_ = 0;
    return s;
  }

  // Commits whatever rows are pending.
  absl::Status Finish() { return Flush(true); }

 private:
  // Commits the batch when it holds `limit_` rows or `force`; then clears it.
  absl::Status Flush(bool force) {
    if (rows_ == 0 || (!force && rows_ < limit_)) return absl::OkStatus();
    FC_RETURN_IF_ERROR(to_->Commit(batch_, nullptr));
    batch_ = WriteBatch();
    batch_.minutes_in_totals = false;
    return absl::OkStatus();
  }

  Store* const to_;
  const size_t limit_;
  WriteBatch batch_;
  size_t rows_ = 0;
};

// Moves every row of `rows` into `into` (a list of writer's batch), counting
// each in `*count` and committing as the writer's limit is reached.
template <typename T>
absl::Status MoveRows(std::vector<T>& rows, std::vector<T>& into,
                      int64_t* count, BatchWriter& writer) {
  for (T& row : rows) {
    into.push_back(std::move(row));
    ++*count;
    FC_RETURN_IF_ERROR(writer.Added());
  }
  return absl::OkStatus();
}

// Copies stream totals, minutes and hours, in that order.
absl::Status CopyStreamRows(Store* from, BatchWriter& writer,
                            CopyStats* stats) {
  WriteBatch& batch = writer.batch();
  FC_ASSIGN_OR_RETURN(auto totals, from->LoadStreamTotals());
  FC_RETURN_IF_ERROR(
      MoveRows(totals, batch.total_deltas, &stats->totals, writer));
  FC_ASSIGN_OR_RETURN(auto minutes, from->QueryStreamMinutes(
                                        std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
  FC_RETURN_IF_ERROR(MoveRows(minutes, batch.minutes, &stats->minutes, writer));
  FC_ASSIGN_OR_RETURN(
      auto hours, from->QueryStreamHours(std::numeric_limits<int64_t>::min(),
                                         std::numeric_limits<int64_t>::max()));
  return MoveRows(hours, batch.hours, &stats->hours, writer);
}

// Copies failures, platform samples, counters and, last, the agents'
// watermarks: a copy interrupted before them is visibly incomplete.
absl::Status CopyEventRows(Store* from, BatchWriter& writer, CopyStats* stats) {
  WriteBatch& batch = writer.batch();
  FC_ASSIGN_OR_RETURN(auto failures,
                      from->QueryFailures(absl::InfinitePast(),
                                          std::numeric_limits<size_t>::max()));
  FC_RETURN_IF_ERROR(
      MoveRows(failures, batch.failures, &stats->failures, writer));
  FC_ASSIGN_OR_RETURN(
      auto samples,
      from->QueryPlatformSamples(absl::InfinitePast(), absl::InfiniteFuture()));
  FC_RETURN_IF_ERROR(MoveRows(samples, batch.platform_samples,
                              &stats->platform_samples, writer));
  FC_ASSIGN_OR_RETURN(auto counters, from->LoadCounters());
  for (const auto& [name, value] : counters) {
    batch.counter_deltas[name] = value;
    ++stats->counters;
    FC_RETURN_IF_ERROR(writer.Added());
  }
  FC_ASSIGN_OR_RETURN(auto agents, from->LoadAgents());
  return MoveRows(agents, batch.agents, &stats->agents, writer);
}

// Appends every verdict, then the detector state if `from` has one.
absl::Status CopyVerdictsAndState(Store* from, Store* to, CopyStats* stats) {
  FC_ASSIGN_OR_RETURN(auto verdicts,
                      from->ListVerdicts(absl::InfinitePast(),
                                         std::numeric_limits<size_t>::max()));
  for (const v1::Verdict& v : verdicts) {
    FC_RETURN_IF_ERROR(to->AppendVerdict(v));
    ++stats->verdicts;
  }
  absl::StatusOr<std::string> detector_state = from->LoadDetectorState();
  if (detector_state.ok()) {
    FC_RETURN_IF_ERROR(to->SaveDetectorState(*detector_state));
    stats->detector_states = 1;
  } else if (!absl::IsNotFound(detector_state.status())) {
    return detector_state.status();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CopyStats> CopyStore(Store* from, Store* to,
                                    size_t rows_per_commit) {
  if (rows_per_commit == 0) rows_per_commit = 1;
  FC_RETURN_IF_ERROR(CheckDestinationEmpty(to));
  CopyStats stats;
  FC_RETURN_IF_ERROR(CopyFleet(from, to, &stats));
  BatchWriter writer(to, rows_per_commit);
  FC_RETURN_IF_ERROR(CopyStreamRows(from, writer, &stats));
  FC_RETURN_IF_ERROR(CopyEventRows(from, writer, &stats));
  FC_RETURN_IF_ERROR(writer.Finish());
  FC_RETURN_IF_ERROR(CopyVerdictsAndState(from, to, &stats));
  return stats;
}

}  // namespace controller
}  // namespace fleetcanary
