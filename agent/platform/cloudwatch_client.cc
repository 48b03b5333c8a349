#include "agent/platform/cloudwatch_client.h"

#include <curl/curl.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "agent/platform/get_metric_data_json.h"
#include "common/aws/http.h"
#include "common/aws/partition.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace platform {
namespace {

using json = nlohmann::json;
using cloudwatch_internal::AppendSamples;
using cloudwatch_internal::BatchPoints;
using cloudwatch_internal::BuildBatchRequest;
using cloudwatch_internal::MergePage;
using cloudwatch_internal::QueryRef;

constexpr char kAmzTarget[] = "GraniteServiceVersion20100801.GetMetricData";
constexpr char kContentType[] = "application/x-amz-json-1.0";
constexpr size_t kMaxQueriesPerCall = 500;

// A CloudWatch endpoint URL, split for the request and its signature.
using Endpoint = aws::ParsedUrl;

struct HttpResult {
  long status = 0;
  std::string body;
};

struct WriteState {
  std::string* body;
  size_t limit;
  bool exceeded = false;
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* state = static_cast<WriteState*>(user);
  size_t n = size * nmemb;
  if (state->body->size() + n > state->limit) {
    state->exceeded = true;
    return 0;  // Aborts the transfer.
  }
  state->body->append(data, n);
  return n;
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Maps a JSON 1.0 error response to a status.
absl::Status HttpError(long status, const std::string& body) {
  std::string type, message;
  json err = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (err.is_object()) {
    if (err.contains("__type") && err["__type"].is_string()) {
      type = err["__type"].get<std::string>();
      // "com.amazonaws...#Throttling" -> "Throttling".
      if (size_t hash = type.rfind('#'); hash != std::string::npos) {
        type = type.substr(hash + 1);
      }
    }
    for (const char* key : {"message", "Message"}) {
      if (err.contains(key) && err[key].is_string()) {
        message = err[key].get<std::string>();
      }
    }
  }
  std::string text =
      absl::StrCat("GetMetricData: HTTP ", status, type.empty() ? "" : " ",
                   type, message.empty() ? "" : ": ", message.substr(0, 512));
  if (status == 403 || type == "AccessDenied" ||
      type == "AccessDeniedException") {
    return absl::PermissionDeniedError(text);
  }
  if (status == 429 || status >= 500 || type == "Throttling" ||
      type == "ThrottlingException") {
    return absl::UnavailableError(text);
  }
  return absl::InvalidArgumentError(text);
}

class CloudWatchClient : public PlatformMetricsClient {
 public:
  explicit CloudWatchClient(const CloudWatchClientOptions& options)
      : options_(options) {}

  absl::StatusOr<MetricDataResult> GetMetricData(
      const std::vector<MetricsTarget>& targets,
      const std::vector<MetricSpec>& metrics, absl::Time start, absl::Time end,
      absl::Duration period) override;

 private:
  // Runs one batch (≤ 500 queries, one endpoint and region), all pages.
  absl::Status RunBatch(const Endpoint& endpoint, const std::string& region,
                        const std::string& role_arn,
                        const std::vector<MetricsTarget>& targets,
                        const std::vector<MetricSpec>& metrics,
                        const std::vector<QueryRef>& queries, absl::Time start,
                        absl::Time end, absl::Duration period,
                        MetricDataResult* result);
  // Signs `body` as a GetMetricData call in `region` (unless signing is
  // off) and POSTs it to `endpoint`. Returns the HTTP status and body of any
  // response; errors: no credentials, signing, transport, oversize body.
  absl::StatusOr<HttpResult> Post(const Endpoint& endpoint,
                                  const std::string& region,
                                  const std::string& role_arn,
                                  const std::string& body);
  // The credentials to sign with: those of `role_arn` when it is set, else
  // a fresh set from the credentials source, else the static ones.
  // Unavailable when the role or source has none.
  absl::StatusOr<sigv4::Credentials> CredentialsFor(
      const std::string& role_arn);
  // POSTs `body` with `headers` (REQUIRES: complete and signed) to
  // `endpoint` with the configured timeouts, TLS settings and response
  // size limit.
  absl::StatusOr<HttpResult> Send(const Endpoint& endpoint, curl_slist* headers,
                                  const std::string& body);

