#include "cli/commands/agents.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/commands/controller_client.h"
#include "cli/output/json.h"
#include "cli/ui/table.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace cli {
namespace {

struct AgentsFlags {
  ControllerFlags controller;
  std::string region;
  std::string output = "table";
};

// "12s ago" relative to `now`, or "-" for an unset time.
std::string Ago(const google::protobuf::Timestamp& t, absl::Time now) {
  if (!IsSet(t)) return "-";
  absl::Duration d = now - TimeFromProto(t);
  if (d < absl::Seconds(1)) return "<1s ago";
  return absl::StrCat(absl::FormatDuration(absl::Trunc(d, absl::Seconds(1))),
                      " ago");
}

std::string StateName(v1::AgentState s) {
  return s == v1::AGENT_STATE_UNSPECIFIED
             ? "-"
             : absl::AsciiStrToLower(v1::AgentState_Name(s));
}

int Run(const AgentsFlags& f, CliContext* ctx) {
  if (f.output != "table" && f.output != "json") {
    return UsageError(
        ctx, "agents",
        absl::StrCat("--output: \"", f.output, "\" is not table or json"));
  }
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(f.controller);
  if (!client.ok()) {
    return UsageError(ctx, "agents", std::string(client.status().message()));
  }
  v1::ListAgentsRequest request;
  request.set_region(f.region);
  v1::ListAgentsResponse response;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status = (*client)->stub()->ListAgents(&rpc, request, &response);
  if (!status.ok()) return (*client)->Fail(status, "agents", ctx);
  if (f.output == "json") {
    PrintJson(response, ctx->out);
    return kExitOk;
  }
  const absl::Time now = ctx->clock->Now();
  Table table({"AGENT", "REGION", "ZONE", "VERSION", "STATE", "ASSIGNMENTS",
               "OUTBOX", "DROPPED", "APPLIED-SEQ", "HEARTBEAT", "CONNECTED"},
              {Align::kLeft, Align::kLeft, Align::kLeft, Align::kLeft,
               Align::kLeft, Align::kRight, Align::kRight, Align::kRight,
               Align::kRight, Align::kRight, Align::kRight});
  for (const v1::AgentInfo& a : response.agents()) {
    table.AddRow({a.agent_id(), a.region(), a.zone().empty() ? "-" : a.zone(),
                  a.version().empty() ? "-" : a.version(), StateName(a.state()),
                  absl::StrCat(a.assignments()), absl::StrCat(a.outbox_depth()),
                  absl::StrCat(a.dropped_total()),
                  absl::StrCat(a.applied_sequence()),
                  Ago(a.last_heartbeat(), now), Ago(a.connected_since(), now)});
  }
  if (response.agents_size() == 0) {
    *ctx->out << "no agents"
              << (f.region.empty() ? "" : absl::StrCat(" in ", f.region))
              << "\n";
  } else {
    *ctx->out << table.Render();
  }
  if (response.regions_without_agents_size() > 0) {
    *ctx->err << "warning: regions with schedules but no live agent: "
              << absl::StrJoin(response.regions_without_agents(), ", ") << "\n";
  }
  return kExitOk;
}

}  // namespace

void InstallAgentsCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<AgentsFlags>();
  CLI::App* cmd = app->add_subcommand(
      "agents",
      "List the agents connected to the controller: region, zone, version, "
      "liveness, assignments, outbox depth");
  cmd->add_option("--region", flags->region, "Only agents of this region");
  cmd->add_option("--output,-o", flags->output, "table|json")
      ->capture_default_str();
  AddControllerFlags(cmd, &flags->controller);
  cmd->callback([flags, ctx, exit_code] { *exit_code = Run(*flags, ctx); });
}

}  // namespace cli
}  // namespace fleetcanary
