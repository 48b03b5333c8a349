#include "emulator/function/function_url.h"

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

// What happened to one request, for metrics.
struct Accounting {
  bool invoked = false;
  bool error = false;
  bool throttled = false;
};

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
  Clock* clock = context_->clock;
  const absl::Time start = clock->Now();
  const absl::Duration start_mono = clock->MonotonicNow();
  const uint64_t n = context_->request_counter.fetch_add(1);
  const std::string request_id = MakeRequestId(context_->request_id_seed, n);
  const uint64_t trace_bits = SplitMix64(context_->request_id_seed + ~n);
  const std::string region_name = region_->config.name();
  const std::string& function = region_->config.function_name();

  plan->headers.emplace_back(
      "Date", absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", start,
                               absl::UTCTimeZone()));
  plan->headers.emplace_back("x-amzn-RequestId", request_id);
  plan->headers.emplace_back(
      "X-Amzn-Trace-Id",
      absl::StrFormat("Root=1-%08x-%08x%016x;Parent=%016x;Sampled=0",
                      static_cast<uint32_t>(absl::ToUnixSeconds(start)),
                      static_cast<uint32_t>(trace_bits >> 32),
                      SplitMix64(trace_bits), SplitMix64(trace_bits + 1)));

  Accounting acct;
  auto set_json_error = [&](int status, const char* type,
                            const std::string& body) {
    plan->status = status;
    plan->headers.emplace_back("Content-Type", "application/json");
    plan->headers.emplace_back("x-amzn-ErrorType", type);
    plan->body = body;
  };
  auto set_text = [&](int status, const std::string& body) {
    plan->status = status;
    plan->headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
    plan->body = body;
  };

  const std::optional<std::string> probe_id = ProbeIdHeader(request);
  CanaryAdmission admission;
  std::optional<v1::FaultRule> fault;
  ScenarioTime scenario_time;
  bool took_slot = false;

  [&] {
    // 1. Auth. Every path reaches the function (2.), as on AWS.
    if (region_->config.auth() == v1::AWS_IAM) {
      std::vector<sigv4::HeaderView> headers;
      headers.reserve(request.headers.size());
      for (const auto& [name, value] : request.headers) {
        headers.push_back({name, value});
      }
      sigv4::HttpRequestView view{request.method, request.target, headers,
                                  request.body, ""};
      sigv4::VerifyOptions options;
      options.service = "lambda";
      options.region = region_name;
      options.now = start;
      options.max_skew = context_->max_clock_skew;
      const auto& creds = context_->credentials;
      sigv4::CredentialsLookup lookup = context_->lookup;
      if (!lookup) {
        lookup =
            [&creds](
                absl::string_view key) -> absl::StatusOr<sigv4::Credentials> {
          for (const v1::EmulatorCredential& c : creds) {
            if (c.access_key_id() == key) {
              return sigv4::Credentials{
                  c.access_key_id(), c.secret_access_key(), c.session_token()};
            }
          }
          return absl::NotFoundError("unknown access key");
        };
      }
      absl::Status verified = sigv4::VerifyRequest(view, lookup, options);
      if (!verified.ok()) {
        set_json_error(
            403, "AccessDeniedException",
            nlohmann::json{{"Message", std::string(verified.message())}}
                .dump());
        return;
      }
    }
    // 2. What the canary function will answer (deploy/lambda's rules).
    admission = AdmitCanaryRequest(
        request.method, request.Path(), request.Query(),
        probe_id ? &*probe_id : nullptr, mode_, context_->canary_limits);
    // 3. Reserved concurrency.
    // Take a concurrency slot now; given back below unless invoked.
    const uint32_t reserved = region_->config.reserved_concurrency();
    took_slot = true;
    if (region_->in_flight.fetch_add(1) >= reserved && reserved > 0) {
      acct.throttled = true;
    }
    // 4. Scenario: faults strike canary invocations the function accepts.
    if (!acct.throttled && admission.status == 200) {
      FaultDecision decision = context_->scenario->Decide(
          InvocationFacts{region_name, mode_, admission.request.bytes});
      scenario_time = decision.time;
      fault = std::move(decision.rule);
      if (fault && fault->effect() == v1::FAULT_EFFECT_THROTTLE) {
        acct.throttled = true;
      }
    }
    if (acct.throttled) {
      set_json_error(429, "TooManyRequestsException",
                     "{\"Message\":\"Rate Exceeded.\"}");
      return;
    }
    // 5. The function.
    acct.invoked = true;
    if (admission.status != 200) {
      plan->status = admission.status;
      for (auto& h : admission.headers) plan->headers.push_back(std::move(h));
      plan->body = std::move(admission.body);
      return;
    }
    const CanaryRequest& params = admission.request;
    if (mode_ == v1::BUFFERED && params.bytes > kBufferedResponseLimit) {
      // Only with limits raised above the reference's 4 MiB: the platform's
      // response size cap.
      acct.error = true;
      set_text(502, "Internal Server Error");
      return;
    }
    plan->status = 200;
    for (auto& h : admission.headers) plan->headers.push_back(std::move(h));
    plan->headers.emplace_back("x-amzn-Remapped-content-length",
                               absl::StrCat(params.bytes));
    plan->payload = true;
    plan->payload_seed = params.seed;
    plan->payload_size = params.bytes;
    if (mode_ == v1::RESPONSE_STREAM) {
      plan->framing = ResponsePlan::Framing::kChunked;
      plan->chunk_bytes = params.chunk;
      plan->chunk_gap = absl::Milliseconds(params.gap_ms);
      if (context_->shape_streaming) {
        plan->shape_after = kStreamUnshapedBytes;
        plan->shape_bytes_per_second = kStreamShapedBytesPerSecond;
      }
    }
  }();

  // Apply the scenario's fault to the planned response.
  if (fault && acct.invoked) {
    const uint64_t size = plan->body_size();
    switch (fault->effect()) {
      case v1::FAULT_EFFECT_PHANTOM_ERROR:
        acct.error = true;
        break;
      case v1::FAULT_EFFECT_HTTP_STATUS: {
        const int status = fault->status();
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
        if (probe_id)
          plan->headers.emplace_back("x-canary-probe-id", *probe_id);
        if (status >= 500) {
          acct.error = true;
          set_text(status, "Internal Server Error");
        } else {
          set_text(status, absl::StrCat(ReasonPhrase(status), "\n"));
        }
        break;
      }
      case v1::FAULT_EFFECT_TRUNCATE:
        plan->cut = ResponsePlan::Cut::kClose;
        plan->cut_after = std::min<uint64_t>(fault->after_bytes(), size);
        plan->final_chunk_on_cut = fault->final_chunk();
        break;
      case v1::FAULT_EFFECT_RESET:
        plan->cut = ResponsePlan::Cut::kReset;
        plan->cut_after = std::min<uint64_t>(fault->after_bytes(), size);
        break;
      case v1::FAULT_EFFECT_STALL: {
        plan->stall_after = std::min<uint64_t>(fault->after_bytes(), size);
        const auto& d = fault->duration();
        const absl::Duration stall =
            absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
        plan->stall_for =
            stall > absl::ZeroDuration() ? stall : absl::InfiniteDuration();
        break;
      }
      case v1::FAULT_EFFECT_DELAY_FIRST_BYTE: {
        const auto& d = fault->duration();
        plan->first_byte_delay =
            absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
        break;
      }
      case v1::FAULT_EFFECT_SLOW_BODY:
        plan->bytes_per_second = fault->bytes_per_second();
        break;
      case v1::FAULT_EFFECT_CORRUPT:
        if (fault->after_bytes() < size) {
          plan->corrupt_offset = static_cast<int64_t>(fault->after_bytes());
        }
        break;
      default:
        break;
    }
    if (fault->platform_error()) acct.error = true;
  }

  // Ground truth.
  if (fault) {
    v1::InjectedFault truth;
    *truth.mutable_time() = ToProto(start);
    truth.set_region(region_name);
    truth.set_alias(alias_);
    truth.set_mode(mode_);
    truth.set_bytes(admission.request.bytes);
    truth.set_effect(fault->effect());
    truth.set_rule(fault->name());
    truth.set_request_id(request_id);
    truth.set_probe_id(probe_id.value_or(""));
    *truth.mutable_scenario_elapsed() = ToProto(scenario_time.elapsed);
    if (fault->effect() == v1::FAULT_EFFECT_HTTP_STATUS) {
      truth.set_status(fault->status());
    }
    truth.set_platform_error(acct.error);
    context_->truth->Append(std::move(truth));
    absl::MutexLock lock(&counters_->mu);
    ++counters_->faults[absl::AsciiStrToLower(
        v1::FaultEffect_Name(fault->effect())
            .substr(sizeof("FAULT_EFFECT_") - 1))];
  }

  // Metrics stamped at the request's start.
  MetricStore& m = region_->metrics;
  const int status = plan->status;
  m.Record(function, alias_, LambdaMetric::kUrlRequestCount, 1, start);
  m.Record(function, alias_, LambdaMetric::kUrl4xxCount,
           status >= 400 && status < 500 ? 1 : 0, start);
  m.Record(function, alias_, LambdaMetric::kUrl5xxCount, status >= 500 ? 1 : 0,
           start);
  if (acct.throttled) {
    m.Record(function, alias_, LambdaMetric::kThrottles, 1, start);
  }
  if (acct.invoked) {
    m.Record(function, alias_, LambdaMetric::kInvocations, 1, start);
    m.Record(function, alias_, LambdaMetric::kErrors, acct.error ? 1 : 0,
             start);
  }
  if (!acct.invoked && took_slot) region_->in_flight.fetch_sub(1);
  ++(status < 400   ? counters_->code_2xx
     : status < 500 ? counters_->code_4xx
                    : counters_->code_5xx);
  const bool invoked = acct.invoked;
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