  const CloudWatchClientOptions options_;
};

absl::StatusOr<MetricDataResult> CloudWatchClient::GetMetricData(
    const std::vector<MetricsTarget>& targets,
    const std::vector<MetricSpec>& metrics, absl::Time start, absl::Time end,
    absl::Duration period) {
  if (period < absl::Seconds(1) ||
      absl::Trunc(period, absl::Seconds(1)) != period) {
    return absl::InvalidArgumentError(
        "GetMetricData: period must be a whole number of seconds >= 1s");
  }
  if (end <= start) {
    return absl::InvalidArgumentError("GetMetricData: end must be after start");
  }
  if (metrics.empty()) {
    return absl::InvalidArgumentError("GetMetricData: no metrics requested");
  }
  for (const MetricSpec& m : metrics) {
    if (m.name.empty() || m.stat.empty()) {
      return absl::InvalidArgumentError(
          "GetMetricData: metric name and stat must be set");
    }
  }
  // Group targets by (endpoint, region, role): one signed call sequence
  // each.
  std::map<std::tuple<std::string, std::string, std::string>,
           std::vector<size_t>>
      groups;
  for (size_t i = 0; i < targets.size(); ++i) {
    const MetricsTarget& t = targets[i];
    if (t.region.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("GetMetricData: targets[", i, "].region is empty"));
    }
    if (t.identity.function_name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GetMetricData: targets[", i, "].cloudwatch.function_name is empty"));
    }
    groups[{EndpointFor(t, options_.default_endpoint), t.region, t.role_arn}]
        .push_back(i);
  }

  MetricDataResult result;
  for (const auto& [key, indices] : groups) {
    FC_ASSIGN_OR_RETURN(
        Endpoint endpoint,
        aws::ParseHttpUrl(std::get<0>(key), "cloudwatch endpoint"));
    std::vector<QueryRef> queries;
    for (size_t t : indices) {
      for (size_t m = 0; m < metrics.size(); ++m) queries.push_back({t, m});
    }
    for (size_t first = 0; first < queries.size();
         first += kMaxQueriesPerCall) {
      std::vector<QueryRef> batch(
          queries.begin() + first,
          queries.begin() +
              std::min(queries.size(), first + kMaxQueriesPerCall));
      FC_RETURN_IF_ERROR(RunBatch(endpoint, std::get<1>(key), std::get<2>(key),
                                  targets, metrics, batch, start, end, period,
                                  &result));
    }
  }
  return result;
}

absl::Status CloudWatchClient::RunBatch(
    const Endpoint& endpoint, const std::string& region,
    const std::string& role_arn, const std::vector<MetricsTarget>& targets,
    const std::vector<MetricSpec>& metrics,
    const std::vector<QueryRef>& queries, absl::Time start, absl::Time end,
    absl::Duration period, MetricDataResult* result) {
  const int64_t period_s = absl::ToInt64Seconds(period);
  std::map<std::string, size_t> by_id;
  json request = BuildBatchRequest(targets, metrics, queries, start, end,
                                   period_s, &by_id);
  BatchPoints batch(queries.size());
  std::string next_token;
  for (int page = 0;; ++page) {
    if (page >= options_.max_pages) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "GetMetricData: more than ", options_.max_pages, " pages"));
    }
    if (next_token.empty()) {
      request.erase("NextToken");
    } else {
      request["NextToken"] = next_token;
    }
    FC_ASSIGN_OR_RETURN(HttpResult http,
                        Post(endpoint, region, role_arn, request.dump()));
    if (http.status != 200) return HttpError(http.status, http.body);
    json response = json::parse(http.body, nullptr, /*allow_exceptions=*/false);
    if (!response.is_object()) {
      return absl::UnavailableError(
          "GetMetricData: response body is not a JSON object");
    }
    FC_ASSIGN_OR_RETURN(next_token, MergePage(response, by_id, targets, metrics,
                                              queries, &batch, result));
    if (next_token.empty()) break;
  }
  AppendSamples(targets, metrics, queries, batch, period_s, result);
  return absl::OkStatus();
}

absl::StatusOr<sigv4::Credentials> CloudWatchClient::CredentialsFor(
    const std::string& role_arn) {
  sigv4::Credentials credentials = options_.credentials;
  if (!role_arn.empty()) {
    absl::StatusOr<sigv4::Credentials> role =
        options_.role_credentials
            ? options_.role_credentials(role_arn)
            : absl::FailedPreconditionError("no role credentials source");
    if (!role.ok()) {
      return absl::UnavailableError(
          absl::StrCat("GetMetricData: no AWS credentials for role ", role_arn,
                       ": ", role.status().message()));
    }
    credentials = *std::move(role);
  } else if (options_.credentials_source) {
    absl::StatusOr<sigv4::Credentials> fresh = options_.credentials_source();
    if (!fresh.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "GetMetricData: no AWS credentials: ", fresh.status().message()));
    }
    credentials = *std::move(fresh);
  }
  return credentials;
}

using CurlHeaders = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

