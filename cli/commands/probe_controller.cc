#include "cli/commands/probe_controller.h"

#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "analysis/probe_summary.h"
#include "cli/output/json.h"
#include "cli/ui/progress_bar.h"
#include "cli/ui/table.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSigint(int) { g_interrupted = true; }

std::string FormatMs(absl::Duration d) {
  const double ms = absl::ToDoubleMilliseconds(d);
  if (ms >= 1000) return absl::StrFormat("%.2fs", ms / 1000);
  if (ms >= 100) return absl::StrFormat("%.0fms", ms);
  return absl::StrFormat("%.1fms", ms);
}

std::string FormatRate(double bytes_per_second) {
  const char* units[] = {"B/s", "KiB/s", "MiB/s", "GiB/s"};
  int u = 0;
  while (bytes_per_second >= 1024 && u < 3) {
    bytes_per_second /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f %s", bytes_per_second, units[u]);
}

std::string FormatPercent(double p) {
  return absl::StrFormat("%.2f%%", 100 * p);
}

// Restores the previous SIGINT disposition when destroyed.
class SigintGuard {
 public:
  SigintGuard() {
    g_interrupted = false;
    struct sigaction sa = {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous_);
  }
  ~SigintGuard() { sigaction(SIGINT, &previous_, nullptr); }

 private:
  struct sigaction previous_ = {};
};

}  // namespace

std::string RenderRegionTable(const std::vector<v1::ProbeSummary>& summaries) {
  Table t({"REGION", "MODE", "SIZE", "PROBES", "OK", "FAILURES", "ERROR",
           "95% CI", "TTFB P50", "P90", "P99", "THROUGHPUT"},
          {Align::kLeft, Align::kLeft, Align::kRight, Align::kRight,
           Align::kRight, Align::kLeft, Align::kRight, Align::kLeft,
           Align::kRight, Align::kRight, Align::kRight, Align::kRight});
  for (const v1::ProbeSummary& s : summaries) {
    std::vector<std::string> failures;
    uint64_t ok = 0;
    for (int c = v1::OutcomeClass_MIN; c <= v1::OutcomeClass_MAX; ++c) {
      const std::string name =
          v1::OutcomeClass_Name(static_cast<v1::OutcomeClass>(c));
      auto it = s.by_class().find(name);
      if (it == s.by_class().end()) continue;
      if (c == v1::OK) {
        ok = it->second;
      } else {
        failures.push_back(absl::StrCat(name, ":", it->second));
      }
    }
    const bool any_ttfb = s.has_ttfb_p99() && DurationFromProto(s.ttfb_p99()) >
                                                  absl::ZeroDuration();
    const auto ttfb = [&](const google::protobuf::Duration& d) {
      return any_ttfb ? FormatMs(DurationFromProto(d)) : std::string("-");
    };
    t.AddRow(
        {s.region(), InvokeModeName(s.mode(), "buffered"),
         FormatBytes(s.size_bytes()), absl::StrCat(s.probes()),
         absl::StrCat(ok),
         failures.empty() ? "-" : absl::StrJoin(failures, " "),
         FormatPercent(s.error_rate()),
         absl::StrCat("[", FormatPercent(s.error_rate_interval().lower()), ", ",
                      FormatPercent(s.error_rate_interval().upper()), "]"),
         ttfb(s.ttfb_p50()), ttfb(s.ttfb_p90()), ttfb(s.ttfb_p99()),
         FormatRate(s.throughput_bytes_per_second())});
  }
  return t.Render();
}

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
  SigintGuard sigint;
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
      if (g_interrupted.exchange(false)) {
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
      *ctx->out << RenderRegionTable(summaries);
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
      *ctx->out << RenderRegionTable(std::vector<v1::ProbeSummary>(
          result.summaries().begin(), result.summaries().end()));
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
