#include "cli/commands/analyze.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "analysis/offline.h"
#include "cli/commands/controller_client.h"
#include "cli/commands/time_flag.h"
#include "cli/commands/verdict_format.h"
#include "cli/output/json.h"
#include "cli/ui/progress_bar.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace cli {
namespace {

struct AnalyzeFlags {
  ControllerFlags controller;
  std::string file;
  std::string fix_time;
  std::string from;
  std::string to;
  std::string region;
  std::string target;
  std::string mode;
  std::string size_class;
  std::string output = "table";
  bool progress = false;
};

// Reads a file through, reporting bytes read to a progress bar.
class ProgressStreamBuf : public std::streambuf {
 public:
  ProgressStreamBuf(std::istream* in, ProgressBar* bar) : in_(in), bar_(bar) {}

 protected:
  int_type underflow() override {
    in_->read(buffer_, sizeof(buffer_));
    const std::streamsize n = in_->gcount();
    if (n <= 0) return traits_type::eof();
    done_ += static_cast<uint64_t>(n);
    bar_->Update(done_, 0);
    setg(buffer_, buffer_, buffer_ + n);
    return traits_type::to_int_type(buffer_[0]);
  }

 private:
  std::istream* const in_;
  ProgressBar* const bar_;
  char buffer_[1 << 16];
  uint64_t done_ = 0;
};

void Print(const v1::AnalysisReport& report, const AnalyzeFlags& f,
           CliContext* ctx) {
  if (f.output == "json") {
    PrintJson(report, ctx->out);
  } else {
    *ctx->out << ReportText(report);
  }
}

int Offline(const AnalyzeFlags& f, CliContext* ctx) {
  const std::string command = "analyze";
  analysis::AnalyzeOptions options;
  if (!f.fix_time.empty()) {
    absl::StatusOr<absl::Time> t = ParseTimeFlag("--fix-time", f.fix_time);
    if (!t.ok())
      return UsageError(ctx, command, std::string(t.status().message()));
    options.declared_fix_time = *t;
  }
  if (!f.from.empty() || !f.to.empty() || !f.region.empty() ||
      !f.target.empty() || !f.mode.empty() || !f.size_class.empty()) {
    return UsageError(ctx, command,
                      "--from/--to/--region/--target/--mode/--size-class "
                      "select data in the controller's store; with a FILE "
                      "the whole file is analyzed");
  }
  absl::StatusOr<v1::AnalysisReport> report;
  if (f.file == "-") {
    report = analysis::AnalyzeJsonLines(
        ctx->in != nullptr ? *ctx->in : std::cin, options);
  } else {
    std::ifstream in(f.file, std::ios::binary);
    if (!in) {
      return UsageError(ctx, command,
                        absl::StrCat("cannot read \"", f.file, "\""));
    }
    in.seekg(0, std::ios::end);
    const std::streamoff size = std::max<std::streamoff>(in.tellg(), 0);
    in.seekg(0);
    ProgressBar bar(ctx->err, ctx->clock, static_cast<uint64_t>(size),
                    f.progress || (ctx->err_is_tty && size > (8 << 20)));
    ProgressStreamBuf buf(&in, &bar);
    std::istream counted(&buf);
    report = analysis::AnalyzeJsonLines(counted, options);
    bar.Finish();
  }
  if (!report.ok()) {
    return UsageError(ctx, command,
                      absl::StrCat(f.file == "-" ? "stdin" : f.file, ": ",
                                   report.status().message()));
  }
  Print(*report, f, ctx);
  return kExitOk;
}

int Remote(const AnalyzeFlags& f, CliContext* ctx) {
  const std::string command = "analyze";
  v1::AnalyzeRequest request;
  for (const auto& [flag, text, field] :
       std::vector<std::tuple<const char*, const std::string*,
                              google::protobuf::Timestamp*>>{
           {"--from", &f.from, request.mutable_from()},
           {"--to", &f.to, request.mutable_to()},
           {"--fix-time", &f.fix_time, request.mutable_declared_fix_time()}}) {
    if (text->empty()) continue;
    absl::StatusOr<absl::Time> t = ParseTimeFlag(flag, *text);
    if (!t.ok())
      return UsageError(ctx, command, std::string(t.status().message()));
    *field = TimeToProto(*t);
  }
  if (f.from.empty()) request.clear_from();
  if (f.to.empty()) request.clear_to();
  if (f.fix_time.empty()) request.clear_declared_fix_time();
  absl::StatusOr<v1::InvokeMode> mode = ParseMode("--mode", f.mode);
  if (!mode.ok())
    return UsageError(ctx, command, std::string(mode.status().message()));
  request.mutable_filter()->set_region(f.region);
  request.mutable_filter()->set_target(f.target);
  request.mutable_filter()->set_mode(*mode);
  request.mutable_filter()->set_size_class(f.size_class);
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(f.controller);
  if (!client.ok()) {
    return UsageError(ctx, command, std::string(client.status().message()));
  }
  v1::AnalysisReport report;
  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc);
  grpc::Status status = (*client)->stub()->Analyze(&rpc, request, &report);
  if (!status.ok()) return (*client)->Fail(status, command, ctx);
  Print(report, f, ctx);
  return kExitOk;
}

}  // namespace

void InstallAnalyzeCommand(CLI::App* app, CliContext* ctx, int* exit_code) {
  auto flags = std::make_shared<AnalyzeFlags>();
  CLI::App* cmd = app->add_subcommand(
      "analyze",
      "Run the verdict engine over exported outcomes and platform samples "
      "(FILE.jsonl, offline) or over the controller's store (no FILE)");
  cmd->add_option("file", flags->file,
                  "JSON Lines of {\"outcome\":...} / {\"platform_sample\":...} "
                  "(\"-\" = stdin); without it, ask the controller");
  cmd->add_option("--fix-time", flags->fix_time,
                  "Declared fix time (RFC 3339): fix confirmation counts only "
                  "probes after it");
  cmd->add_option("--from", flags->from, "Controller mode: start (RFC 3339)");
  cmd->add_option("--to", flags->to, "Controller mode: end (RFC 3339)");
  cmd->add_option("--region", flags->region,
                  "Controller mode: only this region");
  cmd->add_option("--target", flags->target,
                  "Controller mode: only this target");
  cmd->add_option("--mode", flags->mode,
                  "Controller mode: only this invoke mode (buffered|stream)");
  cmd->add_option("--size-class", flags->size_class,
                  "Controller mode: only this size class (e.g. 1KiB)");
  cmd->add_option("--output,-o", flags->output, "table|json")
      ->capture_default_str();
  cmd->add_flag("--progress", flags->progress,
                "Show the progress bar even when stderr is not a terminal");
  AddControllerFlags(cmd, &flags->controller);
  cmd->callback([flags, ctx, exit_code] {
    if (flags->output != "table" && flags->output != "json") {
      *exit_code = UsageError(ctx, "analyze",
                              absl::StrCat("--output: \"", flags->output,
                                           "\" is not table or json"));
      return;
    }
    *exit_code =
        flags->file.empty() ? Remote(*flags, ctx) : Offline(*flags, ctx);
  });
}

}  // namespace cli
}  // namespace fleetcanary
