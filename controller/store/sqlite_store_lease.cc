// SqliteStore: the leader lease and write fencing.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "controller/store/sqlite_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<LeaderLease> SqliteStore::AcquireLease(
    const std::string& holder, const std::string& address, absl::Time now,
    absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::StatusOr<LeaderLease> lease = ReadLeaseLocked();
  absl::Status s = lease.status();
  if (s.ok()) {
    if (TakeOrRenewLease(&*lease, holder, address, now, ttl)) {
      Stmt q(db_,
             "INSERT OR REPLACE INTO leases(name, holder, address, epoch, "
             "expires_us) VALUES('leader', ?, ?, ?, ?)");
      q.Bind(1, holder).Bind(2, address).Bind(3, lease->epoch);
      q.Bind(4, absl::ToUnixMicros(lease->expires));
      if (q.Step() != SQLITE_DONE) s = Error("taking the lease");
    }
  }
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return s;
  }
  return lease;
}

absl::StatusOr<LeaderLease> SqliteStore::ReadLease() {
  absl::MutexLock lock(&mu_);
  return ReadLeaseLocked();
}

absl::Status SqliteStore::ReleaseLease(const std::string& holder) {
  absl::MutexLock lock(&mu_);
  Stmt q(db_,
         "UPDATE leases SET expires_us = ? WHERE name = 'leader' AND "
         "holder = ?");
  q.Bind(1, kLeaseNeverExpiresUs).Bind(2, holder);
  if (q.Step() != SQLITE_DONE) return Error("releasing the lease");
  return absl::OkStatus();
}

void SqliteStore::SetFencingEpoch(int64_t epoch) {
  absl::MutexLock lock(&mu_);
  fence_epoch_ = epoch;
}

absl::StatusOr<LeaderLease> SqliteStore::ReadLeaseLocked() {
  Stmt q(db_,
         "SELECT holder, address, epoch, expires_us FROM leases "
         "WHERE name = 'leader'");
  LeaderLease lease;
  const int rc = q.Step();
  if (rc == SQLITE_ROW) {
    lease.holder = q.Text(0);
    lease.address = q.Text(1);
    lease.epoch = q.Int(2);
    lease.expires = LeaseExpiryFromMicros(q.Int(3));
  } else if (rc != SQLITE_DONE) {
    return Error("reading the lease");
  }
  return lease;
}

absl::Status SqliteStore::CheckFenceLocked() {
  if (fence_epoch_ == 0) return absl::OkStatus();
  FC_ASSIGN_OR_RETURN(LeaderLease lease, ReadLeaseLocked());
  if (lease.epoch != fence_epoch_) {
    return absl::FailedPreconditionError(
        absl::StrCat("sqlite store: fenced: leader epoch ", fence_epoch_,
                     " superseded by ", lease.epoch));
  }
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
