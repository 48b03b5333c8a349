// The JSON side of GetMetricData (see get_metric_data_json.h).
#include "agent/platform/get_metric_data_json.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace platform {
namespace cloudwatch_internal {
namespace {

using json = nlohmann::json;

absl::StatusOr<absl::Time> ParseTimestamp(const json& value) {
  if (value.is_number()) {
    double seconds = value.get<double>();
    if (!std::isfinite(seconds)) {
      return absl::UnavailableError("GetMetricData: non-finite timestamp");
    }
    return absl::UnixEpoch() + absl::Seconds(seconds);
  }
  if (value.is_string()) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, value.get<std::string>(), &t,
                        &err)) {
      return t;
    }
  }
  return absl::UnavailableError("GetMetricData: malformed timestamp");
}

// Appends "Code: Value" for each entry of `holder["Messages"]`, if that is a
// list, to `messages`.
void AppendMessages(const json& holder, std::vector<std::string>* messages) {
  if (holder.contains("Messages") && holder["Messages"].is_array()) {
    for (const json& m : holder["Messages"]) {
      messages->push_back(
          absl::StrCat(m.value("Code", ""), ": ", m.value("Value", "")));
    }
  }
}

// OK for "Complete" and "PartialData"; otherwise the error GetMetricData
// reports for `status` of query `ref`.
absl::Status CheckStatusCode(const std::string& status,
                             const std::vector<MetricsTarget>& targets,
                             const std::vector<MetricSpec>& metrics,
                             const QueryRef& ref) {
  if (status == "Forbidden") {
    return absl::PermissionDeniedError(
        absl::StrCat("GetMetricData: Forbidden for ", metrics[ref.metric].name,
                     " of ", targets[ref.target].identity.function_name()));
  }
  if (status == "InternalError") {
    return absl::UnavailableError(absl::StrCat(
        "GetMetricData: InternalError for ", metrics[ref.metric].name, " of ",
        targets[ref.target].identity.function_name()));
  }
  if (status != "Complete" && status != "PartialData") {
    return absl::UnavailableError(
        absl::StrCat("GetMetricData: unknown StatusCode ", status));
  }
  return absl::OkStatus();
}

// Merges one MetricDataResults entry into `batch` (its datapoints and
// status) and its messages into `result`. A result for an Id not in `by_id`
// is noted in `result->messages` and skipped. Errors: a missing Id, a
// failing StatusCode, malformed Timestamps or Values.
absl::Status MergeQueryResult(const json& r,
                              const std::map<std::string, size_t>& by_id,
                              const std::vector<MetricsTarget>& targets,
                              const std::vector<MetricSpec>& metrics,
                              const std::vector<QueryRef>& queries,
                              BatchPoints* batch, MetricDataResult* result) {
  if (!r.is_object() || !r.contains("Id") || !r["Id"].is_string()) {
    return absl::UnavailableError("GetMetricData: a result has no Id");
  }
  auto it = by_id.find(r["Id"].get<std::string>());
  if (it == by_id.end()) {
    result->messages.push_back(absl::StrCat("ignored result for unknown Id ",
                                            r["Id"].get<std::string>()));
    return absl::OkStatus();
  }
  const size_t q = it->second;
  std::string status = r.value("StatusCode", "Complete");
  FC_RETURN_IF_ERROR(CheckStatusCode(status, targets, metrics, queries[q]));
  batch->last_status[q] = status;
  const json ts = r.value("Timestamps", json::array());
  const json vs = r.value("Values", json::array());
  if (!ts.is_array() || !vs.is_array() || ts.size() != vs.size()) {
    return absl::UnavailableError(
        "GetMetricData: Timestamps and Values differ in length");
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    FC_ASSIGN_OR_RETURN(absl::Time t, ParseTimestamp(ts[i]));
    if (!vs[i].is_number()) {
      return absl::UnavailableError("GetMetricData: non-numeric value");
    }
    batch->points[q].emplace_back(t, vs[i].get<double>());
  }
  AppendMessages(r, &result->messages);
  return absl::OkStatus();
}

}  // namespace

// The GetMetricData request for one batch, without NextToken. Each query
// gets the Id "q<index>"; `by_id` maps those Ids back to indices in `queries`.
json BuildBatchRequest(const std::vector<MetricsTarget>& targets,
                       const std::vector<MetricSpec>& metrics,
                       const std::vector<QueryRef>& queries, absl::Time start,
                       absl::Time end, int64_t period_s,
                       std::map<std::string, size_t>* by_id) {
  json request;
  json& list = request["MetricDataQueries"] = json::array();
  for (size_t q = 0; q < queries.size(); ++q) {
    const MetricsTarget& t = targets[queries[q].target];
    const MetricSpec& m = metrics[queries[q].metric];
    json dims = json::array();
    dims.push_back(
        {{"Name", "FunctionName"}, {"Value", t.identity.function_name()}});
    if (!t.identity.alias().empty()) {
      dims.push_back({{"Name", "Resource"},
                      {"Value", absl::StrCat(t.identity.function_name(), ":",
                                             t.identity.alias())}});
    }
    std::string id = absl::StrCat("q", q);
    (*by_id)[id] = q;
    list.push_back({{"Id", id},
                    {"MetricStat",
                     {{"Metric",
                       {{"Namespace", "AWS/Lambda"},
                        {"MetricName", m.name},
                        {"Dimensions", dims}}},
                      {"Period", period_s},
                      {"Stat", m.stat}}},
                    {"ReturnData", true}});
  }
  request["StartTime"] = absl::ToUnixSeconds(start);
  request["EndTime"] = absl::ToUnixSeconds(end);
  request["ScanBy"] = "TimestampAscending";
  return request;
}

// Merges one parsed response page: every MetricDataResults entry (see
// MergeQueryResult), then the page's own messages. Returns the page's
// NextToken, empty when it is the last page.
absl::StatusOr<std::string> MergePage(
    const json& response, const std::map<std::string, size_t>& by_id,
    const std::vector<MetricsTarget>& targets,
    const std::vector<MetricSpec>& metrics,
    const std::vector<QueryRef>& queries, BatchPoints* batch,
    MetricDataResult* result) {
  if (response.contains("MetricDataResults")) {
    const json& results = response["MetricDataResults"];
    if (!results.is_array()) {
      return absl::UnavailableError(
          "GetMetricData: MetricDataResults is not a list");
    }
    for (const json& r : results) {
      FC_RETURN_IF_ERROR(
          MergeQueryResult(r, by_id, targets, metrics, queries, batch, result));
    }
  }
  AppendMessages(response, &result->messages);
  if (response.contains("NextToken") && response["NextToken"].is_string()) {
    return response["NextToken"].get<std::string>();
  }
  return std::string();
}

// Turns the gathered datapoints into samples in `result`, query by query;
// any query whose last status was PartialData marks the result incomplete.
void AppendSamples(const std::vector<MetricsTarget>& targets,
                   const std::vector<MetricSpec>& metrics,
                   const std::vector<QueryRef>& queries,
                   const BatchPoints& batch, int64_t period_s,
                   MetricDataResult* result) {
  for (size_t q = 0; q < queries.size(); ++q) {
    if (batch.last_status[q] == "PartialData") result->complete = false;
    const MetricsTarget& t = targets[queries[q].target];
    const MetricSpec& m = metrics[queries[q].metric];
    for (const auto& [time, value] : batch.points[q]) {
      result->samples.push_back(
          MakePlatformSample(t, m, time, absl::Seconds(period_s), value));
    }
  }
}

}  // namespace cloudwatch_internal
}  // namespace platform
}  // namespace fleetcanary
