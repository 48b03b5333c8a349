#include "cli/commands/report.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "analysis/report/report_builder.h"
#include "analysis/report/report_render.h"
#include "cli/commands/controller_client.h"
#include "cli/commands/time_flag.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

struct ReportFlags {
  ControllerFlags controller;
  std::string file;
  std::string target;
  std::string regions;
  std::string since;
  std::string from;
  std::string to;
  std::string fix_time;
  std::string format;
  std::string out = "-";
  uint32_t max_samples = 20;
};

// The window the flags ask for; infinite bounds when none was given.
struct Window {
  absl::Time from = absl::InfinitePast();
  absl::Time to = absl::InfiniteFuture();
  absl::Time fix = absl::InfinitePast();
};

absl::StatusOr<Window> ParseWindow(const ReportFlags& f, absl::Time now) {
  Window w;
  if (!f.since.empty() && (!f.from.empty() || !f.to.empty())) {
    return absl::InvalidArgumentError(
        "--since: give either --since or --from/--to");
  }
  if (!f.since.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDuration(f.since);
    if (!d.ok() || *d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--since: \"", f.since, "\" is not a positive duration (e.g. 6h)"));
    }
    w.from = now - *d;
    w.to = now;
  }
  if (!f.from.empty()) {
    absl::StatusOr<absl::Time> t = ParseTimeFlag("--from", f.from);
    if (!t.ok()) return t.status();
    w.from = *t;
  }
  if (!f.to.empty()) {
    absl::StatusOr<absl::Time> t = ParseTimeFlag("--to", f.to);
    if (!t.ok()) return t.status();
    w.to = *t;
  }
  if (!f.fix_time.empty()) {
    absl::StatusOr<absl::Time> t = ParseTimeFlag("--fix-time", f.fix_time);
    if (!t.ok()) return t.status();
    w.fix = *t;
  }
  if (w.from >= w.to) {
    return absl::InvalidArgumentError("--from: must be before --to");
  }
  return w;
}

std::vector<std::string> Regions(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view r : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    out.emplace_back(r);
  }
  return out;
}

int Write(const v1::IncidentReport& report, const ReportFlags& f,
          CliContext* ctx) {
  std::string text;
  if (f.format == "json") {
    text = report::RenderReportJson(report);
  } else if (f.format == "markdown") {
    text = report::RenderReportMarkdown(report);
  } else {
    text = report::RenderReportHtml(report);
  }
  if (f.out == "-") {
    *ctx->out << text;
    return kExitOk;
  }
  std::ofstream out(f.out, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return UsageError(ctx, "report",
                      absl::StrCat("--out: cannot write \"", f.out, "\""));
  }
  *ctx->err << "canaryctl report: wrote " << f.out << " (" << text.size()
            << " bytes)\n";
  return kExitOk;
}

int Offline(const ReportFlags& f, const Window& w, CliContext* ctx) {
  std::ifstream file;
  std::istream* in = nullptr;
  if (f.file == "-") {
    in = ctx->in != nullptr ? ctx->in : &std::cin;
  } else {
    file.open(f.file, std::ios::binary);
    if (!file) {
      return UsageError(ctx, "report",
                        absl::StrCat("--file: cannot read \"", f.file, "\""));
    }
    in = &file;
  }
  absl::StatusOr<report::ReportData> data =
      report::ReadReportData(*in, v1::DetectionConfig(), w.fix);
  if (!data.ok()) {
    return UsageError(ctx, "report",
                      absl::StrCat(f.file == "-" ? "stdin" : f.file, ": ",
                                   data.status().message()));
  }
  report::ReportOptions options;
  options.target = f.target;
  options.regions = Regions(f.regions);
  options.from = w.from;
  options.to = w.to;
  options.generated_at = ctx->clock->Now();
  options.source = f.file == "-" ? "outcomes from stdin" : f.file;
  options.max_samples = f.max_samples;
  absl::StatusOr<v1::IncidentReport> report =
      report::BuildIncidentReport(*data, options);
  if (!report.ok()) {
    return UsageError(ctx, "report", std::string(report.status().message()));
  }
  return Write(*report, f, ctx);
}

int Remote(const ReportFlags& f, const Window& w, CliContext* ctx) {
  v1::ReportRequest request;
  request.set_target(f.target);
  for (const std::string& r : Regions(f.regions)) request.add_regions(r);
  if (w.from != absl::InfinitePast()) {
    *request.mutable_from() = TimeToProto(w.from);
  }
  if (w.to != absl::InfiniteFuture()) *request.mutable_to() = TimeToProto(w.to);
  if (w.fix != absl::InfinitePast()) {
    *request.mutable_declared_fix_time() = TimeToProto(w.fix);
  }
  request.set_max_samples(f.max_samples);
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(f.controller);
  if (!client.ok()) {
    return UsageError(ctx, "report", std::string(client.status().message()));
  }
  v1::IncidentReport report;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status = (*client)->stub()->Report(&rpc, request, &report);
  if (!status.ok()) return (*client)->Fail(status, "report", ctx);
  return Write(report, f, ctx);
}

}  // namespace

void InstallReportCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<ReportFlags>();
  CLI::App* cmd = app->add_subcommand(
      "report",
      "The incident evidence report of a target (HTML, JSON or Markdown), "
      "from the controller's store or from an exported outcomes file");
  cmd->add_option("--target", flags->target, "Target name (required)");
  cmd->add_option("--regions,--region", flags->regions,
                  "Comma-separated regions (default: every region)");
  cmd->add_option("--since", flags->since,
                  "Window: the last DURATION (e.g. 6h)");
  cmd->add_option("--from", flags->from, "Window start (RFC 3339)");
  cmd->add_option("--to", flags->to, "Window end (RFC 3339)");
  cmd->add_option("--fix-time", flags->fix_time,
                  "Declared fix time (RFC 3339), as for analyze");
  cmd->add_option("--format", flags->format, "html|json|markdown (required)");
  cmd->add_option("--out,-o", flags->out, "Output file (\"-\" = stdout)")
      ->capture_default_str();
  cmd->add_option("--file", flags->file,
                  "Exported outcomes (JSON Lines, as analyze reads; \"-\" = "
                  "stdin): build the report offline");
  cmd->add_option("--max-samples", flags->max_samples,
                  "Sample request ids per list")
      ->capture_default_str();
  AddControllerFlags(cmd, &flags->controller);
  cmd->callback([flags, ctx, exit_code] {
    const ReportFlags& f = *flags;
    if (f.target.empty()) {
      *exit_code = UsageError(ctx, "report", "--target: required");
      return;
    }
    if (f.format != "html" && f.format != "json" && f.format != "markdown") {
      *exit_code = UsageError(ctx, "report",
                              absl::StrCat("--format: \"", f.format,
                                           "\" is not html, json or markdown"));
      return;
    }
    if (f.max_samples > 1000) {
      *exit_code = UsageError(ctx, "report", "--max-samples: at most 1000");
      return;
    }
    absl::StatusOr<Window> w = ParseWindow(f, ctx->clock->Now());
    if (!w.ok()) {
      *exit_code = UsageError(ctx, "report", std::string(w.status().message()));
      return;
    }
    if (f.file.empty() &&
        (w->from == absl::InfinitePast() || w->to == absl::InfiniteFuture())) {
      *exit_code = UsageError(
          ctx, "report",
          "--since: the controller needs a window (--since or --from/--to)");
      return;
    }
    *exit_code = f.file.empty() ? Remote(f, *w, ctx) : Offline(f, *w, ctx);
  });
}

}  // namespace cli
}  // namespace fleetcanary
