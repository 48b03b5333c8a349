// `canaryctl agents`: the fleet as the controller sees it (ListAgents): one
// row per agent with region, zone, version, liveness, assignments and outbox
// depth, then the regions whose schedules have no live agent.
#ifndef FLEETCANARY_CLI_COMMANDS_AGENTS_H_
#define FLEETCANARY_CLI_COMMANDS_AGENTS_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallAgentsCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_AGENTS_H_
