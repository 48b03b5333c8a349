#include "emulator/function/function_url.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/payload/payload.h"
#include "common/sigv4/sigv4.h"
#include "emulator/function/canary_model.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  if (ts.nanos() < 0) {
    ts.set_seconds(ts.seconds() - 1);
    ts.set_nanos(ts.nanos() + 1000000000);
  }
  return ts;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

// The x-canary-probe-id header's value, or nullopt when absent.
std::optional<std::string> ProbeIdHeader(const HttpRequest& request) {
  for (const auto& [name, value] : request.headers) {
    if (absl::EqualsIgnoreCase(name, "x-canary-probe-id")) return value;
  }
  return std::nullopt;
}

void SetJsonError(ResponsePlan* plan, int status, const char* type,
                  const std::string& body) {
  plan->status = status;
  plan->headers.emplace_back("Content-Type", "application/json");
  plan->headers.emplace_back("x-amzn-ErrorType", type);
  plan->body = body;
}

void SetText(ResponsePlan* plan, int status, const std::string& body) {
  plan->status = status;
  plan->headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  plan->body = body;
}

// The function's 200 answer: its headers and payload (framed by
// Content-Length unless the caller changes the framing).
void PlanPayload(CanaryAdmission* admission, ResponsePlan* plan) {
  const CanaryRequest& params = admission->request;
  plan->status = 200;
  for (auto& h : admission->headers) plan->headers.push_back(std::move(h));
  plan->headers.emplace_back("x-amzn-Remapped-content-length",
                             absl::StrCat(params.bytes));
  plan->payload = true;
  plan->payload_seed = params.seed;
  plan->payload_size = params.bytes;
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// The faults counter's effect label: "phantom_error", "truncate", ...
std::string EffectLabel(v1::FaultEffect effect) {
  return absl::AsciiStrToLower(
      v1::FaultEffect_Name(effect).substr(sizeof("FAULT_EFFECT_") - 1));
}

}  // namespace

std::string MakeRequestId(uint64_t seed, uint64_t n) {
  const uint64_t a = SplitMix64(seed ^ (n * 2));
  const uint64_t b = SplitMix64(seed ^ (n * 2 + 1));
  return absl::StrFormat("%08x-%04x-4%03x-%04x-%012x",
                         static_cast<uint32_t>(a >> 32),
                         static_cast<uint32_t>((a >> 16) & 0xffff),
                         static_cast<uint32_t>(a & 0xfff),
                         static_cast<uint32_t>(0x8000 | ((b >> 48) & 0x3fff)),
                         b & 0xffffffffffffULL);
}

struct FunctionUrl::Counters {
  std::atomic<uint64_t> code_2xx{0};
  std::atomic<uint64_t> code_4xx{0};
  std::atomic<uint64_t> code_5xx{0};
  absl::Mutex mu;
  std::map<std::string, uint64_t> faults ABSL_GUARDED_BY(mu);
};

struct FunctionUrl::Exchange {
  absl::Time start;
  absl::Duration start_mono;
  std::string request_id;
  // The x-canary-probe-id header.
  std::optional<std::string> probe_id;
  // What the canary function answers (step 2).
  CanaryAdmission admission;
  // The scenario's fault, when one fires (step 4).
  std::optional<v1::FaultRule> fault;
  ScenarioTime scenario_time;
  // Whether a concurrency slot was taken (step 3).
  bool took_slot = false;
  // What happened, for the platform metrics.
  bool invoked = false;
  bool error = false;
  bool throttled = false;
};

FunctionUrl::FunctionUrl(RegionState* region, v1::InvokeMode mode,
                         std::string alias, PlatformContext* context)
    : region_(region),
      mode_(mode),
      alias_(std::move(alias)),
      context_(context),
      counters_(std::make_unique<Counters>()) {}

FunctionUrl::~FunctionUrl() = default;

