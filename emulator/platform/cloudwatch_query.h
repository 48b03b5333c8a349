// CloudWatch GetMetricData over the AWS Query protocol (what botocore and
// older SDKs speak): a form body "Action=GetMetricData&Version=2010-08-01&
// MetricDataQueries.member.1.Id=..." in, XML out. The form is turned into
// the JSON 1.0 request and answered by HandleCloudWatchJson, so both
// protocols see exactly the same data; errors become Query <ErrorResponse>
// documents with the same codes.
//
// Thread-safety: pure function over a thread-safe store.
#ifndef FLEETCANARY_EMULATOR_PLATFORM_CLOUDWATCH_QUERY_H_
#define FLEETCANARY_EMULATOR_PLATFORM_CLOUDWATCH_QUERY_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "emulator/platform/get_metric_data.h"
#include "emulator/platform/metric_store.h"

namespace fleetcanary {
namespace emulator {

inline constexpr char kCloudWatchXmlns[] =
    "http://monitoring.amazonaws.com/doc/2010-08-01/";

// Answers one Query-protocol call. `body` is the form; `request_id` goes
// into ResponseMetadata. The body of the response is XML.
JsonResponse HandleCloudWatchQuery(absl::string_view body,
                                   const MetricStore& store, absl::Time now,
                                   absl::string_view request_id);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_PLATFORM_CLOUDWATCH_QUERY_H_
