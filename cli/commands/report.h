// `canaryctl report`: the incident evidence report (docs/report.md).
//   canaryctl report --target T [--regions a,b]
//       [--since DURATION | --from T1 --to T2] [--fix-time T]
//       --format html|json|markdown [--out FILE]
//     asks the controller's Report RPC (built from its store);
//   canaryctl report --file OUTCOMES.jsonl --target T ...
//     builds the same report on this machine from an exported outcomes file
//     (the `canaryctl analyze` input) with the same builder
//     (analysis/report/report_builder.h).
// Writes the report to --out (default "-", stdout).
#ifndef FLEETCANARY_CLI_COMMANDS_REPORT_H_
#define FLEETCANARY_CLI_COMMANDS_REPORT_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallReportCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_REPORT_H_
