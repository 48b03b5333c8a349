// What every canaryctl subcommand gets, and how it plugs into the app.
//
// A subcommand is one InstallXxxCommand() function that adds itself to the
// CLI11 app and, when chosen, runs and stores its exit code. Adding a command
// (agents, schedules, verdicts, analyze, ...) = one more file under
// cli/commands/ and one line in kCommands (cli/app.cc).
//
// Exit codes shared by every command: 0 success, 1 usage error or a request
// the controller refused as wrong (a message a person can act on is printed
// to err), 2 the check failed (e.g. error rate above --max-error-rate), 3
// could not run (network, server, deadline), 4 not authorized (token
// missing, unknown, or without the role).
#ifndef FLEETCANARY_CLI_COMMANDS_COMMAND_H_
#define FLEETCANARY_CLI_COMMANDS_COMMAND_H_

#include <istream>
#include <ostream>

#include "common/time/clock.h"

namespace CLI {
class App;
}  // namespace CLI

namespace fleetcanary {
namespace cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitCheckFailed = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitUnauthorized = 4;
// Interrupted by Ctrl-C (128 + SIGINT), after printing what was done.
inline constexpr int kExitInterrupted = 130;

// Process environment of one canaryctl run (tests pass string streams).
struct CliContext {
  std::ostream* out = nullptr;  // Results (tables, JSON).
  std::ostream* err = nullptr;  // Progress, warnings, errors.
  std::istream* in = nullptr;   // `-f -` / `FILE -` input (null: std::cin).
  bool err_is_tty = false;      // Progress bar by default only on a TTY.
  Clock* clock = nullptr;
};

// Adds one subcommand to `app`. When the subcommand runs, it writes its exit
// code to *exit_code. `ctx` and `exit_code` outlive the app.
using CommandInstaller = void (*)(CLI::App* app, CliContext* ctx,
                                  int* exit_code);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_COMMAND_H_
