// `canaryctl schedules apply -f FILE | list | delete ID`: the controller's
// targets and schedules. `apply` sends a fleet file (YAML of
// fleetcanary.v1.FleetConfig, checked here first with file:line:field
// errors) as one declarative, idempotent ApplySchedules; `--prune` deletes
// the schedules the file does not name, `--dry-run` only reports.
#ifndef FLEETCANARY_CLI_COMMANDS_SCHEDULES_H_
#define FLEETCANARY_CLI_COMMANDS_SCHEDULES_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallSchedulesCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_SCHEDULES_H_
