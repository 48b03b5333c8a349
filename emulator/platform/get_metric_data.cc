#include "emulator/platform/get_metric_data.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

using nlohmann::json;

constexpr int64_t kMaxDatapointsDefault = 100800;
constexpr size_t kMaxQueries = 500;

struct Failure {
  std::string type;
  std::string message;
};

// CloudWatch timestamps on JSON 1.0 are epoch seconds (possibly fractional);
// accept ISO 8601 strings too.
std::optional<absl::Time> ParseTime(const json& v) {
  if (v.is_number()) {
    return absl::FromUnixMicros(
        static_cast<int64_t>(std::llround(v.get<double>() * 1e6)));
  }
  if (v.is_string()) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, v.get<std::string>(), &t, &err)) {
      return t;
    }
  }
  return std::nullopt;
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 255 || !(id[0] >= 'a' && id[0] <= 'z')) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

struct Query {
  std::string id;
  std::string label;
  bool return_data = true;
  std::vector<Datapoint> points;  // In response order.
};

std::string EncodeToken(size_t query, size_t offset) {
  return absl::Base64Escape(absl::StrCat("fc1:", query, ":", offset));
}

bool DecodeToken(const std::string& token, size_t* query, size_t* offset) {
  std::string raw;
  if (!absl::Base64Unescape(token, &raw)) return false;
  std::vector<std::string> parts = absl::StrSplit(raw, ':');
  return parts.size() == 3 && parts[0] == "fc1" &&
         absl::SimpleAtoi(parts[1], query) &&
         absl::SimpleAtoi(parts[2], offset);
}

// The request-wide part of a GetMetricData call.
struct QueryWindow {
  absl::Time start;
  absl::Time end;
  bool descending = true;  // ScanBy TimestampDescending (the default).
};

// Checks the request object and its MetricDataQueries list, and reads
// StartTime, EndTime and ScanBy into `window`; Failure on bad input.
std::optional<Failure> ParseQueryWindow(const json& req, QueryWindow* window) {
  if (!req.is_object())
    return Failure{"SerializationException", "body must be a JSON object"};
  if (!req.contains("MetricDataQueries") ||
      !req["MetricDataQueries"].is_array() ||
      req["MetricDataQueries"].empty()) {
    return Failure{"MissingParameter",
                   "The parameter MetricDataQueries is required."};
  }
  if (req["MetricDataQueries"].size() > kMaxQueries) {
    return Failure{"InvalidParameterValue",
                   "MetricDataQueries: at most 500 queries per call"};
  }
  for (const char* field : {"StartTime", "EndTime"}) {
    if (!req.contains(field)) {
      return Failure{"MissingParameter",
                     absl::StrCat("The parameter ", field, " is required.")};
    }
  }
  std::optional<absl::Time> start = ParseTime(req["StartTime"]);
  std::optional<absl::Time> end = ParseTime(req["EndTime"]);
  if (!start || !end) {
    return Failure{"InvalidParameterValue",
                   "StartTime/EndTime: expected epoch seconds or ISO 8601"};
  }
  if (*end <= *start) {
    return Failure{"InvalidParameterValue",
                   "The parameter StartTime must be less than the parameter "
                   "EndTime."};
  }
  window->start = *start;
  window->end = *end;
  if (req.contains("ScanBy")) {
    const json& s = req["ScanBy"];
    if (s == "TimestampAscending") {
      window->descending = false;
    } else if (s != "TimestampDescending") {
      return Failure{"InvalidParameterValue",
                     "ScanBy: TimestampDescending or TimestampAscending"};
    }
  }
  return std::nullopt;
}

