#include "cli/app.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands/agents.h"
#include "cli/commands/analyze.h"
#include "cli/commands/probe.h"
#include "cli/commands/report.h"
#include "cli/commands/schedules.h"
#include "cli/commands/verdicts.h"
#include "common/build/build_info.h"

namespace fleetcanary {
namespace cli {
namespace {

// Every subcommand, in the order `canaryctl --help` lists them.
constexpr CommandInstaller kCommands[] = {
    InstallProbeCommand,    InstallAgentsCommand,  InstallSchedulesCommand,
    InstallVerdictsCommand, InstallAnalyzeCommand, InstallReportCommand,
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

// The long names of an app's options ("--output", hidden aliases left out).
std::vector<std::string> OptionNames(const CLI::App* app) {
  std::vector<std::string> out;
  for (const CLI::Option* o : app->get_options()) {
    if (o->get_group().empty()) continue;  // Hidden (old spellings).
    for (const std::string& name : o->get_lnames()) out.push_back("--" + name);
    for (const std::string& name : o->get_snames()) out.push_back("-" + name);
  }
  return out;
}

std::vector<const CLI::App*> Subcommands(const CLI::App* app) {
  std::vector<const CLI::App*> out;
  for (const CLI::App* sub :
       app->get_subcommands([](const CLI::App*) { return true; })) {
    out.push_back(sub);
  }
  return out;
}

// A bash completion function generated from the app itself, so it always
// knows every command and flag; zsh runs it through bashcompinit.
std::string CompletionScript(const CLI::App& app, bool zsh) {
  std::vector<std::string> top;
  for (const CLI::App* sub : Subcommands(&app)) top.push_back(sub->get_name());
  std::string script;
  if (zsh) {
    script +=
        "#compdef canaryctl\n"
        "autoload -U +X bashcompinit && bashcompinit\n";
  }
  script += absl::StrCat("# canaryctl completion (", zsh ? "zsh" : "bash",
                         "): source <(canaryctl completion ",
                         zsh ? "zsh" : "bash", ")\n",
                         "_canaryctl() {\n"
                         "  local cur=${COMP_WORDS[COMP_CWORD]}\n"
                         "  local words=\"\"\n"
                         "  if [[ $COMP_CWORD -eq 1 ]]; then\n"
                         "    words=\"",
                         absl::StrJoin(top, " "), " --help --version\"\n",
                         "  else\n"
                         "    case \"${COMP_WORDS[1]}\" in\n");
  for (const CLI::App* sub : Subcommands(&app)) {
    std::vector<std::string> words = OptionNames(sub);
    std::vector<std::string> nested;
    for (const CLI::App* n : Subcommands(sub)) {
      nested.push_back(n->get_name());
      absl::StrAppend(&script, "      ", sub->get_name(), ")\n");
      break;
    }
    if (!nested.empty()) {
      // Commands with their own subcommands: the second word is one of them.
      nested.clear();
      std::string cases;
      for (const CLI::App* n : Subcommands(sub)) {
        nested.push_back(n->get_name());
        absl::StrAppend(&cases, "          ", n->get_name(), ") words=\"",
                        absl::StrJoin(OptionNames(n), " "), "\";;\n");
      }
      absl::StrAppend(&script,
                      "        if [[ $COMP_CWORD -eq 2 ]]; then words=\"",
                      absl::StrJoin(nested, " "), "\"; else\n",
                      "        case \"${COMP_WORDS[2]}\" in\n", cases,
                      "        esac; fi;;\n");
      continue;
    }
    absl::StrAppend(&script, "      ", sub->get_name(), ") words=\"",
                    absl::StrJoin(words, " "), "\";;\n");
  }
  absl::StrAppend(&script,
                  "    esac\n"
                  "  fi\n"
                  "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
                  "}\n"
                  "complete -o default -F _canaryctl canaryctl\n");
  return script;
}

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
  app.set_version_flag("--version", VersionLine("canaryctl"));
  CLI::App* version =
      app.add_subcommand("version", "Print version and git revision");
  version->callback([ctx] { *ctx->out << VersionLine("canaryctl") << "\n"; });
  CLI::App* completion = app.add_subcommand(
      "completion",
      "Print a shell completion script: source <(canaryctl completion bash), "
      "or for zsh: source <(canaryctl completion zsh)");
  auto shell = std::make_shared<std::string>();
  completion->add_option("shell", *shell, "bash|zsh")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh"}));
  completion->callback([ctx, shell, &app] {
    *ctx->out << CompletionScript(app, *shell == "zsh");
  });
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
  } catch (const CLI::CallForVersion& e) {
    *ctx->out << VersionLine("canaryctl") << "\n";
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