FunctionUrlCounts FunctionUrl::counts() const {
  FunctionUrlCounts out;
  out.code_2xx = counters_->code_2xx.load();
  out.code_4xx = counters_->code_4xx.load();
  out.code_5xx = counters_->code_5xx.load();
  absl::MutexLock lock(&counters_->mu);
  out.faults = counters_->faults;
  return out;
}

void FunctionUrl::Handle(const HttpRequest& request, ResponsePlan* plan) {
  Exchange x = Begin(request, plan);
  if (Authorize(request, x, plan)) Dispatch(request, x, plan);
  if (x.fault && x.invoked) ApplyFault(x, plan);
  if (x.fault) RecordFault(x);
  Account(x, plan);
}

FunctionUrl::Exchange FunctionUrl::Begin(const HttpRequest& request,
                                         ResponsePlan* plan) const {
  Exchange x;
  x.start = context_->clock->Now();
  x.start_mono = context_->clock->MonotonicNow();
  const uint64_t n = context_->request_counter.fetch_add(1);
  x.request_id = MakeRequestId(context_->request_id_seed, n);
  x.probe_id = ProbeIdHeader(request);
  const uint64_t trace_bits = SplitMix64(context_->request_id_seed + ~n);
  plan->headers.emplace_back(
      "Date", absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", x.start,
                               absl::UTCTimeZone()));
  plan->headers.emplace_back("x-amzn-RequestId", x.request_id);
  plan->headers.emplace_back(
      "X-Amzn-Trace-Id",
      absl::StrFormat("Root=1-%08x-%08x%016x;Parent=%016x;Sampled=0",
                      static_cast<uint32_t>(absl::ToUnixSeconds(x.start)),
                      static_cast<uint32_t>(trace_bits >> 32),
                      SplitMix64(trace_bits), SplitMix64(trace_bits + 1)));
  return x;
}

bool FunctionUrl::Authorize(const HttpRequest& request, const Exchange& x,
                            ResponsePlan* plan) const {
  // Every path reaches the function (2.), as on AWS.
  if (region_->config.auth() != v1::AWS_IAM) return true;
  std::vector<sigv4::HeaderView> headers;
  headers.reserve(request.headers.size());
  for (const auto& [name, value] : request.headers) {
    headers.push_back({name, value});
  }
  sigv4::HttpRequestView view{request.method, request.target, headers,
                              request.body, ""};
  sigv4::VerifyOptions options;
  options.service = "lambda";
  options.region = region_->config.name();
  options.now = x.start;
  options.max_skew = context_->max_clock_skew;
  const auto& creds = context_->credentials;
  sigv4::CredentialsLookup lookup = context_->lookup;
  if (!lookup) {
    lookup =
        [&creds](absl::string_view key) -> absl::StatusOr<sigv4::Credentials> {
      for (const v1::EmulatorCredential& c : creds) {
        if (c.access_key_id() == key) {
          return sigv4::Credentials{c.access_key_id(), c.secret_access_key(),
                                    c.session_token()};
        }
      }
      return absl::NotFoundError("unknown access key");
    };
  }
  absl::Status verified = sigv4::VerifyRequest(view, lookup, options);
  if (verified.ok()) return true;
  SetJsonError(
      plan, 403, "AccessDeniedException",
      nlohmann::json{{"Message", std::string(verified.message())}}.dump());
  return false;
}

void FunctionUrl::Dispatch(const HttpRequest& request, Exchange& x,
                           ResponsePlan* plan) {
  // 2. What the canary function will answer (deploy/lambda's rules).
  x.admission = AdmitCanaryRequest(
      request.method, request.Path(), request.Query(),
      x.probe_id ? &*x.probe_id : nullptr, mode_, context_->canary_limits);
  // 3. Reserved concurrency.
  x.throttled = OverReservedConcurrency(x);
  // 4. Scenario: faults strike canary invocations the function accepts.
  if (!x.throttled && x.admission.status == 200) {
    FaultDecision decision = context_->scenario->Decide(InvocationFacts{
        region_->config.name(), mode_, x.admission.request.bytes});
    x.scenario_time = decision.time;
    x.fault = std::move(decision.rule);
    if (x.fault && x.fault->effect() == v1::FAULT_EFFECT_THROTTLE) {
      x.throttled = true;
    }
  }
  if (x.throttled) {
    SetJsonError(plan, 429, "TooManyRequestsException",
                 "{\"Message\":\"Rate Exceeded.\"}");
    return;
  }
  // 5. The function.
  x.invoked = true;
  if (x.admission.status != 200) {
    plan->status = x.admission.status;
    for (auto& h : x.admission.headers) plan->headers.push_back(std::move(h));
    plan->body = std::move(x.admission.body);
    return;
  }
  if (mode_ == v1::RESPONSE_STREAM) {
    WriteStream(x, plan);
  } else {
    WriteBuffered(x, plan);
  }
}

