// `canaryctl probe` through the controller (the default; --direct probes
// from this machine instead): sends RunProbe, shows progress as agents
// report, and prints one row per region x mode x size (or the final
// RunProbeEvent.Done as JSON). Ctrl-C cancels the call, which makes the
// controller stop its agents.
//
// Thread-safety: one run at a time per CliContext.
#ifndef FLEETCANARY_CLI_COMMANDS_PROBE_CONTROLLER_H_
#define FLEETCANARY_CLI_COMMANDS_PROBE_CONTROLLER_H_

#include <string>
#include <vector>

#include "cli/commands/command.h"
#include "cli/commands/controller_client.h"
#include "fleetcanary/v1/admin.pb.h"

namespace fleetcanary {
namespace cli {

struct ProbeControllerOptions {
  v1::RunProbeRequest request;
  // Exit 2 when any region x mode x size error rate is above this.
  double max_error_rate = 0;
  bool json = false;
  bool progress = false;  // Force the progress bar even if stderr is no TTY.
  // Also write every outcome as JSON Lines here ("" = don't).
  std::string outcomes_path;
};

// Returns kExitOk, kExitCheckFailed (an error rate above max_error_rate),
// kExitUsage (bad options, or the controller refused the request),
// kExitUnavailable (controller unreachable, agents lost, deadline) or
// kExitUnauthorized.
int RunProbeController(const ControllerFlags& connection,
                       const ProbeControllerOptions& options, CliContext* ctx);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_PROBE_CONTROLLER_H_
