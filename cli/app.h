// canaryctl: the operator CLI. RunCanaryctl() is the whole program minus
// process setup, so tests run it in-process with string streams.
//
// Thread-safety: one call at a time per CliContext.
#ifndef FLEETCANARY_CLI_APP_H_
#define FLEETCANARY_CLI_APP_H_

#include "cli/commands/command.h"

namespace fleetcanary {
namespace cli {

// Parses argv (argv[0] is the program name), runs the chosen subcommand and
// returns the exit code (see command.h). Usage errors print what to fix.
int RunCanaryctl(int argc, const char* const* argv, CliContext* ctx);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_APP_H_