bool FunctionUrl::OverReservedConcurrency(Exchange& x) {
  // Take a concurrency slot now; given back by Account unless invoked.
  const uint32_t reserved = region_->config.reserved_concurrency();
  x.took_slot = true;
  return region_->in_flight.fetch_add(1) >= reserved && reserved > 0;
}

void FunctionUrl::WriteBuffered(Exchange& x, ResponsePlan* plan) const {
  const CanaryRequest& params = x.admission.request;
  if (params.bytes > kBufferedResponseLimit) {
    // Only with limits raised above the reference's 4 MiB: the platform's
    // response size cap.
    x.error = true;
    SetText(plan, 502, "Internal Server Error");
    return;
  }
  PlanPayload(&x.admission, plan);
}

void FunctionUrl::WriteStream(Exchange& x, ResponsePlan* plan) const {
  const CanaryRequest& params = x.admission.request;
  PlanPayload(&x.admission, plan);
  plan->framing = ResponsePlan::Framing::kChunked;
  plan->chunk_bytes = params.chunk;
  plan->chunk_gap = absl::Milliseconds(params.gap_ms);
  if (context_->shape_streaming) {
    plan->shape_after = kStreamUnshapedBytes;
    plan->shape_bytes_per_second = kStreamShapedBytesPerSecond;
  }
}

void FunctionUrl::ApplyFault(Exchange& x, ResponsePlan* plan) const {
  const v1::FaultRule& fault = *x.fault;
  const uint64_t size = plan->body_size();
  switch (fault.effect()) {
    case v1::FAULT_EFFECT_PHANTOM_ERROR:
      x.error = true;
      break;
    case v1::FAULT_EFFECT_HTTP_STATUS:
      ReplaceWithPlatformError(x, plan);
      if (fault.status() >= 500) x.error = true;
      break;
    case v1::FAULT_EFFECT_TRUNCATE:
      plan->cut = ResponsePlan::Cut::kClose;
      plan->cut_after = std::min<uint64_t>(fault.after_bytes(), size);
      plan->final_chunk_on_cut = fault.final_chunk();
      break;
    case v1::FAULT_EFFECT_RESET:
      plan->cut = ResponsePlan::Cut::kReset;
      plan->cut_after = std::min<uint64_t>(fault.after_bytes(), size);
      break;
    case v1::FAULT_EFFECT_STALL: {
      plan->stall_after = std::min<uint64_t>(fault.after_bytes(), size);
      const absl::Duration stall = FromProto(fault.duration());
      plan->stall_for =
          stall > absl::ZeroDuration() ? stall : absl::InfiniteDuration();
      break;
    }
    case v1::FAULT_EFFECT_DELAY_FIRST_BYTE:
      plan->first_byte_delay = FromProto(fault.duration());
      break;
    case v1::FAULT_EFFECT_SLOW_BODY:
      plan->bytes_per_second = fault.bytes_per_second();
      break;
    case v1::FAULT_EFFECT_CORRUPT:
      if (fault.after_bytes() < size) {
        plan->corrupt_offset = static_cast<int64_t>(fault.after_bytes());
      }
      break;
    default:
      break;
  }
  if (fault.platform_error()) x.error = true;
}

