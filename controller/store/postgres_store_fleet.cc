// PostgresStore: targets and schedules, verdict history and the verdict
// engine's detector state (written by the admin API and the verdict engine,
// fenced like every write).
#include <string>
#include <utility>
#include <vector>

#include "common/proto/time_convert.h"
#include "controller/store/postgres_store_impl.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<v1::FleetConfig> PostgresStore::LoadFleet() {
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

absl::Status PostgresStore::SaveFleet(
    const std::vector<v1::Target>& put_targets,
    const std::vector<v1::Schedule>& put_schedules,
    const std::vector<std::string>& delete_ids) {
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
          ExecLocked("DELETE FROM schedules WHERE id = $1", {P(id)}).status());
    }
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::AppendVerdict(const v1::Verdict& verdict) {
  absl::MutexLock lock(&mu_);
  return InTransactionLocked([&]() -> absl::Status {
    return ExecLocked(
               "INSERT INTO verdicts(updated_us, kind, region, target, mode, "
               "size_class, state, verdict) "
               "VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
               {P(TimestampToUnixMicros(verdict.updated())),
                P(static_cast<int>(verdict.kind())), P(verdict.key().region()),
                P(verdict.key().target()),
                P(static_cast<int>(verdict.key().mode())),
                P(verdict.key().size_class()),
                P(static_cast<int>(verdict.state())),
                Blob(verdict.SerializeAsString())})
        .status();
  });
}

absl::StatusOr<std::vector<v1::Verdict>> PostgresStore::ListVerdicts(
    absl::Time since, size_t limit) {
  absl::MutexLock lock(&mu_);
  FC_ASSIGN_OR_RETURN(
      Rows q, ExecLocked("SELECT verdict FROM verdicts WHERE updated_us >= "
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

absl::Status PostgresStore::SaveDetectorState(const std::string& blob) {
  absl::MutexLock lock(&mu_);
  return InTransactionLocked([&]() -> absl::Status {
    return ExecLocked(
               "INSERT INTO detector_state(id, state) VALUES(1, $1) "
               "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
               {Blob(blob)})
        .status();
  });
}

absl::StatusOr<std::string> PostgresStore::LoadDetectorState() {
  absl::MutexLock lock(&mu_);
  FC_ASSIGN_OR_RETURN(
      Rows q, ExecLocked("SELECT state FROM detector_state WHERE id = 1"));
  if (q.size() == 0) {
    return absl::NotFoundError("store: no detector state saved");
  }
  return q.Bytes(0, 0);
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
