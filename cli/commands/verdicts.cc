#include "cli/commands/verdicts.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands/controller_client.h"
#include "cli/commands/verdict_format.h"
#include "cli/output/json.h"

namespace fleetcanary {
namespace cli {
namespace {

struct VerdictsFlags {
  ControllerFlags controller;
  std::string region;
  std::string target;
  std::string mode;
  std::string size_class;
  bool all = false;
  bool watch = false;
  std::string output = "table";
};

int Run(const VerdictsFlags& f, CliContext* ctx) {
  const std::string command = "verdicts";
  if (f.output != "table" && f.output != "json") {
    return UsageError(
        ctx, command,
        absl::StrCat("--output: \"", f.output, "\" is not table or json"));
  }
  absl::StatusOr<v1::InvokeMode> mode = ParseMode("--mode", f.mode);
  if (!mode.ok())
    return UsageError(ctx, command, std::string(mode.status().message()));
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(f.controller);
  if (!client.ok()) {
    return UsageError(ctx, command, std::string(client.status().message()));
  }
  v1::StreamKey filter;
  filter.set_region(f.region);
  filter.set_target(f.target);
  filter.set_mode(*mode);
  filter.set_size_class(f.size_class);

  if (f.watch) {
    v1::WatchVerdictsRequest request;
    *request.mutable_filter() = filter;
    grpc::ClientContext rpc;
    (*client)->Prepare(&rpc, /*with_deadline=*/false);
    std::unique_ptr<grpc::ClientReader<v1::Verdict>> reader =
        (*client)->stub()->WatchVerdicts(&rpc, request);
    v1::Verdict v;
    while (reader->Read(&v)) {
      // As without --watch: healthy streams only with --all, but a return
      // to HEALTHY is a transition worth a line.
      if (!f.all && v.state() == v1::HEALTHY &&
          (v.previous_state() == v1::VERDICT_STATE_UNSPECIFIED ||
           v.previous_state() == v1::HEALTHY)) {
        continue;
      }
      if (f.output == "json") {
        *ctx->out << FriendlyJson(v, /*pretty=*/false) << "\n";
      } else {
        *ctx->out << TransitionLine(v);
      }
      ctx->out->flush();
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return (*client)->Fail(status, command, ctx);
    return kExitOk;
  }

  v1::GetVerdictsRequest request;
  *request.mutable_filter() = filter;
  request.set_include_healthy(f.all);
  v1::GetVerdictsResponse response;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status =
      (*client)->stub()->GetVerdicts(&rpc, request, &response);
  if (!status.ok()) return (*client)->Fail(status, command, ctx);
  if (f.output == "json") {
    PrintJson(response, ctx->out);
    return kExitOk;
  }
  if (response.verdicts_size() == 0) {
    *ctx->out << (f.all ? "no verdicts yet\n"
                        : "no verdict other than healthy (--all shows "
                          "every stream)\n");
    return kExitOk;
  }
  *ctx->out << VerdictTable(std::vector<v1::Verdict>(
      response.verdicts().begin(), response.verdicts().end()));
  return kExitOk;
}

}  // namespace

void InstallVerdictsCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<VerdictsFlags>();
  CLI::App* cmd = app->add_subcommand(
      "verdicts",
      "Show the controller's verdicts (only non-healthy unless --all); "
      "--watch follows every transition");
  cmd->add_option("--region", flags->region, "Only this region");
  cmd->add_option("--target", flags->target, "Only this target");
  cmd->add_option("--mode", flags->mode,
                  "Only this invoke mode: buffered|stream");
  cmd->add_option("--size-class", flags->size_class,
                  "Only this size class, e.g. 1KiB");
  cmd->add_flag("--all", flags->all, "Include healthy verdicts");
  cmd->add_flag("--watch,-w", flags->watch,
                "Print current verdicts, then each transition as it happens "
                "(Ctrl-C stops)");
  cmd->add_option("--output,-o", flags->output,
                  "table|json (with --watch: one JSON object per line)")
      ->capture_default_str();
  AddControllerFlags(cmd, &flags->controller);
  cmd->callback([flags, ctx, exit_code] { *exit_code = Run(*flags, ctx); });
}

}  // namespace cli
}  // namespace fleetcanary
