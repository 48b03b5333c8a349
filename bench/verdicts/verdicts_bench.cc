// Cost of the live verdict path per outcome (VerdictService: queue, reorder
// buffer, reconciliation, both engine views, publication) against the bare
// VerdictEngine::ObserveProbe on the same outcomes - the reference run in
// this process. Items per second are outcomes; compare the two rates.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "analysis/verdict_engine.h"
#include "common/time/clock.h"
#include "common/units/units.h"
#include "controller/verdicts/verdict_service.h"

namespace fleetcanary {
namespace controller {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);
constexpr uint64_t kSizes[] = {2, 1024, 65536, 262144};
constexpr int kPerSecond = 400;  // Outcomes per second, all streams.

// One second of outcomes: 2 regions x 2 modes x 4 sizes, in time order.
std::vector<v1::Outcome> Second(int s) {
  std::vector<v1::Outcome> out;
  out.reserve(kPerSecond);
  for (int i = 0; i < kPerSecond; ++i) {
    v1::Outcome o;
    o.set_agent_id(i % 2 ? "a1" : "a2");
    o.set_region(i % 4 < 2 ? "us-east-1" : "eu-west-1");
    o.set_target("canary");
    o.set_mode(i % 2 ? v1::BUFFERED : v1::RESPONSE_STREAM);
    o.set_requested_bytes(kSizes[(i / 4) % 4]);
    const int64_t ns = absl::ToUnixNanos(kT0 + absl::Seconds(s) +
                                         absl::Seconds(1) * i / kPerSecond);
    o.mutable_start_time()->set_seconds(ns / 1000000000);
    o.mutable_start_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
    o.set_outcome_class(i % 997 == 0 ? v1::HTTP_5XX : v1::OK);
    out.push_back(std::move(o));
  }
  return out;
}

void BM_BareEngine(benchmark::State& state) {
  const int seconds = static_cast<int>(state.range(0));
  std::vector<std::vector<v1::Outcome>> data;
  for (int s = 0; s < seconds; ++s) data.push_back(Second(s));
  for (auto _ : state) {
    auto engine = *analysis::VerdictEngine::Create(v1::DetectionConfig());
    for (const auto& second : data) {
      for (const v1::Outcome& o : second) {
        v1::StreamKey k;
        k.set_region(o.region());
        k.set_target(o.target());
        k.set_mode(o.mode());
        k.set_size_class(FormatBytes(o.requested_bytes()));
        absl::Time t = absl::FromUnixSeconds(o.start_time().seconds()) +
                       absl::Nanoseconds(o.start_time().nanos());
        benchmark::DoNotOptimize(
            engine->ObserveProbe(k, o.agent_id(), t, o.outcome_class()));
      }
    }
    benchmark::DoNotOptimize(engine->Current());
  }
  state.SetItemsProcessed(state.iterations() * seconds * kPerSecond);
}
BENCHMARK(BM_BareEngine)->Arg(60)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LiveService(benchmark::State& state) {
  const int seconds = static_cast<int>(state.range(0));
  std::vector<CommittedBatch> data;
  for (int s = 0; s < seconds; ++s) {
    CommittedBatch b;
    b.outcomes = Second(s);
    for (const char* region : {"us-east-1", "eu-west-1"}) {
      for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
        for (const char* metric : {"Errors", "Invocations"}) {
          v1::PlatformMetricSample p;
          p.set_region(region);
          p.set_target("canary");
          p.set_mode(mode);
          p.set_metric(metric);
          p.set_stat("Sum");
          p.mutable_period_start()->set_seconds(
              absl::ToUnixSeconds(kT0 + absl::Seconds(s)));
          p.mutable_period()->set_seconds(1);
          p.set_value(std::string(metric) == "Errors" ? 0 : kPerSecond / 4);
          b.platform_samples.push_back(p);
        }
      }
    }
    data.push_back(std::move(b));
  }
  for (auto _ : state) {
    state.PauseTiming();
    SimulatedClock clock(kT0);
    auto store = CreateMemoryStore();
    ControllerMetrics metrics;
    VerdictServiceOptions options;
    options.metrics_period = absl::Seconds(1);
    options.reconcile_settle = absl::Seconds(2);
    auto service =
        *VerdictService::Create(options, store.get(), &metrics, &clock);
    state.ResumeTiming();
    for (const CommittedBatch& b : data) service->OnCommitted(b);
    clock.AdvanceTime(absl::Seconds(seconds + 10));
    service->Sync(absl::Seconds(600));
    state.PauseTiming();
    service.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * seconds * kPerSecond);
}
// Real time: the work runs on the service's worker thread.
BENCHMARK(BM_LiveService)
    ->Arg(60)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace controller
}  // namespace fleetcanary

BENCHMARK_MAIN();
