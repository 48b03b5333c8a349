// Placement of schedule pairs on live agents: a pure function of the fleet
// configuration (targets, schedules) and the live agents of each region.
// No locking, no clock, no I/O; the scheduler (scheduler.h) owns the
// registry and calls it under its lock whenever either side changes.
//
// The unit of placement is a stream *pair* (schedule, region, size): both
// invoke modes of a size go to the same agent, interleaved half an interval
// apart, so each mode is the other's concurrent control. Within a region
// pairs are placed by rendezvous (highest random weight) hashing with
// bounded loads: each pair goes to its k = min(agents_per_region, agents)
// highest-scoring live agents whose load is below
// ceil(load_factor × slots / agents), so placement is balanced and moves
// little when agents join or leave. Start offsets are a stable hash-derived
// jitter within the interval. Hashes are the same in every process, so
// placements and offsets survive controller restarts.
//
// Thread-safety: the functions are pure; safe from any thread.
#ifndef FLEETCANARY_CONTROLLER_FLEET_PLACEMENT_H_
#define FLEETCANARY_CONTROLLER_FLEET_PLACEMENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {

// Whether schedule `s` probes `region` (an empty region list means all of
// its target's regions).
bool ScheduleCoversRegion(const v1::Schedule& s, const std::string& region);

// The AssignmentSet of every agent that gets work, keyed by agent id; the
// sets' version is left 0 (the caller versions them). Schedules whose target
// is unknown and regions without live agents place nothing.
// `live_by_region`: each region's LIVE agent ids, sorted (deterministic).
// `load_factor` >= 1 is the bounded-load slack; `rotation_period` is the
// turn length of size rotation (Schedule.size_rotation).
std::map<std::string, v1::AssignmentSet> PlaceAssignments(
    const std::map<std::string, v1::Target>& targets,
    const std::map<std::string, v1::Schedule>& schedules,
    const std::map<std::string, std::vector<std::string>>& live_by_region,
    double load_factor, absl::Duration rotation_period);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_FLEET_PLACEMENT_H_
