#include "emulator/platform/cloudwatch_query.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/aws/http.h"
#include "emulator/identity/identity.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

using json = nlohmann::json;

// Sets `value` at the dotted Query path in `root`: "A.member.2.B" is
// root["A"][1]["B"]. False when the path is malformed.
bool SetPath(json* root, const std::vector<std::string>& parts,
             const std::string& value) {
  json* node = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part == "member") {
      size_t index = 0;
      if (i + 1 >= parts.size() || !absl::SimpleAtoi(parts[i + 1], &index) ||
          index < 1 || index > 1000) {
        return false;
      }
      if (node->is_null()) *node = json::array();
      if (!node->is_array()) return false;
      while (node->size() < index) node->push_back(json());
      node = &(*node)[index - 1];
      ++i;
      continue;
    }
    if (node->is_null()) *node = json::object();
    if (!node->is_object()) return false;
    node = &(*node)[part];
  }
  if (!node->is_null()) return false;  // Set twice.
  *node = value;
  return true;
}

// Query values are strings; the JSON request wants numbers and booleans
// for a few fields.
void Retype(json* node, const std::string& key) {
  if (node->is_object()) {
    for (auto it = node->begin(); it != node->end(); ++it) {
      Retype(&it.value(), it.key());
    }
  } else if (node->is_array()) {
    for (json& child : *node) Retype(&child, key);
  } else if (node->is_string()) {
    const std::string s = node->get<std::string>();
    int64_t n = 0;
    if ((key == "Period" || key == "MaxDatapoints") &&
        absl::SimpleAtoi(s, &n)) {
      *node = n;
    } else if (key == "ReturnData") {
      *node = s == "true";
    }
  }
}

std::string Iso(int64_t seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

JsonResponse Error(int status, absl::string_view code,
                   absl::string_view message, absl::string_view request_id) {
  return {status, QueryErrorXml(kCloudWatchXmlns, code, message, request_id)};
}

void AddMessages(XmlNode* parent, const json& messages) {
  XmlNode& list = parent->Add("Messages");
  if (!messages.is_array()) return;
  for (const json& m : messages) {
    XmlNode& member = list.Add("member");
    member.Add("Code", m.value("Code", ""));
    member.Add("Value", m.value("Value", ""));
  }
}

// Parses a GetMetricData Query-protocol form into the equivalent JSON 1.0
// request. Returns the error response for a malformed form, a wrong Version
// or Action, or missing or sparse MetricDataQueries; nullopt on success.
std::optional<JsonResponse> QueryFormToJson(absl::string_view body,
                                            absl::string_view request_id,
                                            json* request) {
  auto form = aws::ParseForm(body);
  if (!form.ok()) {
    return Error(400, "MalformedQueryString", form.status().message(),
                 request_id);
  }
  std::string action, version;
  *request = json::object();
  for (const auto& [key, value] : *form) {
    if (key == "Action") {
      action = value;
    } else if (key == "Version") {
      version = value;
    } else if (!SetPath(request, absl::StrSplit(key, '.'), value)) {
      return Error(400, "MalformedQueryString",
                   absl::StrCat("bad parameter name ", key.substr(0, 128)),
                   request_id);
    }
  }
  if (version != "2010-08-01") {
    return Error(400, "InvalidParameterValue", "Version must be 2010-08-01",
                 request_id);
  }
  if (action != "GetMetricData") {
    return Error(
        400, "InvalidAction",
        absl::StrCat("Could not find operation ", action.substr(0, 64)),
        request_id);
  }
  Retype(request, "");
  // Members left unset by a sparse index ("member.3" without "member.2").
  if (request->contains("MetricDataQueries")) {
    for (const json& q : (*request)["MetricDataQueries"]) {
      if (q.is_null()) {
        return Error(400, "MalformedQueryString",
                     "MetricDataQueries: member indexes must be 1..N",
                     request_id);
      }
    }
  } else {
    return Error(400, "MissingParameter",
                 "The parameter MetricDataQueries is required.", request_id);
  }
  return std::nullopt;
}

// The Query-protocol error for a failed JSON 1.0 answer (`status`, parsed
// body `answer`): its __type without namespace (InternalFailure if none)
// and its message.
JsonResponse JsonErrorToQuery(int status, const json& answer,
                              absl::string_view request_id) {
  std::string type = answer.is_object() ? answer.value("__type", "") : "";
  if (size_t hash = type.rfind('#'); hash != std::string::npos) {
    type = type.substr(hash + 1);
  }
  return Error(status, type.empty() ? "InternalFailure" : type,
               answer.is_object() ? answer.value("message", "") : "",
               request_id);
}

// The GetMetricDataResponse XML document for a successful JSON 1.0 answer.
std::string RenderGetMetricDataXml(const json& answer,
                                   absl::string_view request_id) {
  XmlNode root{"GetMetricDataResponse", "", {}};
  XmlNode& result = root.Add("GetMetricDataResult");
  XmlNode& results = result.Add("MetricDataResults");
  for (const json& r : answer.value("MetricDataResults", json::array())) {
    XmlNode& member = results.Add("member");
    member.Add("Id", r.value("Id", ""));
    member.Add("Label", r.value("Label", ""));
    XmlNode& ts = member.Add("Timestamps");
    for (const json& t : r.value("Timestamps", json::array())) {
      ts.Add("member", Iso(t.get<int64_t>()));
    }
    XmlNode& vs = member.Add("Values");
    for (const json& v : r.value("Values", json::array())) {
      vs.Add("member", json(v.get<double>()).dump());
    }
    member.Add("StatusCode", r.value("StatusCode", "Complete"));
    AddMessages(&member, r.value("Messages", json::array()));
  }
  if (answer.contains("NextToken") && answer["NextToken"].is_string()) {
    result.Add("NextToken", answer["NextToken"].get<std::string>());
  }
  AddMessages(&result, answer.value("Messages", json::array()));
  root.Add("ResponseMetadata").Add("RequestId", std::string(request_id));
  return RenderXml(root, kCloudWatchXmlns);
}

}  // namespace

JsonResponse HandleCloudWatchQuery(absl::string_view body,
                                   const MetricStore& store, absl::Time now,
                                   absl::string_view request_id) {
  json request;
  if (std::optional<JsonResponse> error =
          QueryFormToJson(body, request_id, &request)) {
    return *std::move(error);
  }
  JsonResponse json_response =
      HandleCloudWatchJson(kGetMetricDataTarget, request.dump(), store, now);
  json answer = json::parse(json_response.body, nullptr, false);
  if (json_response.status != 200) {
    return JsonErrorToQuery(json_response.status, answer, request_id);
  }
  return {200, RenderGetMetricDataXml(answer, request_id)};
}

}  // namespace emulator
}  // namespace fleetcanary
