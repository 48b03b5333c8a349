#include "cli/commands/probe_controller.h"

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
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
namespace {

// What a RunProbe stream delivered.
struct ProbeStream {
  grpc::Status status;
  bool interrupted = false;  // Ctrl-C cancelled the call.
  bool have_result = false;  // The Done event arrived (in `result`).
  v1::RunProbeEvent::Done result;
  // The outcomes that arrived, summarized by region: the partial summary of
  // a run interrupted with Ctrl-C.
  std::map<std::string, analysis::SummaryBuilder> partial;
};

// The progress bar over the probes dispatched so far.
struct ProbeProgress {
  bool show = false;
  std::unique_ptr<ProgressBar> bar;
  uint64_t dispatched = 0, done = 0, failed = 0;
};

// While alive (until Stop()), a thread cancels `rpc` when Ctrl-C raises
// `sigint`: the controller then cancels its agents.
class CancelOnSigint {
 public:
  CancelOnSigint(SigintFlag* sigint, grpc::ClientContext* rpc, Clock* clock)
      : thread_([this, sigint, rpc, clock] {
          absl::MutexLock lock(&mu_);
          while (!done_) {
            clock->AwaitWithTimeout(&mu_, absl::Condition(&done_),
                                    absl::Milliseconds(50));
            if (sigint->Take()) {
              interrupted_ = true;
              rpc->TryCancel();
            }
          }
        }) {}
  ~CancelOnSigint() { Stop(); }

