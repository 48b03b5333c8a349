// `canaryctl probe`: ad-hoc probes. With --direct the probes run from this
// machine through the agent's probe engine (probe_direct.h); probing through
// the controller's RunProbe API plugs into the same subcommand.
#ifndef FLEETCANARY_CLI_COMMANDS_PROBE_H_
#define FLEETCANARY_CLI_COMMANDS_PROBE_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallProbeCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_PROBE_H_
