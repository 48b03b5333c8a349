#include "cli/commands/schedules.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands/controller_client.h"
#include "cli/output/json.h"
#include "cli/ui/table.h"
#include "common/config/loader.h"
#include "common/proto/invoke_mode.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

struct SchedulesFlags {
  ControllerFlags controller;
  std::string file;
  bool prune = false;
  bool dry_run = false;
  std::string id;
  std::string output = "table";
};

absl::StatusOr<std::unique_ptr<ControllerClient>> Connect(
    const SchedulesFlags& f, CliContext* ctx, const std::string& command,
    int* exit_code) {
  if (f.output != "table" && f.output != "json") {
    *exit_code = UsageError(
        ctx, command,
        absl::StrCat("--output: \"", f.output, "\" is not table or json"));
    return absl::InvalidArgumentError("output");
  }
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(f.controller);
  if (!client.ok()) {
    *exit_code =
        UsageError(ctx, command, std::string(client.status().message()));
  }
  return client;
}

int Apply(const SchedulesFlags& f, CliContext* ctx) {
  const std::string command = "schedules apply";
  v1::FleetConfig fleet;
  absl::Status loaded;
  if (f.file == "-") {
    // `-f -`: the fleet file from stdin (e.g. a generated or templated one).
    std::ostringstream text;
    text << (ctx->in != nullptr ? ctx->in->rdbuf() : std::cin.rdbuf());
    loaded = ParseYamlToMessage(text.str(), "stdin", &fleet);
  } else {
    loaded = LoadYamlFile(f.file, &fleet);
  }
  if (!loaded.ok()) {
    return UsageError(ctx, command, std::string(loaded.message()));
  }
  int exit_code = kExitOk;
  auto client = Connect(f, ctx, command, &exit_code);
  if (!client.ok()) return exit_code;
  v1::ApplySchedulesRequest request;
  *request.mutable_targets() = fleet.targets();
  *request.mutable_schedules() = fleet.schedules();
  request.set_prune(f.prune);
  request.set_dry_run(f.dry_run);
  v1::ApplySchedulesResponse response;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status =
      (*client)->stub()->ApplySchedules(&rpc, request, &response);
  if (!status.ok()) {
    grpc::Status annotated(status.error_code(),
                           absl::StrCat(f.file == "-" ? "stdin" : f.file, ": ",
                                        status.error_message()));
    return (*client)->Fail(
        status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? annotated
                                                                  : status,
        command, ctx);
  }
  if (f.output == "json") {
    PrintJson(response, ctx->out);
  } else {
    Table table({"SCHEDULE", "ACTION"});
    auto rows = [&](const auto& ids, const char* action) {
      for (const std::string& id : ids) table.AddRow({id, action});
    };
    const char* suffix = f.dry_run ? " (dry run)" : "";
    rows(response.created(), f.dry_run ? "would create" : "created");
    rows(response.updated(), f.dry_run ? "would update" : "updated");
    rows(response.unchanged(), "unchanged");
    rows(response.deleted(), f.dry_run ? "would delete" : "deleted");
    *ctx->out << table.Render();
    *ctx->out << fleet.targets_size() << " target(s), "
              << fleet.schedules_size() << " schedule(s) applied" << suffix
              << "\n";
  }
  if (response.regions_without_agents_size() > 0) {
    *ctx->err << "warning: no live agent yet in: "
              << absl::StrJoin(response.regions_without_agents(), ", ")
              << " (their streams start when an agent connects)\n";
  }
  return kExitOk;
}

