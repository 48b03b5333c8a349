// Reads the canary function's own platform metrics (namespace AWS/Lambda)
// from CloudWatch GetMetricData, so the controller can reconcile what clients
// saw with what the platform counted (phantom errors, docs/architecture.md).
//
// Wire: AWS JSON 1.0 (the Query protocol's GetMetricData is answered with
// the same data; see emulator/platform/cloudwatch_query.h) — POST / with
// Content-Type application/x-amz-json-1.0 and X-Amz-Target
// GraniteServiceVersion20100801.GetMetricData, signed with SigV4 (service
// "monitoring", the target's region), over libcurl. Endpoint
// https://monitoring.<region>.amazonaws.com, or the target's
// CloudWatchIdentity.endpoint (emulator, tests). One query per (target,
// metric) with dimensions FunctionName and, when an alias is set,
// Resource=<function>:<alias>; at most 500 queries per call; pages followed
// through NextToken.
//
// Thread-safety: a client is thread-safe; calls run independently.
#ifndef FLEETCANARY_AGENT_PLATFORM_CLOUDWATCH_CLIENT_H_
#define FLEETCANARY_AGENT_PLATFORM_CLOUDWATCH_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace platform {

// One Function URL whose platform metrics are read.
struct MetricsTarget {
  std::string region;
  std::string target;  // Target name (metric label).
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  v1::CloudWatchIdentity identity;
  // Target.role_arn: read with that role's credentials
  // (CloudWatchClientOptions::role_credentials); empty = the client's own.
  std::string role_arn;
};

// A metric and the statistic read for it.
struct MetricSpec {
  std::string name;  // "Errors".
  std::string stat;  // "Sum", "Average", ...
};

// Invocations, Errors, Throttles, UrlRequestCount, Url4xxCount, Url5xxCount
// (Sum), Duration and UrlRequestLatency (Average).
std::vector<MetricSpec> DefaultLambdaMetrics();

struct MetricDataResult {
  // One sample per datapoint, ascending by time within each series.
  std::vector<v1::PlatformMetricSample> samples;
  // False when any query ended PartialData without a further page; the
  // window should be read again later.
  bool complete = true;
  // Messages CloudWatch attached to results or to the response.
  std::vector<std::string> messages;
};

// The sample of `metric` for `target` over the period starting at
// `period_start` and lasting `period` (whole seconds): the target's region,
// name and mode, its FunctionName and, when an alias is set, Resource
// "<function>:<alias>", and `value`.
v1::PlatformMetricSample MakePlatformSample(const MetricsTarget& target,
                                            const MetricSpec& metric,
                                            absl::Time period_start,
                                            absl::Duration period,
                                            double value);

class PlatformMetricsClient {
 public:
  virtual ~PlatformMetricsClient() = default;

  // Reads `metrics` of every target for periods starting in [start, end),
  // aggregated over `period` (whole seconds, > 0). Errors: INVALID_ARGUMENT
  // for bad arguments or a 400 from the service, PERMISSION_DENIED for 403
  // or a Forbidden result, UNAVAILABLE for transport failures, throttling,
  // 5xx and InternalError results, RESOURCE_EXHAUSTED past the page or size
  // limits. All-or-nothing: no samples on error.
  virtual absl::StatusOr<MetricDataResult> GetMetricData(
      const std::vector<MetricsTarget>& targets,
      const std::vector<MetricSpec>& metrics, absl::Time start, absl::Time end,
      absl::Duration period) = 0;
};

struct CloudWatchClientOptions {
  // Used when `sign` is set: `credentials_source` when set (asked before
  // every request, e.g. a refreshing aws::CredentialsCache; an error fails
  // the call with UNAVAILABLE naming it), else the static `credentials`.
  sigv4::Credentials credentials;
  std::function<absl::StatusOr<sigv4::Credentials>()> credentials_source;
  // Credentials of an assumed role, for targets with a role_arn (asked
  // before every request; must not block). Unset: such targets fail with
  // UNAVAILABLE.
  std::function<absl::StatusOr<sigv4::Credentials>(const std::string& role_arn)>
      role_credentials;
  // Endpoint for targets without their own (AWS_ENDPOINT_URL_CLOUDWATCH);
  // empty = the partition's regional endpoint.
  std::string default_endpoint;
  // Sign requests with SigV4 (service "monitoring"). Off only for an
  // endpoint that does not check signatures (the emulator without
  // monitoring_auth); credentials are then not needed.
  bool sign = true;
  // Signing time source. Not owned; must outlive the client. Required.
  Clock* clock = nullptr;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Whole HTTP exchange, per page.
  absl::Duration request_timeout = absl::Seconds(20);
  // Largest response body accepted per page.
  size_t max_response_bytes = 32 << 20;
  // Pages followed per call (per endpoint group and batch of 500 queries).
  int max_pages = 100;
  // CA bundle path; empty = system default.
  std::string ca_file;
  // Skip TLS verification (tests only).
  bool insecure_skip_verify = false;
};

// INVALID_ARGUMENT when the clock is missing, or credentials when signing.
absl::StatusOr<std::unique_ptr<PlatformMetricsClient>> CreateCloudWatchClient(
    const CloudWatchClientOptions& options);

// The endpoint used for `target`: its identity's endpoint, else
// `default_endpoint` when set, else the partition's
// "https://monitoring.<region>.<suffix>" (amazonaws.com, amazonaws.com.cn).
std::string EndpointFor(const MetricsTarget& target,
                        absl::string_view default_endpoint = "");

}  // namespace platform
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PLATFORM_CLOUDWATCH_CLIENT_H_