void FunctionUrl::ReplaceWithPlatformError(const Exchange& x,
                                           ResponsePlan* plan) const {
  const int status = x.fault->status();
  plan->payload = false;
  plan->framing = ResponsePlan::Framing::kContentLength;
  plan->shape_bytes_per_second = 0;
  std::vector<std::pair<std::string, std::string>> kept;
  for (auto& h : plan->headers) {
    // The platform's error replaces the function's response.
    if (!absl::StartsWithIgnoreCase(h.first, "x-canary-") &&
        !absl::EqualsIgnoreCase(h.first, "content-type") &&
        !absl::EqualsIgnoreCase(h.first, "cache-control") &&
        !absl::StartsWithIgnoreCase(h.first, "x-amzn-Remapped")) {
      kept.push_back(std::move(h));
    }
  }
  plan->headers = std::move(kept);
  if (x.probe_id) plan->headers.emplace_back("x-canary-probe-id", *x.probe_id);
  if (status >= 500) {
    SetText(plan, status, "Internal Server Error");
  } else {
    SetText(plan, status, absl::StrCat(ReasonPhrase(status), "\n"));
  }
}

void FunctionUrl::RecordFault(const Exchange& x) {
  const v1::FaultRule& fault = *x.fault;
  v1::InjectedFault truth;
  *truth.mutable_time() = ToProto(x.start);
  truth.set_region(region_->config.name());
  truth.set_alias(alias_);
  truth.set_mode(mode_);
  truth.set_bytes(x.admission.request.bytes);
  truth.set_effect(fault.effect());
  truth.set_rule(fault.name());
  truth.set_request_id(x.request_id);
  truth.set_probe_id(x.probe_id.value_or(""));
  *truth.mutable_scenario_elapsed() = ToProto(x.scenario_time.elapsed);
  if (fault.effect() == v1::FAULT_EFFECT_HTTP_STATUS) {
    truth.set_status(fault.status());
  }
  truth.set_platform_error(x.error);
  context_->truth->Append(std::move(truth));
  absl::MutexLock lock(&counters_->mu);
  ++counters_->faults[EffectLabel(fault.effect())];
}

void FunctionUrl::Account(const Exchange& x, ResponsePlan* plan) {
  // Metrics stamped at the request's start.
  MetricStore& m = region_->metrics;
  const std::string& function = region_->config.function_name();
  const absl::Time start = x.start;
  const int status = plan->status;
  m.Record(function, alias_, LambdaMetric::kUrlRequestCount, 1, start);
  m.Record(function, alias_, LambdaMetric::kUrl4xxCount,
           status >= 400 && status < 500 ? 1 : 0, start);
  m.Record(function, alias_, LambdaMetric::kUrl5xxCount, status >= 500 ? 1 : 0,
           start);
  if (x.throttled) {
    m.Record(function, alias_, LambdaMetric::kThrottles, 1, start);
  }
  if (x.invoked) {
    m.Record(function, alias_, LambdaMetric::kInvocations, 1, start);
    m.Record(function, alias_, LambdaMetric::kErrors, x.error ? 1 : 0, start);
  }
  if (!x.invoked && x.took_slot) region_->in_flight.fetch_sub(1);
  ++(status < 400   ? counters_->code_2xx
     : status < 500 ? counters_->code_4xx
                    : counters_->code_5xx);
  Clock* clock = context_->clock;
  const absl::Duration start_mono = x.start_mono;
  const bool invoked = x.invoked;
  RegionState* region = region_;
  std::string alias = alias_;
  plan->on_done = [region, clock, start, start_mono, invoked,
                   alias = std::move(alias)](const Completion&) {
    const double ms =
        absl::ToDoubleMilliseconds(clock->MonotonicNow() - start_mono);
    const std::string& fn = region->config.function_name();
    region->metrics.Record(fn, alias, LambdaMetric::kUrlRequestLatency, ms,
                           start);
    if (invoked) {
      region->metrics.Record(fn, alias, LambdaMetric::kDuration, ms, start);
      region->in_flight.fetch_sub(1);
    }
  };
}

}  // namespace emulator
}  // namespace fleetcanary
