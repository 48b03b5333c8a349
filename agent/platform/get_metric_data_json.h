// Private to the CloudWatch client: the JSON side of GetMetricData for one
// batch of queries (the request body, merging response pages, turning the
// gathered datapoints into samples). No I/O; cloudwatch_client.cc signs,
// sends and pages.
#ifndef FLEETCANARY_AGENT_PLATFORM_GET_METRIC_DATA_JSON_H_
#define FLEETCANARY_AGENT_PLATFORM_GET_METRIC_DATA_JSON_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/platform/cloudwatch_client.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace platform {
namespace cloudwatch_internal {

// One query of a batch: which target and which metric it reads.
struct QueryRef {
  size_t target;  // Index into the caller's targets.
  size_t metric;  // Index into the caller's metrics.
};

// What the pages of one batch returned so far, per query (same indices as
// the batch's queries).
struct BatchPoints {
  explicit BatchPoints(size_t queries)
      : points(queries), last_status(queries, "Complete") {}

  // Datapoints gathered over all pages.
  std::vector<std::vector<std::pair<absl::Time, double>>> points;
  // StatusCode of the last page that mentioned the query.
  std::vector<std::string> last_status;
};

// The GetMetricData request for one batch, without NextToken. Each query
// gets the Id "q<index>"; `by_id` maps those Ids back to indices in `queries`.
nlohmann::json BuildBatchRequest(const std::vector<MetricsTarget>& targets,
                                 const std::vector<MetricSpec>& metrics,
                                 const std::vector<QueryRef>& queries,
                                 absl::Time start, absl::Time end,
                                 int64_t period_s,
                                 std::map<std::string, size_t>* by_id);

// Merges one parsed response page into `batch` and `result` (datapoints,
// statuses, messages). Returns the page's NextToken, empty when it is the
// last page. Errors: a result without Id, a failing StatusCode, malformed
// Timestamps or Values.
absl::StatusOr<std::string> MergePage(
    const nlohmann::json& response, const std::map<std::string, size_t>& by_id,
    const std::vector<MetricsTarget>& targets,
    const std::vector<MetricSpec>& metrics,
    const std::vector<QueryRef>& queries, BatchPoints* batch,
    MetricDataResult* result);

// Turns the gathered datapoints into samples in `result`, query by query;
// any query whose last status was PartialData marks the result incomplete.
void AppendSamples(const std::vector<MetricsTarget>& targets,
                   const std::vector<MetricSpec>& metrics,
                   const std::vector<QueryRef>& queries,
                   const BatchPoints& batch, int64_t period_s,
                   MetricDataResult* result);

}  // namespace cloudwatch_internal
}  // namespace platform
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PLATFORM_GET_METRIC_DATA_JSON_H_
