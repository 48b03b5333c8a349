// One emulated Lambda Function URL: the platform in front of the canary
// function (auth, throttling, limits, headers, metrics) plus the canary
// function itself (docs/function-contract.md), with the
// scenario engine's faults applied.
//
// Request handling, in the platform's order:
//  1. AuthType AWS_IAM: SigV4 (service "lambda", the region, the payload hash
//     of the body received) → 403 AccessDeniedException when missing/wrong.
//  2. Every path goes to the function, as on AWS; it answers as the
//     reference function does (canary_model.h: 404 for another path, 405
//     for another method, 400 for bad parameters, each an invocation).
//  3. Reserved concurrency exhausted → 429 TooManyRequestsException,
//     Throttles +1, no invocation.
//  4. The scenario engine decides a fault (throttle → as 3) for requests
//     the function accepts.
//  5. The function's answer: its error, or 200 with N payload bytes,
//     buffered with Content-Length or streamed in C-byte chunks G ms apart,
//     shaped to 2 MiB/s after 6 MiB when shaping is on. BUFFERED bodies over
//     6,291,556 bytes (only with canary_limits raised above the reference's
//     4 MiB) → 502, Errors +1 (ResponseSizeTooLarge).
// Metrics (stamped with the request's arrival time): UrlRequestCount and
// Url4xxCount/Url5xxCount per request; Invocations, Errors (phantom_error,
// http_status >= 500, the size cap, rules with platform_error) and Duration
// per invocation; Throttles per throttle; UrlRequestLatency per request.
// Wire faults (truncate, reset, stall, ...) are not platform errors unless
// the rule says platform_error.
//
// Thread-safety: Handle() is called concurrently from io threads.
#ifndef FLEETCANARY_EMULATOR_FUNCTION_FUNCTION_URL_H_
#define FLEETCANARY_EMULATOR_FUNCTION_FUNCTION_URL_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "emulator/function/canary_model.h"
#include "emulator/platform/metric_store.h"
#include "emulator/scenario/engine.h"
#include "emulator/scenario/truth_log.h"
#include "emulator/server/http_server.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

inline constexpr uint64_t kBufferedResponseLimit = 6291556;
inline constexpr uint64_t kStreamUnshapedBytes = 6 * 1024 * 1024;
inline constexpr uint64_t kStreamShapedBytesPerSecond = 2 * 1024 * 1024;

// State shared by the two URLs (aliases) of the function in one region.
struct RegionState {
  RegionState(const v1::EmulatorRegion& config,
              const MetricStoreOptions& metric_options)
      : config(config), metrics(metric_options) {}
  const v1::EmulatorRegion config;  // function_name filled in.
  MetricStore metrics;
  std::atomic<int64_t> in_flight{0};
};

// What every Function URL of the emulator shares. Owned by the emulator;
// outlives every FunctionUrl.
struct PlatformContext {
  Clock* clock = nullptr;
  ScenarioEngine* scenario = nullptr;
  TruthLog* truth = nullptr;
  std::vector<v1::EmulatorCredential> credentials;
  // SigV4 lookup over static and issued credentials; when unset, only
  // `credentials`.
  sigv4::CredentialsLookup lookup;
  absl::Duration max_clock_skew = absl::Minutes(5);
  bool shape_streaming = true;
  // The canary function's limits (EmulatorConfig.canary_limits).
  CanaryLimits canary_limits;
  uint64_t request_id_seed = 0;
  std::atomic<uint64_t> request_counter{0};
};

// What one Function URL counted since it was created, for /metrics.
struct FunctionUrlCounts {
  // Responses by status class: below 400, 4xx, 5xx and above.
  uint64_t code_2xx = 0;
  uint64_t code_4xx = 0;
  uint64_t code_5xx = 0;
  // Faults injected, by effect in lower case without the FAULT_EFFECT_
  // prefix ("phantom_error", "truncate", ...); only effects injected.
  std::map<std::string, uint64_t> faults;
};

class FunctionUrl {
 public:
  // `region` and `context` must outlive this object.
  FunctionUrl(RegionState* region, v1::InvokeMode mode, std::string alias,
              PlatformContext* context);
  ~FunctionUrl();

  // The server's RequestHandler: answers as the platform and the canary
  // function do, in the order of the steps above.
  void Handle(const HttpRequest& request, ResponsePlan* plan);

  v1::InvokeMode mode() const { return mode_; }
  const std::string& alias() const { return alias_; }
  const std::string& region() const { return region_->config.name(); }
  FunctionUrlCounts counts() const;

 private:
  struct Counters;
  // One request on its way through the steps below.
  struct Exchange;

  // The steps of Handle, in order. Each writes its answer into `plan`.
  // Request id, trace id and Date headers.
  Exchange Begin(const HttpRequest& request, ResponsePlan* plan) const;
  // 1. SigV4 when the region wants it; false (403 planned) when refused.
  bool Authorize(const HttpRequest& request, const Exchange& x,
                 ResponsePlan* plan) const;
  // 2.-5. Admission, concurrency, the scenario's decision and the
  // function's answer.
  void Dispatch(const HttpRequest& request, Exchange& x, ResponsePlan* plan);
  // 3. Takes a concurrency slot; true when over the reserved concurrency.
  bool OverReservedConcurrency(Exchange& x);
  // 5. The function's 200 answer in each invoke mode.
  void WriteBuffered(Exchange& x, ResponsePlan* plan) const;
  void WriteStream(Exchange& x, ResponsePlan* plan) const;
  // The scenario's fault applied to the planned response of an invocation.
  void ApplyFault(Exchange& x, ResponsePlan* plan) const;
  void ReplaceWithPlatformError(const Exchange& x, ResponsePlan* plan) const;
  // Ground truth and the faults counter.
  void RecordFault(const Exchange& x);
  // Platform metrics and the response counters; releases the concurrency
  // slot of requests not invoked; plans the completion's metrics.
  void Account(const Exchange& x, ResponsePlan* plan);

  RegionState* const region_;
  const v1::InvokeMode mode_;
  const std::string alias_;
  PlatformContext* const context_;
  std::unique_ptr<Counters> counters_;
};

// A request id in the platform's UUID form, from a seed and a counter.
std::string MakeRequestId(uint64_t seed, uint64_t n);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_FUNCTION_FUNCTION_URL_H_
