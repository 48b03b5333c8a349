#include "cli/commands/probe_controller.h"

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "analysis/probe_summary.h"
#include "cli/commands/probe_table.h"
#include "cli/output/json.h"
#include "cli/ui/progress_bar.h"
#include "cli/ui/sigint_flag.h"
#include "common/proto/invoke_mode.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
int RunProbeController(const ControllerFlags& connection,
                       const ProbeControllerOptions& options, CliContext* ctx) {
  const std::string command = "probe";
  absl::StatusOr<std::unique_ptr<ControllerClient>> client =
      ControllerClient::Create(connection);
  if (!client.ok()) {
    return UsageError(ctx, command, std::string(client.status().message()));
  }
  OutcomesFile outcomes_file;
  if (absl::Status s = outcomes_file.Open(options.outcomes_path); !s.ok()) {
    return UsageError(ctx, command, std::string(s.message()));
  }
  const bool show_progress = options.progress || ctx->err_is_tty;
  v1::RunProbeRequest request = options.request;
  // Outcomes always stream back: they make the partial summary of a run
  // interrupted with Ctrl-C.
  request.set_stream_outcomes(true);

  grpc::ClientContext rpc;
  (*client)->Prepare(&rpc, /*with_deadline=*/false);
  SigintFlag sigint;
  // Ctrl-C cancels the call: the controller then cancels its agents.
  absl::Mutex mu;
  bool reading_done = false;
  std::atomic<bool> interrupted{false};
  std::map<std::string, analysis::SummaryBuilder> partial;  // By region.
  std::thread canceller([&] {
    absl::MutexLock lock(&mu);
    while (!reading_done) {
      ctx->clock->AwaitWithTimeout(&mu, absl::Condition(&reading_done),
                                   absl::Milliseconds(50));
      if (sigint.Take()) {
        interrupted = true;
        rpc.TryCancel();
      }
    }
  });
  std::unique_ptr<grpc::ClientReader<v1::RunProbeEvent>> reader =
      (*client)->stub()->RunProbe(&rpc, request);
  std::unique_ptr<ProgressBar> bar;
  uint64_t dispatched = 0, done = 0, failed = 0;
  std::vector<std::string> regions;
  v1::RunProbeEvent event;
  v1::RunProbeEvent::Done result;
  bool have_result = false;
  while (reader->Read(&event)) {
    switch (event.event_case()) {
      case v1::RunProbeEvent::kDispatched: {
        const auto& d = event.dispatched();
        dispatched += d.probes();
        *ctx->err << "dispatched " << d.adhoc_id() << " to " << d.region()
                  << ": " << d.probes() << " probes on "
                  << absl::StrJoin(d.agent_ids(), ", ") << "\n";
        bar = std::make_unique<ProgressBar>(ctx->err, ctx->clock, dispatched,
                                            show_progress);
        break;
      }
      case v1::RunProbeEvent::kOutcome: {
        ++done;
        const v1::OutcomeClass c = event.outcome().outcome_class();
        if (c != v1::OK && c != v1::AGENT_ERROR) ++failed;
        outcomes_file.Add(event.outcome());
        partial.try_emplace(event.outcome().region(), event.outcome().region())
            .first->second.Add(event.outcome());
        if (bar) bar->Update(done, failed);
        break;
      }
      case v1::RunProbeEvent::kRegionSummary:
        break;
      case v1::RunProbeEvent::kDone:
        result = event.done();
        have_result = true;
        break;
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&mu);
    reading_done = true;
  }
  canceller.join();
  if (bar) bar->Finish();
  if (absl::Status s = outcomes_file.Close(); !s.ok()) {
    *ctx->err << "canaryctl " << command << ": " << s.message() << "\n";
  }

  const std::vector<v1::ProbeSummary> summaries(result.summaries().begin(),
                                                result.summaries().end());
  if (have_result) {
    if (options.json) {
      PrintJson(result, ctx->out);
    } else {
      *ctx->out << RenderSummaryTable(summaries, /*with_region=*/true);
      *ctx->out << absl::StrFormat("%d probes (%s)", result.total_probes(),
                                   result.adhoc_id());
      if (result.missing_probes() > 0) {
        *ctx->out << absl::StrFormat(", %d did not report",
                                     result.missing_probes());
      }
      if (result.cancelled()) *ctx->out << ", cancelled";
      *ctx->out << "\n";
    }
  }
  if (!have_result && interrupted) {
    // Ctrl-C: what arrived so far, then the conventional 128 + SIGINT.
    for (const auto& [region, builder] : partial) {
      for (v1::ProbeSummary& s : builder.Build()) {
        *result.add_summaries() = std::move(s);
        result.set_total_probes(result.total_probes() +
                                result.summaries().rbegin()->probes());
      }
    }
    result.set_cancelled(true);
    if (options.json) {
      PrintJson(result, ctx->out);
    } else {
      *ctx->out << RenderSummaryTable(
          std::vector<v1::ProbeSummary>(result.summaries().begin(),
                                        result.summaries().end()),
          /*with_region=*/true);
      *ctx->out << absl::StrFormat(
          "%d probes before Ctrl-C (partial: cancelled)\n",
          result.total_probes());
    }
    return kExitInterrupted;
  }
  if (!status.ok()) return (*client)->Fail(status, command, ctx);
  if (interrupted) return kExitInterrupted;
  int code = kExitOk;
  for (const v1::ProbeSummary& s : summaries) {
    if (s.error_rate() > options.max_error_rate) {
      *ctx->err << absl::StrFormat(
          "canaryctl probe: %s %s %s error rate %s is above --max-error-rate "
          "%s\n",
          s.region(), InvokeModeName(s.mode(), "buffered"),
          FormatBytes(s.size_bytes()), FormatPercent(s.error_rate()),
          FormatPercent(options.max_error_rate));
      code = kExitCheckFailed;
    }
  }
  return code;
}

}  // namespace cli
}  // namespace fleetcanary
