// `canaryctl analyze`: the verdict engine over recorded data.
//   canaryctl analyze FILE.jsonl [--fix-time T]   offline, on this machine:
//       JSON Lines of {"outcome": ...} / {"platform_sample": ...}
//       (analysis/offline.h); "-" reads stdin.
//   canaryctl analyze --controller ADDR [--from T --to T --fix-time T ...]
//       the controller's Analyze over its store.
// Prints the AnalysisReport as a table and timeline, or as JSON.
#ifndef FLEETCANARY_CLI_COMMANDS_ANALYZE_H_
#define FLEETCANARY_CLI_COMMANDS_ANALYZE_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

void InstallAnalyzeCommand(CLI::App* app, CliContext* ctx, int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_ANALYZE_H_
