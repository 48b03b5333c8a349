// CloudWatch GetMetricData over the AWS JSON 1.0 protocol, answered from a
// MetricStore (one per emulated region).
//
// Request: POST / with X-Amz-Target
// GraniteServiceVersion20100801.GetMetricData and a JSON body
// {MetricDataQueries[{Id, MetricStat{Metric{Namespace, MetricName,
// Dimensions[{Name,Value}]}, Period, Stat}, Label, ReturnData}], StartTime,
// EndTime (epoch seconds, or ISO 8601 strings), NextToken, ScanBy,
// MaxDatapoints}. Response {MetricDataResults[{Id, Label, Timestamps[],
// Values[], StatusCode, Messages[]}], NextToken, Messages[]}.
//
// Series are AWS/Lambda metrics with dimensions {FunctionName} or
// {FunctionName, Resource}; any other namespace or dimension set has no data
// (Complete, empty), as on CloudWatch. Pagination: at most MaxDatapoints
// (default 100,800) datapoints per response; a cut query answers
// PartialData and the response carries an opaque NextToken that resumes it.
// Math expressions are refused (400 InvalidParameterValue).
//
// Thread-safety: pure function over a thread-safe store.
#ifndef FLEETCANARY_EMULATOR_PLATFORM_GET_METRIC_DATA_H_
#define FLEETCANARY_EMULATOR_PLATFORM_GET_METRIC_DATA_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "emulator/platform/metric_store.h"

namespace fleetcanary {
namespace emulator {

inline constexpr char kGetMetricDataTarget[] =
    "GraniteServiceVersion20100801.GetMetricData";
inline constexpr char kAwsJson10ContentType[] = "application/x-amz-json-1.0";

struct JsonResponse {
  int status = 200;
  std::string body;
};

// Answers one AWS JSON 1.0 call to the CloudWatch endpoint. `target` is the
// X-Amz-Target header. 400 with {"__type": ..., "message": ...} for unknown
// operations, malformed JSON and invalid parameters.
JsonResponse HandleCloudWatchJson(absl::string_view target,
                                  absl::string_view body,
                                  const MetricStore& store, absl::Time now);

// The JSON 1.0 error body.
std::string AwsJsonError(absl::string_view type, absl::string_view message);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_PLATFORM_GET_METRIC_DATA_H_
