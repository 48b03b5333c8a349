// `canaryctl verdicts [--watch]`: the controller's current verdicts
// (GetVerdicts; non-healthy only unless --all), or with --watch the current
// ones and then every transition as it happens (WatchVerdicts), until
// interrupted.
#ifndef FLEETCANARY_CLI_COMMANDS_VERDICTS_H_
#define FLEETCANARY_CLI_COMMANDS_VERDICTS_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallVerdictsCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_VERDICTS_H_
