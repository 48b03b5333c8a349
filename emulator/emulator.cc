#include "emulator/emulator.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/config/loader.h"
#include "common/log/log.h"
#include "common/metrics/metrics_export.h"
#include "common/metrics/process_metrics.h"
#include "common/proto/time_convert.h"
#include "common/sigv4/sigv4.h"
#include "common/status/status_util.h"
#include "emulator/function/function_url.h"
#include "emulator/identity/identity.h"
#include "emulator/platform/cloudwatch_query.h"
#include "emulator/platform/get_metric_data.h"
#include "emulator/platform/metric_store.h"
#include "emulator/scenario/engine.h"
#include "emulator/scenario/truth_log.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

const char* ModeName(v1::InvokeMode mode) {
  return mode == v1::RESPONSE_STREAM ? "RESPONSE_STREAM" : "BUFFERED";
}

void SetJson(ResponsePlan* plan, int status, std::string body,
             const char* content_type = "application/json") {
  plan->status = status;
  plan->headers.emplace_back("Content-Type", content_type);
  plan->body = std::move(body);
}

class EmulatorImpl : public Emulator {
 public:
  EmulatorImpl(const EmulatorOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}

  ~EmulatorImpl() override { Stop(); }

  absl::Status Init() {
    v1::EmulatorConfig& config = options_.config;
    if (config.regions().empty()) config.add_regions()->set_name("us-east-1");
    if (config.listen_host().empty()) config.set_listen_host("127.0.0.1");
    FC_RETURN_IF_ERROR(ValidateEmulatorConfig(config));
    FC_RETURN_IF_ERROR(InitContext(config));
    FC_RETURN_IF_ERROR(CreateServer(config));
    Listeners listeners(config, options_.base_port);
    for (const v1::EmulatorRegion& r : config.regions()) {
      FC_RETURN_IF_ERROR(AddRegion(r, MetricOptions(config), &listeners));
    }
    FC_RETURN_IF_ERROR(AddControlAndCredentials(&listeners));
    FC_RETURN_IF_ERROR(server_->Start());
    LogInfo("emulator_started", {{"regions", absl::StrCat(regions_.size())},
                                 {"control", control_url_},
                                 {"scenario", engine_->scenario().name()}});
    return absl::OkStatus();
  }

  std::vector<UrlInfo> urls() const override { return urls_; }

  std::string url(absl::string_view region,
                  v1::InvokeMode mode) const override {
    for (const UrlInfo& u : urls_) {
      if (u.region == region && u.mode == mode) return u.url;
    }
    return "";
  }

  std::vector<CloudWatchEndpoint> cloudwatch_endpoints() const override {
    return cloudwatch_;
  }

  std::string cloudwatch_url(absl::string_view region) const override {
    for (const CloudWatchEndpoint& c : cloudwatch_) {
      if (c.region == region) return c.url;
    }
    return "";
  }

  std::string control_url() const override { return control_url_; }
  std::string sts_url() const override { return sts_url_; }
  std::string imds_url() const override { return imds_url_; }
  std::string container_url() const override { return container_url_; }
  CredentialIssuer* issuer() override { return issuer_.get(); }

  std::vector<std::string> DescribeEndpoints() const override {
    std::vector<std::string> lines;
    for (const UrlInfo& u : urls_) {
      lines.push_back(
          absl::StrCat("url region=", u.region, " mode=", ModeName(u.mode),
                       " alias=", u.alias, " auth=", v1::AuthType_Name(u.auth),
                       " function=", u.function_name, " url=", u.url));
    }
    for (const CloudWatchEndpoint& c : cloudwatch_) {
      lines.push_back(
          absl::StrCat("cloudwatch region=", c.region, " url=", c.url));
    }
    lines.push_back(absl::StrCat("control url=", control_url_));
    lines.push_back(absl::StrCat("sts url=", sts_url_));
    lines.push_back(absl::StrCat("imds url=", imds_url_));
    lines.push_back(absl::StrCat("container url=", container_url_));
    return lines;
  }

  std::vector<v1::InjectedFault> truth(uint64_t after) const override {
    return truth_.Since(after);
  }

  void ClearTruth() override { truth_.Clear(); }

  absl::Status SetScenario(v1::Scenario scenario) override {
    const std::string name = scenario.name();
    FC_RETURN_IF_ERROR(engine_->Replace(std::move(scenario)));
    LogInfo("scenario_replaced", {{"name", name}});
    return absl::OkStatus();
  }

  v1::Scenario scenario() const override { return engine_->scenario(); }

  HttpServerStats server_stats() const override {
    return server_ ? server_->stats() : HttpServerStats();
  }

  void Stop() override {
    absl::MutexLock lock(&stop_mu_);
    if (server_ != nullptr) server_->Stop();
  }

 private:
  // How listeners are numbered and named: ports from `base_port` up (0 =
  // any), URLs with the config's scheme and host.
  class Listeners {
   public:
    Listeners(const v1::EmulatorConfig& config, int base_port)
        : tls_(!config.tls_cert_file().empty()),
          scheme_(tls_ ? "https" : "http"),
          host_(config.listen_host().find(':') != std::string::npos
                    ? absl::StrCat("[", config.listen_host(), "]")
                    : config.listen_host()),
          next_port_(base_port) {}
    bool tls() const { return tls_; }
    int NextPort() { return next_port_ == 0 ? 0 : next_port_++; }
    std::string Url(int port) const {
      return absl::StrCat(scheme_, "://", host_, ":", port, "/");
    }

   private:
    const bool tls_;
    const std::string scheme_;
    const std::string host_;
    int next_port_;
  };

  // The platform metric store's period and ingestion delay from `config`.
  static MetricStoreOptions MetricOptions(const v1::EmulatorConfig& config) {
    MetricStoreOptions metric_options;
    metric_options.period = config.has_metrics_period()
                                ? DurationFromProto(config.metrics_period())
                                : absl::Seconds(60);
    if (metric_options.period <= absl::ZeroDuration()) {
      metric_options.period = absl::Seconds(60);
    }
    metric_options.ingestion_delay =
        DurationFromProto(config.ingestion_delay());
    return metric_options;
  }

  // The scenario engine, the credential issuer and the context every
  // Function URL shares.
  absl::Status InitContext(const v1::EmulatorConfig& config) {
    auto engine = ScenarioEngine::Create(config.scenario(), clock_);
    if (!engine.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario.", engine.status().message()));
    }
    engine_ = *std::move(engine);

    context_.clock = clock_;
    context_.scenario = engine_.get();
    context_.truth = &truth_;
    context_.credentials.assign(config.credentials().begin(),
                                config.credentials().end());
    issuer_ = std::make_unique<CredentialIssuer>(config.identity(),
                                                 context_.credentials, clock_,
                                                 options_.request_id_seed);
    CredentialIssuer* issuer = issuer_.get();
    context_.lookup = [issuer](absl::string_view key) {
      return issuer->Lookup(key, "lambda");
    };
    context_.max_clock_skew = config.has_max_clock_skew()
                                  ? DurationFromProto(config.max_clock_skew())
                                  : absl::Minutes(5);
    context_.shape_streaming =
        !config.has_shape_streaming() || config.shape_streaming();
    context_.request_id_seed = options_.request_id_seed;
    context_.canary_limits = CanaryLimitsFromConfig(config.canary_limits());
    return absl::OkStatus();
  }

  absl::Status CreateServer(const v1::EmulatorConfig& config) {
    HttpServerOptions server_options;
    server_options.host = config.listen_host();
    server_options.io_threads = options_.io_threads;
    server_options.max_connections = options_.max_connections;
    server_options.read_timeout = options_.read_timeout;
    server_options.write_timeout = options_.write_timeout;
    server_options.header_limit = options_.header_limit;
    server_options.payload_cache_bytes = options_.payload_cache_bytes;
    server_options.tls_cert_file = config.tls_cert_file();
    server_options.tls_key_file = config.tls_key_file();
    auto server = HttpServer::Create(server_options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    return absl::OkStatus();
  }

  // A region's BUFFERED and RESPONSE_STREAM Function URLs and its CloudWatch
  // endpoint.
  absl::Status AddRegion(v1::EmulatorRegion region,
                         const MetricStoreOptions& metric_options,
                         Listeners* listeners) {
    if (region.function_name().empty()) {
      region.set_function_name(kDefaultFunctionName);
    }
    if (region.auth() == v1::AUTH_TYPE_UNSPECIFIED) region.set_auth(v1::NONE);
    auto state = std::make_unique<RegionState>(region, metric_options);
    for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      const std::string alias =
          mode == v1::BUFFERED ? kBufferedAlias : kStreamAlias;
      auto fn =
          std::make_unique<FunctionUrl>(state.get(), mode, alias, &context_);
      FunctionUrl* raw = fn.get();
      auto port = server_->AddListener(
          listeners->NextPort(), listeners->tls(),
          [raw](const HttpRequest& req, ResponsePlan* plan) {
            raw->Handle(req, plan);
          });
      if (!port.ok()) return port.status();
      UrlInfo info;
      info.region = region.name();
      info.mode = mode;
      info.alias = alias;
      info.function_name = region.function_name();
      info.auth = region.auth();
      info.port = *port;
      info.url = listeners->Url(*port);
      urls_.push_back(info);
      functions_.push_back(std::move(fn));
    }
    RegionState* raw_state = state.get();
    auto cw_port = server_->AddListener(
        listeners->NextPort(), listeners->tls(),
        [this, raw_state](const HttpRequest& req, ResponsePlan* plan) {
          HandleCloudWatch(raw_state, req, plan);
        });
    if (!cw_port.ok()) return cw_port.status();
    cloudwatch_.push_back({region.name(), listeners->Url(*cw_port), *cw_port});
    regions_.push_back(std::move(state));
    return absl::OkStatus();
  }

  // The control endpoint, then temporary credentials: STS, IMDSv2, container
  // endpoint.
  absl::Status AddControlAndCredentials(Listeners* listeners) {
    auto control_port = server_->AddListener(
        listeners->NextPort(), listeners->tls(),
        [this](const HttpRequest& req, ResponsePlan* plan) {
          HandleControl(req, plan);
        });
    if (!control_port.ok()) return control_port.status();
    control_url_ = listeners->Url(*control_port);
    CredentialIssuer* issuer = issuer_.get();
    using Handler =
        void (CredentialIssuer::*)(const HttpRequest&, ResponsePlan*);
    for (auto [url, handler] :
         {std::pair<std::string*, Handler>{&sts_url_,
                                           &CredentialIssuer::HandleSts},
          {&imds_url_, &CredentialIssuer::HandleImds},
          {&container_url_, &CredentialIssuer::HandleContainer}}) {
      auto port =
          server_->AddListener(listeners->NextPort(), listeners->tls(),
                               [issuer, handler = handler](
                                   const HttpRequest& req, ResponsePlan* plan) {
                                 (issuer->*handler)(req, plan);
                               });
      if (!port.ok()) return port.status();
      *url = listeners->Url(*port);
    }
    container_url_ += "v2/credentials/fleetcanary";
    return absl::OkStatus();
  }

  void HandleCloudWatch(RegionState* region, const HttpRequest& req,
                        ResponsePlan* plan) {
    const bool query = req.Header("X-Amz-Target").empty();
    const std::string request_id = MakeRequestId(
        options_.request_id_seed ^ 0xc10dULL, cloudwatch_counter_.fetch_add(1));
    plan->headers.emplace_back("x-amzn-RequestId", request_id);
    auto fail = [&](int status, absl::string_view type,
                    absl::string_view message) {
      if (query) {
        SetJson(plan, status,
                QueryErrorXml(kCloudWatchXmlns, type, message, request_id),
                "text/xml");
      } else {
        SetJson(plan, status, AwsJsonError(type, message),
                kAwsJson10ContentType);
      }
    };
    if (req.method != "POST" || req.Path() != "/") {
      fail(404, "UnknownOperationException",
           "POST / with X-Amz-Target (JSON 1.0) or a form (Query) expected");
      return;
    }
    const absl::Time now = clock_->Now();
    if (options_.config.monitoring_auth() == v1::AWS_IAM) {
      std::vector<sigv4::HeaderView> headers;
      for (const auto& [n, v] : req.headers) headers.push_back({n, v});
      sigv4::HttpRequestView view{req.method, req.target, headers, req.body,
                                  ""};
      sigv4::VerifyOptions verify;
      verify.service = "monitoring";
      verify.region = region->config.name();
      verify.now = now;
      verify.max_skew = context_.max_clock_skew;
      CredentialIssuer* issuer = issuer_.get();
      absl::Status ok = sigv4::VerifyRequest(
          view,
          [issuer](absl::string_view key) {
            return issuer->Lookup(key, "monitoring");
          },
          verify);
      if (!ok.ok()) {
        const bool expired = absl::StartsWith(ok.message(), "ExpiredToken");
        fail(403,
             expired
                 ? "ExpiredTokenException"
                 : (query ? "SignatureDoesNotMatch" : "AccessDeniedException"),
             ok.message());
        return;
      }
    }
    if (query) {
      JsonResponse resp =
          HandleCloudWatchQuery(req.body, region->metrics, now, request_id);
      SetJson(plan, resp.status, std::move(resp.body), "text/xml");
      return;
    }
    JsonResponse resp = HandleCloudWatchJson(req.Header("X-Amz-Target"),
                                             req.body, region->metrics, now);
    SetJson(plan, resp.status, std::move(resp.body), kAwsJson10ContentType);
  }