// The request headers as a curl list: `headers`, then the signature's
// headers, then an empty Expect (no 100-continue round trip).
CurlHeaders BuildCurlHeaders(const std::vector<sigv4::HeaderView>& headers,
                             const sigv4::SigningResult& signed_request) {
  CurlHeaders list(nullptr, curl_slist_free_all);
  auto add = [&](absl::string_view name, absl::string_view value) {
    list.reset(curl_slist_append(list.release(),
                                 absl::StrCat(name, ": ", value).c_str()));
  };
  for (const sigv4::HeaderView& h : headers) add(h.name, h.value);
  for (const auto& [name, value] : signed_request.headers_to_add) {
    add(name, value);
  }
  add("Expect", "");  // No 100-continue round trip.
  return list;
}

absl::StatusOr<HttpResult> CloudWatchClient::Send(const Endpoint& endpoint,
                                                  curl_slist* headers,
                                                  const std::string& body) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
                                                           curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  HttpResult result;
  WriteState state{&result.body, options_.max_response_bytes};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, endpoint.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(
      c, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // Any curl decodes.
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (options_.insecure_skip_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  CURLcode rc = curl_easy_perform(c);
  if (state.exceeded) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GetMetricData: response larger than ",
                     options_.max_response_bytes, " bytes"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GetMetricData: ", endpoint.url,
                                               ": ", curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

absl::StatusOr<HttpResult> CloudWatchClient::Post(const Endpoint& endpoint,
                                                  const std::string& region,
                                                  const std::string& role_arn,
                                                  const std::string& body) {
  std::vector<sigv4::HeaderView> headers = {
      {"Host", endpoint.host_header},
      {"Content-Type", kContentType},
      {"X-Amz-Target", kAmzTarget},
  };
  sigv4::HttpRequestView view{"POST", endpoint.path, headers, body, ""};
  sigv4::SigningParams params;
  params.service = "monitoring";
  params.region = region;
  params.time = options_.clock->Now();
  sigv4::SigningResult signed_request;
  if (options_.sign) {
    FC_ASSIGN_OR_RETURN(sigv4::Credentials credentials,
                        CredentialsFor(role_arn));
    FC_ASSIGN_OR_RETURN(signed_request,
                        sigv4::SignRequest(view, credentials, params));
  }
  CurlHeaders list = BuildCurlHeaders(headers, signed_request);
  return Send(endpoint, list.get(), body);
}

}  // namespace

std::vector<MetricSpec> DefaultLambdaMetrics() {
  return {{"Invocations", "Sum"},  {"Errors", "Sum"},
          {"Throttles", "Sum"},    {"UrlRequestCount", "Sum"},
          {"Url4xxCount", "Sum"},  {"Url5xxCount", "Sum"},
          {"Duration", "Average"}, {"UrlRequestLatency", "Average"}};
}

v1::PlatformMetricSample MakePlatformSample(const MetricsTarget& target,
                                            const MetricSpec& metric,
                                            absl::Time period_start,
                                            absl::Duration period,
                                            double value) {
  v1::PlatformMetricSample s;
  s.set_region(target.region);
  s.set_target(target.target);
  s.set_mode(target.mode);
  s.set_function_name(target.identity.function_name());
  if (!target.identity.alias().empty()) {
    s.set_resource(absl::StrCat(target.identity.function_name(), ":",
                                target.identity.alias()));
  }
  s.set_metric(metric.name);
  s.set_stat(metric.stat);
  *s.mutable_period_start() = TimeToProto(period_start);
  s.mutable_period()->set_seconds(absl::ToInt64Seconds(period));
  s.set_value(value);
  return s;
}

std::string EndpointFor(const MetricsTarget& target,
                        absl::string_view default_endpoint) {
  if (!target.identity.endpoint().empty()) return target.identity.endpoint();
  if (!default_endpoint.empty()) return std::string(default_endpoint);
  return aws::CloudWatchEndpoint(target.region);
}

absl::StatusOr<std::unique_ptr<PlatformMetricsClient>> CreateCloudWatchClient(
    const CloudWatchClientOptions& options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("CloudWatchClientOptions.clock is null");
  }
  if (options.sign && !options.credentials_source &&
      (options.credentials.access_key_id.empty() ||
       options.credentials.secret_access_key.empty())) {
    return absl::InvalidArgumentError(
        "CloudWatchClientOptions.credentials: access key id and secret are "
        "required");
  }
  if (options.max_pages < 1) {
    return absl::InvalidArgumentError(
        "CloudWatchClientOptions.max_pages must be >= 1");
  }
  InitCurlOnce();
  return std::unique_ptr<PlatformMetricsClient>(new CloudWatchClient(options));
}

}  // namespace platform
}  // namespace fleetcanary
