// Leader election among controller replicas that share one store
// (PostgreSQL): the replica holding the store's lease is the leader; it
// schedules, ingests and runs verdicts. Every write of the leader's Store is
// fenced with the lease epoch it won (Store::SetFencingEpoch), so a leader
// that stalls past its lease and wakes up after a successor took over cannot
// change the data.
//
// The elector renews the lease every renew_interval. It gives leadership up
// (on_lost, once) when another replica holds the lease, when the epoch
// changed under it, or when it could not renew before the lease ran out
// (store unreachable). The controller then exits and comes back as a standby
// (crash-only: no in-process demotion to reason about).
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_LEADER_LEADER_ELECTOR_H_
#define FLEETCANARY_CONTROLLER_LEADER_LEADER_ELECTOR_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {

struct LeaderElectorOptions {
  // Lease holder name, unique per replica (e.g. pod name).
  std::string replica_id;
  // Where agents reach this replica ("host:port"), told to agents that
  // connect to another replica.
  std::string address;
  // How long a lease lasts without renewal: a dead leader is replaced
  // within about this long.
  absl::Duration lease = absl::Seconds(10);
  // How often the lease is renewed (or tried for); 0 = lease / 4.
  absl::Duration renew_interval = absl::ZeroDuration();
  // Called once, on the elector's thread, when leadership is lost.
  std::function<void()> on_lost;
};

class LeaderElector {
 public:
  virtual ~LeaderElector() = default;

  // Starts trying for the lease. `store`, `metrics`, `clock` must outlive it.
  // INVALID_ARGUMENT for an empty replica_id/address or lease <= 0.
  static absl::StatusOr<std::unique_ptr<LeaderElector>> Create(
      const LeaderElectorOptions& options, Store* store,
      ControllerMetrics* metrics, Clock* clock);

  // Blocks until this replica is the leader; its store is then fenced with
  // the lease's epoch. CANCELLED after Shutdown().
  virtual absl::StatusOr<LeaderLease> AwaitLeadership() = 0;
  virtual bool is_leader() = 0;
  // The lease as last read (the leader's address for agents).
  virtual LeaderLease lease() = 0;

  // Stops renewing; releases the lease when held, so a successor need not
  // wait for it to expire. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_LEADER_LEADER_ELECTOR_H_
