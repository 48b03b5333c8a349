// PostgresStore: the leader lease and write fencing.
#include <string>

#include "controller/store/postgres_store_impl.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {

absl::StatusOr<LeaderLease> PostgresStore::AcquireLease(
    const std::string& holder, const std::string& address, absl::Time now,
    absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  LeaderLease lease;
  FC_RETURN_IF_ERROR(InTransactionLocked(
      [&]() -> absl::Status {
        FC_RETURN_IF_ERROR(
            ExecLocked("INSERT INTO leases(name, holder, address, epoch, "
                       "expires_us) VALUES('leader', '', '', 0, $1) "
                       "ON CONFLICT (name) DO NOTHING",
                       {P(kLeaseNeverExpiresUs)})
                .status());
        FC_ASSIGN_OR_RETURN(lease, ReadLeaseLocked(/*for_update=*/true));
        if (!TakeOrRenewLease(&lease, holder, address, now, ttl)) {
          return absl::OkStatus();
        }
        return ExecLocked(
                   "UPDATE leases SET holder = $1, address = $2, epoch = $3, "
                   "expires_us = $4 WHERE name = 'leader'",
                   {P(holder), P(address), P(lease.epoch),
                    P(absl::ToUnixMicros(lease.expires))})
            .status();
      },
      /*fenced=*/false));
  return lease;
}

absl::StatusOr<LeaderLease> PostgresStore::ReadLease() {
  absl::MutexLock lock(&mu_);
  return ReadLeaseLocked(/*for_update=*/false);
}

absl::Status PostgresStore::ReleaseLease(const std::string& holder) {
  absl::MutexLock lock(&mu_);
  return ExecLocked(
             "UPDATE leases SET expires_us = $1 WHERE name = 'leader' AND "
             "holder = $2",
             {P(kLeaseNeverExpiresUs), P(holder)})
      .status();
}

void PostgresStore::SetFencingEpoch(int64_t epoch) {
  absl::MutexLock lock(&mu_);
  fence_epoch_ = epoch;
}

absl::StatusOr<LeaderLease> PostgresStore::ReadLeaseLocked(bool for_update) {
  FC_ASSIGN_OR_RETURN(
      Rows q,
      ExecLocked(for_update ? "SELECT holder, address, epoch, expires_us "
                              "FROM leases WHERE name = 'leader' FOR UPDATE"
                            : "SELECT holder, address, epoch, expires_us "
                              "FROM leases WHERE name = 'leader'"));
  LeaderLease lease;
  if (q.size() > 0) {
    lease.holder = q.Text(0, 0);
    lease.address = q.Text(0, 1);
    lease.epoch = q.Int(0, 2);
    lease.expires = LeaseExpiryFromMicros(q.Int(0, 3));
  }
  return lease;
}

absl::Status PostgresStore::CheckFenceLocked() {
  if (fence_epoch_ == 0) return absl::OkStatus();
  FC_ASSIGN_OR_RETURN(
      Rows q, ExecLocked("SELECT epoch FROM leases WHERE name = 'leader' "
                         "FOR SHARE"));
  const int64_t epoch = q.size() > 0 ? q.Int(0, 0) : 0;
  if (epoch != fence_epoch_) {
    return absl::FailedPreconditionError(
        absl::StrCat("postgres store: fenced: leader epoch ", fence_epoch_,
                     " superseded by ", epoch));
  }
  return absl::OkStatus();
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary
