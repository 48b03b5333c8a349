// The plan of an ad-hoc probe run (internal to controller/api/; the public
// interface is admin_core.h): which regions a RunProbe request reaches,
// which URLs are probed there and which LIVE agents share the work.
//
// A registered target gives its regions (all, or the requested ones) and
// its URLs in the requested modes (default: both), plus its role_arn.
// Explicit urls must pass the target guard (the controller's allowlist plus
// the hosts of registered targets; an IP literal is also checked as the
// address it connects to) and go to every region with a LIVE agent, or to
// the requested regions when each is known (an agent connected from it or a
// target names it).
//
// Errors: INVALID_ARGUMENT naming the field (request checks as in
// admin_validation.h; no URL in the requested modes; more than
// max_probes_per_run probes), PERMISSION_DENIED for a URL outside the
// guard, NOT_FOUND for an unknown target or region, FAILED_PRECONDITION for
// a region without a LIVE agent.
//
// Thread-safety: as thread-safe as the Scheduler it reads.
#ifndef FLEETCANARY_CONTROLLER_API_PROBE_PLAN_H_
#define FLEETCANARY_CONTROLLER_API_PROBE_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net/target_guard.h"
#include "controller/fleet/scheduler.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {

// What one region of a run probes, and who does it.
struct RegionPlan {
  std::string region;
  std::vector<v1::FunctionUrl> urls;
  // LIVE agents of the region, sorted.
  std::vector<std::string> agents;
  // The registered target's role_arn (empty for explicit URLs).
  std::string role_arn;
};

// Validates `request` and resolves it against the fleet `scheduler` knows,
// explicit URLs against `guard` (plus the registered targets' hosts).
absl::StatusOr<std::vector<RegionPlan>> PlanProbeRun(
    const v1::RunProbeRequest& request, Scheduler* scheduler,
    const TargetGuardOptions& guard, uint64_t max_probes_per_run);

// Whether a registered target names `region`.
bool TargetsNameRegion(Scheduler* scheduler, const std::string& region);

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_PROBE_PLAN_H_