// Checks query `q` (at `where`) up to the presence of its MetricStat fields
// and reads its Id (unique per call, counted in `seen_ids`) and ReturnData
// into `out`; Failure on bad input, metric math included.
std::optional<Failure> ParseQueryShape(const json& q, const std::string& where,
                                       std::map<std::string, int>* seen_ids,
                                       Query* out) {
  if (!q.is_object()) {
    return Failure{"InvalidParameterValue", where + ": must be an object"};
  }
  out->id = q.value("Id", "");
  if (!ValidId(out->id)) {
    return Failure{"InvalidParameterValue",
                   where +
                       ".Id: must start with a lower-case letter and "
                       "hold only letters, digits and underscores"};
  }
  if ((*seen_ids)[out->id]++ > 0) {
    return Failure{"InvalidParameterValue",
                   where + ".Id: duplicate id " + out->id};
  }
  out->return_data = q.value("ReturnData", true);
  if (q.contains("Expression")) {
    return Failure{"InvalidParameterValue",
                   where +
                       ".Expression: metric math is not supported by "
                       "the emulator"};
  }
  if (!q.contains("MetricStat") || !q["MetricStat"].is_object()) {
    return Failure{"MissingParameter", where + ".MetricStat is required"};
  }
  const json& ms = q["MetricStat"];
  if (!ms.contains("Metric") || !ms["Metric"].is_object() ||
      !ms.contains("Period") || !ms["Period"].is_number_integer() ||
      !ms.contains("Stat") || !ms["Stat"].is_string()) {
    return Failure{"MissingParameter",
                   where +
                       ".MetricStat: Metric, Period (integer) and Stat "
                       "are required"};
  }
  return std::nullopt;
}

// The dimensions of a Lambda metric the emulator can answer for.
struct LambdaDimensions {
  std::string function;  // FunctionName.
  std::string resource;  // Resource ("function:alias"), may be empty.
  bool other = false;    // Any other dimension (never answered).
};

// Reads `metric`'s Dimensions (at `where`); Failure when it is not a list.
std::optional<Failure> ParseDimensions(const json& metric,
                                       const std::string& where,
                                       LambdaDimensions* dims) {
  if (!metric.contains("Dimensions")) return std::nullopt;
  if (!metric["Dimensions"].is_array()) {
    return Failure{"InvalidParameterValue",
                   where + ".MetricStat.Metric.Dimensions: must be a list"};
  }
  for (const json& d : metric["Dimensions"]) {
    const std::string dn = d.is_object() ? d.value("Name", "") : "";
    const std::string dv = d.is_object() ? d.value("Value", "") : "";
    if (dn == "FunctionName") {
      dims->function = dv;
    } else if (dn == "Resource") {
      dims->resource = dv;
    } else {
      dims->other = true;
    }
  }
  return std::nullopt;
}

// Reads the Label of query `q` (REQUIRES: ParseQueryShape passed) and, for
// an AWS/Lambda metric of a function the store knows how to answer, its
// datapoints in `window` into `out`; other metrics get none. Failure on bad
// input.
std::optional<Failure> EvaluateMetricStat(const json& q,
                                          const std::string& where,
                                          const QueryWindow& window,
                                          const MetricStore& store,
                                          absl::Time now, Query* out) {
  const json& ms = q["MetricStat"];
  const json& metric = ms["Metric"];
  const std::string ns = metric.value("Namespace", "");
  const std::string name = metric.value("MetricName", "");
  out->label = q.value("Label", name);
  const int64_t period_s = ms["Period"].get<int64_t>();
  if (period_s <= 0) {
    return Failure{"InvalidParameterValue",
                   where + ".MetricStat.Period: must be positive"};
  }
  LambdaDimensions dims;
  if (auto failure = ParseDimensions(metric, where, &dims)) return failure;
  std::optional<LambdaMetric> lm = LambdaMetricFromName(name);
  if (ns == "AWS/Lambda" && lm.has_value() && !dims.function.empty() &&
      !dims.other) {
    absl::StatusOr<std::vector<Datapoint>> points = store.Query(
        dims.function, dims.resource, *lm, window.start, window.end,
        absl::Seconds(period_s), ms["Stat"].get<std::string>(), now);
    if (!points.ok()) {
      return Failure{"InvalidParameterValue",
                     absl::StrCat(where, ".MetricStat.",
                                  std::string(points.status().message()))};
    }
    out->points = *std::move(points);
    if (window.descending) std::reverse(out->points.begin(), out->points.end());
  }
  return std::nullopt;
}