  // The emulator's families, then the standard process ones. Labels come in
  // alphabetical order.
  std::vector<prometheus::MetricFamily> CollectMetrics() const {
    std::vector<prometheus::MetricFamily> out;
    auto requests = CounterFamily("fleetcanary_emulator_url_requests_total",
                                  "Function URL requests by status class.");
    auto faults = CounterFamily("fleetcanary_emulator_faults_injected_total",
                                "Faults injected by the scenario engine.");
    for (const auto& fn : functions_) {
      const FunctionUrlCounts c = fn->counts();
      for (const auto& [code, n] :
           {std::pair<const char*, uint64_t>{"2xx", c.code_2xx},
            {"4xx", c.code_4xx},
            {"5xx", c.code_5xx}}) {
        AddSample(
            &requests,
            {{"alias", fn->alias()}, {"code", code}, {"region", fn->region()}},
            static_cast<double>(n));
      }
      for (const auto& [effect, n] : c.faults) {
        AddSample(&faults,
                  {{"alias", fn->alias()},
                   {"effect", effect},
                   {"region", fn->region()}},
                  static_cast<double>(n));
      }
    }
    out.push_back(std::move(requests));
    // Not exported before the first fault.
    if (!faults.metric.empty()) out.push_back(std::move(faults));
    auto server = GaugeFamily("fleetcanary_emulator_server",
                              "HTTP server state and counters by kind.");
    const HttpServerStats s = server_->stats();
    for (const auto& [kind, value] :
         {std::pair<const char*, int64_t>{"open_connections",
                                          s.open_connections},
          {"accepted_connections", s.accepted_connections},
          {"rejected_connections", s.rejected_connections},
          {"requests", s.requests},
          {"bad_requests", s.bad_requests},
          {"timeouts", s.timeouts},
          {"accept_errors", s.accept_errors}}) {
      AddSample(&server, {{"kind", kind}}, static_cast<double>(value));
    }
    out.push_back(std::move(server));
    out.push_back(GaugeWithSample("fleetcanary_emulator_truth_entries",
                                  "Last ground-truth sequence number.", {},
                                  static_cast<double>(truth_.last_sequence())));
    for (prometheus::MetricFamily& f :
         CollectProcessMetrics({"function-url-emulator"})) {
      out.push_back(std::move(f));
    }
    return out;
  }

