// SqliteStore: targets and schedules, verdict history and the verdict
// engine's detector state (written by the admin API and the verdict engine,
// fenced like every write).
#include <string>
#include <utility>
#include <vector>

#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<v1::FleetConfig> SqliteStore::LoadFleet() {
  absl::MutexLock lock(&mu_);
  v1::FleetConfig fleet;
  {
    Stmt q(db_, "SELECT spec FROM targets ORDER BY name");
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      if (!fleet.add_targets()->ParseFromString(q.Blob(0))) {
        return absl::DataLossError("unparseable target in store");
      }
    }
    if (rc != SQLITE_DONE) return Error("loading targets");
  }
  Stmt q(db_, "SELECT spec FROM schedules ORDER BY id");
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    if (!fleet.add_schedules()->ParseFromString(q.Blob(0))) {
      return absl::DataLossError("unparseable schedule in store");
    }
  }
  if (rc != SQLITE_DONE) return Error("loading schedules");
  return fleet;
}

absl::Status SqliteStore::SaveFleet(
    const std::vector<v1::Target>& put_targets,
    const std::vector<v1::Schedule>& put_schedules,
    const std::vector<std::string>& delete_ids) {
  absl::MutexLock lock(&mu_);
  FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    Stmt t(db_, "INSERT OR REPLACE INTO targets(name, spec) VALUES(?, ?)");
    for (const v1::Target& target : put_targets) {
      t.Bind(1, target.name()).BindBlob(2, target.SerializeAsString());
      if (t.Step() != SQLITE_DONE) return Error("saving target");
      t.Reset();
    }
    Stmt p(db_, "INSERT OR REPLACE INTO schedules(id, spec) VALUES(?, ?)");
    for (const v1::Schedule& schedule : put_schedules) {
      p.Bind(1, schedule.id()).BindBlob(2, schedule.SerializeAsString());
      if (p.Step() != SQLITE_DONE) return Error("saving schedule");
      p.Reset();
    }
    Stmt d(db_, "DELETE FROM schedules WHERE id = ?");
    for (const std::string& id : delete_ids) {
      d.Bind(1, id);
      if (d.Step() != SQLITE_DONE) return Error("deleting schedule");
      d.Reset();
    }
    return absl::OkStatus();
  }();
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return s;
  }
  return Exec("COMMIT");
}

absl::Status SqliteStore::AppendVerdict(const v1::Verdict& verdict) {
  absl::MutexLock lock(&mu_);
  FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = AppendVerdictLocked(verdict);
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) Exec("ROLLBACK").IgnoreError();
  return s;
}

absl::Status SqliteStore::AppendVerdictLocked(const v1::Verdict& verdict) {
  FC_RETURN_IF_ERROR(CheckFenceLocked());
  Stmt q(db_,
         "INSERT INTO verdicts(updated_us, kind, region, target, mode, "
         "size_class, state, verdict) VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
  q.Bind(1, TimestampToUnixMicros(verdict.updated()))
      .Bind(2, static_cast<int64_t>(verdict.kind()))
      .Bind(3, verdict.key().region())
      .Bind(4, verdict.key().target())
      .Bind(5, static_cast<int64_t>(verdict.key().mode()))
      .Bind(6, verdict.key().size_class())
      .Bind(7, static_cast<int64_t>(verdict.state()))
      .BindBlob(8, verdict.SerializeAsString());
  if (q.Step() != SQLITE_DONE) return Error("appending verdict");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Verdict>> SqliteStore::ListVerdicts(
    absl::Time since, size_t limit) {
  absl::MutexLock lock(&mu_);
  Stmt q(db_,
         "SELECT verdict FROM verdicts WHERE updated_us >= ? "
         "ORDER BY updated_us, id LIMIT ?");
  q.Bind(1, absl::ToUnixMicros(since)).Bind(2, static_cast<int64_t>(limit));
  std::vector<v1::Verdict> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    v1::Verdict v;
    if (!v.ParseFromString(q.Blob(0))) {
      return absl::DataLossError("unparseable verdict in store");
    }
    out.push_back(std::move(v));
  }
  if (rc != SQLITE_DONE) return Error("listing verdicts");
  return out;
}

absl::Status SqliteStore::SaveDetectorState(const std::string& blob) {
  absl::MutexLock lock(&mu_);
  FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    Stmt q(db_,
           "INSERT OR REPLACE INTO detector_state(id, state) VALUES(1, ?)");
    q.BindBlob(1, blob);
    if (q.Step() != SQLITE_DONE) return Error("saving detector state");
    return absl::OkStatus();
  }();
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) Exec("ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<std::string> SqliteStore::LoadDetectorState() {
  absl::MutexLock lock(&mu_);
  Stmt q(db_, "SELECT state FROM detector_state WHERE id = 1");
  const int rc = q.Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError("store: no detector state saved");
  }
  if (rc != SQLITE_ROW) return Error("loading detector state");
  return q.Blob(0);
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
