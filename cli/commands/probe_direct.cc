#include "cli/commands/probe_direct.h"

#include <fstream>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe/probe_engine.h"
#include "analysis/probe_summary.h"
#include "cli/commands/probe_table.h"
#include "cli/output/json.h"
#include "cli/ui/progress_bar.h"
#include "cli/ui/sigint_flag.h"
#include "common/aws/credentials.h"
#include "common/proto/invoke_mode.h"
#include "common/units/units.h"
#include "fleetcanary/v1/admin.pb.h"

namespace fleetcanary {
namespace cli {
namespace {

// --auth iam: the AWS SDK credential chain (environment, web identity,
// profile, container, IMDS), fetched once before the first probe and
// refreshed in the background for long runs.
absl::StatusOr<std::unique_ptr<aws::CredentialsCache>> StartCredentials(
    Clock* clock) {
  aws::ProviderOptions po;
  po.clock = clock;
  auto chain = aws::NewDefaultChain(po);
  absl::StatusOr<std::unique_ptr<aws::CredentialsCache>> cache =
      chain.ok() ? aws::CredentialsCache::Create(*std::move(chain), clock)
                 : absl::StatusOr<std::unique_ptr<aws::CredentialsCache>>(
                       chain.status());
  if (!cache.ok()) return cache.status();
  absl::Status first = (*cache)->WaitForFirst(absl::Seconds(60));
  if (!first.ok()) return first;
  return cache;
}

// The probe engine (signing with *credentials for --auth iam), or nullptr
// after telling why not, with *exit_code set.
std::unique_ptr<ProbeEngine> StartEngine(
    const ProbeDirectOptions& options, CliContext* ctx,
    std::unique_ptr<aws::CredentialsCache>* credentials, int* exit_code) {
  ProbeEngineOptions engine_options;
  engine_options.max_in_flight = static_cast<int>(options.concurrency);
  engine_options.user_agent = "canaryctl/0.1";
  // No target guard: here the person at the keyboard chooses the URLs, so
  // loopback and private endpoints are fine (agents always run with one).
  engine_options.guard = nullptr;
  if (options.auth == v1::AWS_IAM) {
    absl::StatusOr<std::unique_ptr<aws::CredentialsCache>> cache =
        StartCredentials(ctx->clock);
    if (!cache.ok()) {
      *ctx->err << "canaryctl probe: --auth iam: " << cache.status().message()
                << "\n";
      *exit_code = kExitUnavailable;
      return nullptr;
    }
    *credentials = *std::move(cache);
    aws::CredentialsCache* raw = credentials->get();
    engine_options.credentials = [raw] { return raw->Get(); };
  }
  absl::StatusOr<std::unique_ptr<ProbeEngine>> engine =
      ProbeEngine::Create(engine_options, ctx->clock);
  if (!engine.ok()) {
    *ctx->err << "canaryctl probe: cannot start the probe engine: "
              << engine.status().message() << "\n";
    *exit_code = kExitUnavailable;
    return nullptr;
  }
  return *std::move(engine);
}

// Every probe of the run, interleaved: for each round, every size, every
// mode.
std::vector<ProbeRequest> Plan(const ProbeDirectOptions& options) {
  std::mt19937_64 rng(options.seed != 0 ? options.seed
                                        : std::random_device()());
  std::vector<ProbeRequest> plan;
  plan.reserve(static_cast<size_t>(options.count) * options.sizes.size() *
               options.urls.size());
  for (uint32_t i = 0; i < options.count; ++i) {
    for (uint64_t size : options.sizes) {
      for (const auto& [mode, url] : options.urls) {
        ProbeRequest r;
        r.url = url;
        r.mode = mode;
        r.auth = options.auth;
        r.size_bytes = size;
        if (mode == v1::RESPONSE_STREAM) {
          r.chunk_bytes = options.chunk_bytes;
          r.chunk_gap = options.chunk_gap;
        }
        r.seed = rng();
        r.probe_id = absl::StrFormat("%016x", rng());
        r.limits = options.limits;
        r.transport = options.transport;
        r.agent_id = "canaryctl";
        r.region = options.region;
        r.target = "direct";
        plan.push_back(std::move(r));
      }
    }
  }
  return plan;
}

// A run in progress: what the probes' callbacks and the loop that starts
// them share. State below is protected by mu.
struct Run {
  absl::Mutex mu;
  uint64_t done = 0;
  uint64_t in_flight = 0;
  uint64_t started = 0;
  bool stopped = false;  // Interrupted: later outcomes are cancellations.
};

// Paced runs: waits for the probe's slot, then for room under
// --concurrency. False when Ctrl-C stopped the run meanwhile.
bool AwaitTurn(const ProbeDirectOptions& options, size_t i,
               absl::Duration start, const SigintFlag& sigint, Clock* clock,
               Run* run) {
  const absl::Duration slot = start + absl::Seconds(i / options.rate);
  const absl::Duration now = clock->MonotonicNow();
  if (slot > now) clock->SleepFor(slot - now);
  // Hold back here so the rate is kept even when probes are slow. Unpaced
  // runs queue everything at once and let the engine's max_in_flight
  // (= concurrency) start the next probe as one finishes.
  absl::MutexLock lock(&run->mu);
  const uint64_t limit = options.concurrency;
  const auto has_room = [&] { return run->in_flight < limit; };
  while (!has_room() && !sigint.raised()) {
    clock->AwaitWithTimeout(&run->mu, absl::Condition(&has_room),
                            absl::Milliseconds(100));
  }
  if (sigint.raised()) return false;
  ++run->in_flight;
  return true;
}

// How a run went.
struct RunEnd {
  bool interrupted = false;  // By Ctrl-C.
  absl::Duration elapsed;
};

// Starts every probe of `plan` (until Ctrl-C), waits for those started,
// shuts the engine down and writes the outcomes file.
RunEnd RunPlan(const ProbeDirectOptions& options,
               std::vector<ProbeRequest> plan, ProbeEngine* engine,
               const SigintFlag& sigint, analysis::SummaryBuilder* summary,
               OutcomesFile* outcomes_file, CliContext* ctx) {
  Clock* clock = ctx->clock;
  const bool show_progress = options.progress || ctx->err_is_tty;
  ProgressBar progress(ctx->err, clock, plan.size(), show_progress);
  Run run;
  const absl::Duration start = clock->MonotonicNow();
  for (size_t i = 0; i < plan.size() && !sigint.raised(); ++i) {
    if (options.rate > 0 &&
        !AwaitTurn(options, i, start, sigint, clock, &run)) {
      break;
    }
    ++run.started;
    engine->Start(std::move(plan[i]), [&](v1::Outcome o) {
      absl::MutexLock lock(&run.mu);
      if (run.stopped) return;
      summary->Add(o);
      outcomes_file->Add(o);
      ++run.done;
      if (options.rate > 0) --run.in_flight;
      progress.Update(run.done, summary->failures());
    });
  }
  {
    absl::MutexLock lock(&run.mu);
    const auto all_done = [&] { return run.done >= run.started; };
    while (!all_done() && !sigint.raised()) {
      clock->AwaitWithTimeout(&run.mu, absl::Condition(&all_done),
                              absl::Milliseconds(100));
    }
    run.stopped = true;
  }
  engine->Shutdown();
  RunEnd end;
  end.interrupted = sigint.raised();
  progress.Finish();
  if (absl::Status s = outcomes_file->Close(); !s.ok()) {
    *ctx->err << "canaryctl probe: " << s.message() << "\n";
  }
  end.elapsed = clock->MonotonicNow() - start;
  return end;
}

// The summary table (or the RunProbeEvent.Done as JSON).
void PrintSummaries(const ProbeDirectOptions& options,
                    const analysis::SummaryBuilder& summary,
                    const std::vector<v1::ProbeSummary>& summaries,
                    bool interrupted, absl::Duration elapsed, CliContext* ctx) {
  if (options.json) {
    v1::RunProbeEvent::Done result;
    result.set_adhoc_id("direct");
    for (const v1::ProbeSummary& s : summaries) *result.add_summaries() = s;
    result.set_total_probes(summary.total());
    result.set_cancelled(interrupted);
    PrintJson(result, ctx->out);
    return;
  }
  *ctx->out << RenderSummaryTable(summaries, /*with_region=*/false);
  *ctx->out << absl::StrFormat(
      "%d probes in %s (%.1f/s), %d failed, %d agent errors\n", summary.total(),
      FormatMs(elapsed),
      summary.total() / std::max(1e-9, absl::ToDoubleSeconds(elapsed)),
      summary.failures(), summary.agent_errors());
  if (interrupted) {
    *ctx->out << "interrupted by Ctrl-C: partial summary of the probes "
                 "that finished\n";
  }
}

// The exit code of a finished run, telling on stderr about local failures
// and error rates above --max-error-rate.
int ExitCodeOf(const ProbeDirectOptions& options,
               const analysis::SummaryBuilder& summary,
               const std::vector<v1::ProbeSummary>& summaries,
               CliContext* ctx) {
  if (summary.agent_errors() > 0) {
    *ctx->err << "canaryctl probe: " << summary.agent_errors()
              << " probes failed on this machine (AGENT_ERROR, not counted "
                 "against the endpoint)";
    if (!options.outcomes_path.empty()) {
      *ctx->err << "; details in " << options.outcomes_path;
    }
    *ctx->err << "\n";
  }
  if (summary.agent_errors() == summary.total()) {
    *ctx->err << "canaryctl probe: nothing was measured: every probe failed "
                 "locally (check URLs, --ca-file, AWS credentials for --auth "
                 "iam; use --outcomes FILE to see each detail)\n";
    return kExitUnavailable;
  }
  int code = kExitOk;
  for (const v1::ProbeSummary& s : summaries) {
    if (s.error_rate() > options.max_error_rate) {
      *ctx->err << absl::StrFormat(
          "canaryctl probe: %s %s error rate %s is above --max-error-rate "
          "%s\n",
          InvokeModeName(s.mode(), "buffered"), FormatBytes(s.size_bytes()),
          FormatPercent(s.error_rate()), FormatPercent(options.max_error_rate));
      code = kExitCheckFailed;
    }
  }
  return code;
}

}  // namespace

int RunProbeDirect(const ProbeDirectOptions& options, CliContext* ctx) {
  OutcomesFile outcomes_file;
  if (absl::Status s = outcomes_file.Open(options.outcomes_path); !s.ok()) {
    *ctx->err << "canaryctl probe: " << s.message() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<aws::CredentialsCache> credentials;
  int exit_code = kExitOk;
  std::unique_ptr<ProbeEngine> engine =
      StartEngine(options, ctx, &credentials, &exit_code);
  if (engine == nullptr) return exit_code;
  std::vector<ProbeRequest> plan = Plan(options);
  analysis::SummaryBuilder summary(options.region.empty() ? "local"
                                                          : options.region);
  // Ctrl-C stops the run (the summary of what finished is still printed).
  SigintFlag sigint;
  const RunEnd end = RunPlan(options, std::move(plan), engine.get(), sigint,
                             &summary, &outcomes_file, ctx);
  const std::vector<v1::ProbeSummary> summaries = summary.Build();
  PrintSummaries(options, summary, summaries, end.interrupted, end.elapsed,
                 ctx);
  if (end.interrupted) return kExitInterrupted;
  return ExitCodeOf(options, summary, summaries, ctx);
}

}  // namespace cli
}  // namespace fleetcanary