  void HandleControl(const HttpRequest& req, ResponsePlan* plan) {
    const absl::string_view path = req.Path();
    if (path == "/healthz") {
      SetJson(plan, 200, "ok\n", "text/plain");
    } else if (path == "/metrics" && req.method == "GET") {
      SetJson(plan, 200, ExpositionText(CollectMetrics()),
              "text/plain; version=0.0.4");
    } else if (path == "/_emulator/truth" && req.method == "GET") {
      uint64_t after = 0;
      for (absl::string_view kv : absl::StrSplit(req.Query(), '&')) {
        if (absl::ConsumePrefix(&kv, "since=") &&
            !absl::SimpleAtoi(kv, &after)) {
          SetJson(plan, 400, "since: not a sequence number\n", "text/plain");
          return;
        }
      }
      std::string body;
      for (const v1::InjectedFault& f : truth_.Since(after)) {
        absl::StrAppend(&body, MessageToJson(f), "\n");
      }
      SetJson(plan, 200, std::move(body), "application/x-ndjson");
    } else if (path == "/_emulator/sessions" && req.method == "GET") {
      // Issued temporary credentials and what presented them (no secrets).
      std::string body;
      for (const IssuedCredentials& c : issuer_->Sessions()) {
        nlohmann::json uses = nlohmann::json::object();
        for (const auto& [service, n] : c.uses) uses[service] = n;
        absl::StrAppend(
            &body,
            nlohmann::json{{"access_key_id", c.keys.access_key_id},
                           {"role_arn", c.role_arn},
                           {"expiration",
                            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", c.expiration,
                                             absl::UTCTimeZone())},
                           {"uses", uses}}
                .dump(),
            "\n");
      }
      SetJson(plan, 200, std::move(body), "application/x-ndjson");
    } else if (path == "/_emulator/truth" && req.method == "DELETE") {
      truth_.Clear();
      SetJson(plan, 204, "", "text/plain");
    } else if (path == "/_emulator/scenario" && req.method == "PUT") {
      auto scenario = ParseScenarioYaml(req.body, "scenario");
      if (!scenario.ok()) {
        SetJson(
            plan, 400,
            nlohmann::json{{"error", std::string(scenario.status().message())}}
                .dump(),
            "application/json");
        return;
      }
      absl::Status s = SetScenario(*scenario);
      if (!s.ok()) {
        SetJson(plan, 400,
                nlohmann::json{{"error", std::string(s.message())}}.dump());
        return;
      }
      SetJson(plan, 200, MessageToJson(engine_->scenario()));
    } else if (path == "/_emulator/scenario" && req.method == "GET") {
      SetJson(plan, 200, MessageToJson(engine_->scenario()));
    } else if (path == "/_emulator/urls" && req.method == "GET") {
      nlohmann::json out = nlohmann::json::array();
      for (const UrlInfo& u : urls_) {
        out.push_back({{"region", u.region},
                       {"mode", ModeName(u.mode)},
                       {"alias", u.alias},
                       {"function_name", u.function_name},
                       {"auth", v1::AuthType_Name(u.auth)},
                       {"url", u.url},
                       {"cloudwatch_url", cloudwatch_url(u.region)}});
      }
      SetJson(plan, 200, out.dump());
    } else {
      SetJson(plan, 404, "not found\n", "text/plain");
    }
  }

  EmulatorOptions options_;
  Clock* const clock_;
  std::unique_ptr<ScenarioEngine> engine_;
  TruthLog truth_;
  PlatformContext context_;
  std::vector<std::unique_ptr<RegionState>> regions_;
  std::vector<std::unique_ptr<FunctionUrl>> functions_;
  std::vector<UrlInfo> urls_;
  std::vector<CloudWatchEndpoint> cloudwatch_;
  std::string control_url_;
  std::string sts_url_;
  std::string imds_url_;
  std::string container_url_;
  std::unique_ptr<CredentialIssuer> issuer_;
  std::atomic<uint64_t> cloudwatch_counter_{0};
  absl::Mutex stop_mu_;
  // Declared last: destroyed first, so sessions end before what they use.
  std::unique_ptr<HttpServer> server_;
};

}  // namespace

absl::Status ValidateEmulatorConfig(const v1::EmulatorConfig& config) {
  absl::Status rules = ValidateMessage(config);
  if (!rules.ok()) return rules;
  std::set<std::string> names;
  for (int i = 0; i < config.regions_size(); ++i) {
    const std::string& name = config.regions(i).name();
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("regions[", i, "].name: required"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("regions[", i, "].name: duplicate region ", name));
    }
  }
  if (config.tls_cert_file().empty() != config.tls_key_file().empty()) {
    return absl::InvalidArgumentError(
        "tls_key_file: tls_cert_file and tls_key_file go together");
  }
  const bool iam = config.monitoring_auth() == v1::AWS_IAM ||
                   std::any_of(config.regions().begin(), config.regions().end(),
                               [](const v1::EmulatorRegion& r) {
                                 return r.auth() == v1::AWS_IAM;
                               });
  if (iam && config.credentials().empty()) {
    return absl::InvalidArgumentError(
        "credentials: required when a region or monitoring_auth is AWS_IAM");
  }
  absl::Status scenario = ValidateScenario(config.scenario());
  if (!scenario.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("scenario.", scenario.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::EmulatorConfig> LoadEmulatorConfig(const std::string& path) {
  v1::EmulatorConfig config;
  absl::Status loaded = LoadYamlFile(path, &config);
  if (!loaded.ok()) return loaded;
  absl::Status valid = ValidateEmulatorConfig(config);
  if (!valid.ok()) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return LocateYamlError(text.str(), path, valid);
  }
  return config;
}

absl::StatusOr<std::unique_ptr<Emulator>> Emulator::Create(
    const EmulatorOptions& options, Clock* clock) {
  auto emulator = std::make_unique<EmulatorImpl>(options, clock);
  absl::Status s = emulator->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Emulator>(std::move(emulator));
}

}  // namespace emulator
}  // namespace fleetcanary