  // Stops watching and joins the thread. Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  // Whether the call was cancelled.
  bool interrupted() const { return interrupted_; }

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> interrupted_{false};
  std::thread thread_;  // Last: starts once the state above exists.
};

// Prints the dispatch to ctx->err and restarts the progress bar over all
// probes dispatched so far.
void OnDispatched(const v1::RunProbeEvent::Dispatched& d,
                  ProbeProgress* progress, CliContext* ctx) {
  progress->dispatched += d.probes();
  *ctx->err << "dispatched " << d.adhoc_id() << " to " << d.region() << ": "
            << d.probes() << " probes on " << absl::StrJoin(d.agent_ids(), ", ")
            << "\n";
  progress->bar = std::make_unique<ProgressBar>(
      ctx->err, ctx->clock, progress->dispatched, progress->show);
}

// Counts the outcome, writes it to the outcomes file and adds it to the
// partial summary.
void OnOutcome(const v1::Outcome& outcome, ProbeProgress* progress,
               OutcomesFile* outcomes_file, ProbeStream* stream) {
  ++progress->done;
  const v1::OutcomeClass c = outcome.outcome_class();
  if (c != v1::OK && c != v1::AGENT_ERROR) ++progress->failed;
  outcomes_file->Add(outcome);
  stream->partial.try_emplace(outcome.region(), outcome.region())
      .first->second.Add(outcome);
  if (progress->bar) progress->bar->Update(progress->done, progress->failed);
}

// Sends `request` and reads the stream to its end, showing progress on
// ctx->err; Ctrl-C (through `sigint`) cancels the call.
ProbeStream StreamRunProbe(ControllerClient* client,
                           const v1::RunProbeRequest& request,
                           bool show_progress, OutcomesFile* outcomes_file,
                           SigintFlag* sigint, CliContext* ctx) {
  ProbeStream stream;
  grpc::ClientContext rpc;
  client->Prepare(&rpc, /*with_deadline=*/false);
  CancelOnSigint canceller(sigint, &rpc, ctx->clock);
  std::unique_ptr<grpc::ClientReader<v1::RunProbeEvent>> reader =
      client->stub()->RunProbe(&rpc, request);
  ProbeProgress progress;
  progress.show = show_progress;
  v1::RunProbeEvent event;
  while (reader->Read(&event)) {
    switch (event.event_case()) {
      case v1::RunProbeEvent::kDispatched:
        OnDispatched(event.dispatched(), &progress, ctx);
        break;
      case v1::RunProbeEvent::kOutcome:
        OnOutcome(event.outcome(), &progress, outcomes_file, &stream);
        break;
      case v1::RunProbeEvent::kRegionSummary:
        break;
      case v1::RunProbeEvent::kDone:
        stream.result = event.done();
        stream.have_result = true;
        break;
      default:
        break;
    }
  }
  stream.status = reader->Finish();
  canceller.Stop();
  stream.interrupted = canceller.interrupted();
  if (progress.bar) progress.bar->Finish();
  return stream;
}

// The final result: JSON, or one row per region x mode x size and a line
// of totals.
void PrintResult(const v1::RunProbeEvent::Done& result, bool json,
                 CliContext* ctx) {
  if (json) {
    PrintJson(result, ctx->out);
    return;
  }
  *ctx->out << RenderSummaryTable(
      std::vector<v1::ProbeSummary>(result.summaries().begin(),
                                    result.summaries().end()),
      /*with_region=*/true);
  *ctx->out << absl::StrFormat("%d probes (%s)", result.total_probes(),
                               result.adhoc_id());
  if (result.missing_probes() > 0) {
    *ctx->out << absl::StrFormat(", %d did not report",
                                 result.missing_probes());
  }
  if (result.cancelled()) *ctx->out << ", cancelled";
  *ctx->out << "\n";
}

// After Ctrl-C without a final result: what arrived so far, summarized into
// `stream->result` (marked cancelled) and printed like PrintResult.
void PrintPartialResult(ProbeStream* stream, bool json, CliContext* ctx) {
  v1::RunProbeEvent::Done& result = stream->result;
  for (const auto& [region, builder] : stream->partial) {
    for (v1::ProbeSummary& s : builder.Build()) {
      *result.add_summaries() = std::move(s);
      result.set_total_probes(result.total_probes() +
                              result.summaries().rbegin()->probes());
    }
  }
  result.set_cancelled(true);
  if (json) {
    PrintJson(result, ctx->out);
    return;
  }
  *ctx->out << RenderSummaryTable(
      std::vector<v1::ProbeSummary>(result.summaries().begin(),
                                    result.summaries().end()),
      /*with_region=*/true);
  *ctx->out << absl::StrFormat("%d probes before Ctrl-C (partial: cancelled)\n",
                               result.total_probes());
}

// kExitCheckFailed, with one line on ctx->err per summary whose error rate
// is above `max_error_rate`; kExitOk if there is none.
int CheckErrorRates(
    const google::protobuf::RepeatedPtrField<v1::ProbeSummary>& summaries,
    double max_error_rate, CliContext* ctx) {
  int code = kExitOk;
  for (const v1::ProbeSummary& s : summaries) {
    if (s.error_rate() > max_error_rate) {
      *ctx->err << absl::StrFormat(
          "canaryctl probe: %s %s %s error rate %s is above --max-error-rate "
          "%s\n",
          s.region(), InvokeModeName(s.mode(), "buffered"),
          FormatBytes(s.size_bytes()), FormatPercent(s.error_rate()),
          FormatPercent(max_error_rate));
      code = kExitCheckFailed;
    }
  }
  return code;
}

}  // namespace

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
  SigintFlag sigint;
  ProbeStream stream = StreamRunProbe(client->get(), request, show_progress,
                                      &outcomes_file, &sigint, ctx);
  if (absl::Status s = outcomes_file.Close(); !s.ok()) {
    *ctx->err << "canaryctl " << command << ": " << s.message() << "\n";
  }
  if (stream.have_result) PrintResult(stream.result, options.json, ctx);
  if (!stream.have_result && stream.interrupted) {
    // Ctrl-C: what arrived so far, then the conventional 128 + SIGINT.
    PrintPartialResult(&stream, options.json, ctx);
    return kExitInterrupted;
  }
  if (!stream.status.ok()) return (*client)->Fail(stream.status, command, ctx);
  if (stream.interrupted) return kExitInterrupted;
  return CheckErrorRates(stream.result.summaries(), options.max_error_rate,
                         ctx);
}

}  // namespace cli
}  // namespace fleetcanary