// Builds the datapoints of every query; Failure on bad input.
std::optional<Failure> EvaluateQueries(const json& req,
                                       const MetricStore& store, absl::Time now,
                                       std::vector<Query>* queries) {
  QueryWindow window;
  if (auto failure = ParseQueryWindow(req, &window)) return failure;
  std::map<std::string, int> seen_ids;
  const json& list = req["MetricDataQueries"];
  for (size_t i = 0; i < list.size(); ++i) {
    const json& q = list[i];
    const std::string where = absl::StrCat("MetricDataQueries[", i, "]");
    Query out;
    if (auto failure = ParseQueryShape(q, where, &seen_ids, &out)) {
      return failure;
    }
    if (auto failure = EvaluateMetricStat(q, where, window, store, now, &out)) {
      return failure;
    }
    queries->push_back(std::move(out));
  }
  return std::nullopt;
}

JsonResponse HandleGetMetricData(absl::string_view body,
                                 const MetricStore& store, absl::Time now) {
  json req;
  try {
    req = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    return {400, AwsJsonError("SerializationException",
                              absl::StrCat("malformed JSON: ", e.what()))};
  }
  std::vector<Query> queries;
  try {
    std::optional<Failure> failure = EvaluateQueries(req, store, now, &queries);
    if (failure) return {400, AwsJsonError(failure->type, failure->message)};
  } catch (const json::exception& e) {
    return {400, AwsJsonError("InvalidParameterValue",
                              absl::StrCat("wrong type: ", e.what()))};
  }
  int64_t budget = kMaxDatapointsDefault;
  if (req.contains("MaxDatapoints")) {
    if (!req["MaxDatapoints"].is_number_integer() ||
        req["MaxDatapoints"].get<int64_t>() <= 0) {
      return {400, AwsJsonError("InvalidParameterValue",
                                "MaxDatapoints: must be a positive integer")};
    }
    budget = std::min(budget, req["MaxDatapoints"].get<int64_t>());
  }
  size_t first_query = 0, first_offset = 0;
  if (req.contains("NextToken") && !req["NextToken"].is_null()) {
    if (!req["NextToken"].is_string() ||
        !DecodeToken(req["NextToken"].get<std::string>(), &first_query,
                     &first_offset) ||
        first_query >= queries.size() ||
        first_offset > queries[first_query].points.size()) {
      return {400,
              AwsJsonError("InvalidNextToken", "The NextToken is invalid.")};
    }
  }
  json results = json::array();
  std::optional<std::string> next_token;
  for (size_t qi = first_query; qi < queries.size(); ++qi) {
    const Query& q = queries[qi];
    const size_t offset = qi == first_query ? first_offset : 0;
    if (!q.return_data) continue;
    if (budget <= 0 && offset < q.points.size()) {
      next_token = EncodeToken(qi, offset);
      break;
    }
    const size_t take =
        std::min<size_t>(q.points.size() - offset, static_cast<size_t>(budget));
    json timestamps = json::array(), values = json::array();
    for (size_t k = offset; k < offset + take; ++k) {
      timestamps.push_back(absl::ToUnixSeconds(q.points[k].timestamp));
      values.push_back(q.points[k].value);
    }
    budget -= static_cast<int64_t>(take);
    const bool complete = offset + take == q.points.size();
    results.push_back({{"Id", q.id},
                       {"Label", q.label},
                       {"Timestamps", timestamps},
                       {"Values", values},
                       {"StatusCode", complete ? "Complete" : "PartialData"},
                       {"Messages", json::array()}});
    if (!complete) {
      next_token = EncodeToken(qi, offset + take);
      break;
    }
  }
  json resp = {{"MetricDataResults", results}, {"Messages", json::array()}};
  if (next_token) resp["NextToken"] = *next_token;
  return {200, resp.dump()};
}

}  // namespace

std::string AwsJsonError(absl::string_view type, absl::string_view message) {
  return json{{"__type", std::string(type)}, {"message", std::string(message)}}
      .dump();
}

JsonResponse HandleCloudWatchJson(absl::string_view target,
                                  absl::string_view body,
                                  const MetricStore& store, absl::Time now) {
  if (target == kGetMetricDataTarget) {
    return HandleGetMetricData(body, store, now);
  }
  return {400, AwsJsonError(
                   "UnknownOperationException",
                   absl::StrCat("Unknown operation ", std::string(target)))};
}

}  // namespace emulator
}  // namespace fleetcanary
