#include "cli/app.h"

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "cli/commands/agents.h"
#include "cli/commands/analyze.h"
#include "cli/commands/probe.h"
#include "cli/commands/schedules.h"
#include "cli/commands/verdicts.h"

namespace fleetcanary {
namespace cli {
namespace {

// Every subcommand, in the order `canaryctl --help` lists them.
constexpr CommandInstaller kCommands[] = {
    InstallProbeCommand,    InstallAgentsCommand,  InstallSchedulesCommand,
    InstallVerdictsCommand, InstallAnalyzeCommand,
};

constexpr char kFooter[] =
    "Controller commands connect to --controller HOST:PORT (env "
    "FLEETCANARY_CONTROLLER, default 127.0.0.1:7443) with the bearer token "
    "of --token-file (env FLEETCANARY_TOKEN); --insecure for a plaintext "
    "controller, --ca FILE for its CA, --cert/--key (env "
    "FLEETCANARY_CERT/FLEETCANARY_KEY) for a port that asks for a client "
    "certificate (mutual TLS).\n\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  usage error, or a request the controller refused as wrong "
    "(bad field, unknown target/region, no live agent)\n"
    "  2  the check failed (an error rate above --max-error-rate)\n"
    "  3  could not run: controller unreachable or failing, deadline, "
    "agents lost\n"
    "  4  not authorized: token missing, unknown, or without the role\n\n"
    "Run 'canaryctl <command> --help' for a command's flags.";

}  // namespace

int RunCanaryctl(int argc, const char* const* argv, CliContext* ctx) {
  CLI::App app(
      "canaryctl: operate fleetcanary (probes, agents, schedules, "
      "verdicts, analysis)",
      "canaryctl");
  app.require_subcommand(1);
  app.footer(kFooter);
  int exit_code = kExitOk;
  for (CommandInstaller install : kCommands) install(&app, ctx, &exit_code);
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    bool known = false;
    for (const CLI::App* sub :
         app.get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
      known = known || sub->get_name() == argv[1];
    }
    if (!known) {
      *ctx->err << "canaryctl: unknown command \"" << argv[1]
                << "\"; commands: " << absl::StrJoin(names, ", ")
                << ". Run 'canaryctl --help' for usage.\n";
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    *ctx->out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp& e) {
    *ctx->out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    *ctx->err << "canaryctl: " << e.what() << "\n"
              << "Run 'canaryctl --help' (or 'canaryctl <command> --help') "
                 "for usage.\n";
    return kExitUsage;
  }
  return exit_code;
}

}  // namespace cli
}  // namespace fleetcanary