int List(const SchedulesFlags& f, CliContext* ctx) {
  int exit_code = kExitOk;
  auto client = Connect(f, ctx, "schedules list", &exit_code);
  if (!client.ok()) return exit_code;
  v1::ListSchedulesResponse response;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status = (*client)->stub()->ListSchedules(
      &rpc, v1::ListSchedulesRequest(), &response);
  if (!status.ok()) return (*client)->Fail(status, "schedules list", ctx);
  if (f.output == "json") {
    PrintJson(response, ctx->out);
    return kExitOk;
  }
  Table targets({"TARGET", "REGIONS", "MODES"});
  for (const v1::Target& t : response.targets()) {
    std::vector<std::string> regions;
    std::vector<std::string> modes;
    for (const v1::RegionEndpoints& r : t.regions()) {
      regions.push_back(r.region());
      if (modes.empty()) {
        for (const v1::FunctionUrl& u : r.urls())
          modes.push_back(InvokeModeName(u.mode(), "?"));
      }
    }
    targets.AddRow(
        {t.name(), absl::StrJoin(regions, ","), absl::StrJoin(modes, ",")});
  }
  Table schedules({"SCHEDULE", "TARGET", "REGIONS", "MODES", "SIZES", "RATE/S",
                   "AGENTS/REGION"},
                  {Align::kLeft, Align::kLeft, Align::kLeft, Align::kLeft,
                   Align::kLeft, Align::kRight, Align::kRight});
  for (const v1::Schedule& s : response.schedules()) {
    std::vector<std::string> modes, sizes;
    for (int m : s.modes()) {
      modes.push_back(InvokeModeName(static_cast<v1::InvokeMode>(m), "?"));
    }
    for (uint64_t b : s.sizes()) sizes.push_back(FormatBytes(b));
    schedules.AddRow(
        {s.id(), s.target(),
         s.regions().empty() ? "all" : absl::StrJoin(s.regions(), ","),
         modes.empty() ? "both" : absl::StrJoin(modes, ","),
         absl::StrJoin(sizes, ","), absl::StrCat(s.rate_per_second()),
         absl::StrCat(s.agents_per_region() == 0 ? 1 : s.agents_per_region())});
  }
  if (response.targets_size() == 0) {
    *ctx->out << "no targets\n";
  } else {
    *ctx->out << targets.Render();
  }
  *ctx->out << "\n";
  if (response.schedules_size() == 0) {
    *ctx->out << "no schedules\n";
  } else {
    *ctx->out << schedules.Render();
  }
  return kExitOk;
}

int Delete(const SchedulesFlags& f, CliContext* ctx) {
  int exit_code = kExitOk;
  auto client = Connect(f, ctx, "schedules delete", &exit_code);
  if (!client.ok()) return exit_code;
  v1::DeleteScheduleRequest request;
  request.set_id(f.id);
  v1::DeleteScheduleResponse response;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status =
      (*client)->stub()->DeleteSchedule(&rpc, request, &response);
  if (!status.ok()) return (*client)->Fail(status, "schedules delete", ctx);
  *ctx->out << "deleted schedule " << f.id << "\n";
  return kExitOk;
}

}  // namespace

void InstallSchedulesCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<SchedulesFlags>();
  CLI::App* cmd = app->add_subcommand(
      "schedules", "Apply, list and delete the controller's probe schedules");
  cmd->require_subcommand(1);

  CLI::App* apply = cmd->add_subcommand(
      "apply",
      "Create or replace the targets and schedules of a fleet file (YAML of "
      "fleetcanary.v1.FleetConfig); idempotent, all or nothing");
  apply
      ->add_option("-f,--file", flags->file, "Fleet file (YAML); - reads stdin")
      ->required()
      // "-" is stdin, not a file name.
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            return v == "-" ? std::string() : CLI::ExistingFile(v);
          },
          "FILE|-"));
  apply->add_flag("--prune", flags->prune,
                  "Also delete the schedules the file does not name");
  apply->add_flag("--dry-run", flags->dry_run,
                  "Validate and report what would change; change nothing");
  apply->add_option("--output,-o", flags->output, "table|json")
      ->capture_default_str();
  AddControllerFlags(apply, &flags->controller);
  apply->callback([flags, ctx, exit_code] { *exit_code = Apply(*flags, ctx); });

  CLI::App* list =
      cmd->add_subcommand("list", "Show the registered targets and schedules");
  list->add_option("--output,-o", flags->output, "table|json")
      ->capture_default_str();
  AddControllerFlags(list, &flags->controller);
  list->callback([flags, ctx, exit_code] { *exit_code = List(*flags, ctx); });

  CLI::App* del = cmd->add_subcommand(
      "delete", "Delete one schedule (its probes stop on every agent)");
  del->add_option("id", flags->id, "Schedule id")->required();
  AddControllerFlags(del, &flags->controller);
  del->callback([flags, ctx, exit_code] { *exit_code = Delete(*flags, ctx); });
}

}  // namespace cli
}  // namespace fleetcanary
