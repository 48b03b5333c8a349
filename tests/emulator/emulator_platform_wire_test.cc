// The emulator's platform side over real sockets: CloudWatch GetMetricData
// totals per minute equal the ground truth exactly for a seeded scenario,
// replays are identical, and SigV4 (Function URLs with AWS_IAM, and the
// monitoring endpoint) and TLS work end to end.
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/payload/payload.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "emulator/emulator.h"
#include "emulator/scenario/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/http_test_client.h"

namespace fleetcanary {
namespace emulator {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1706659200);  // Minute-aligned.

v1::Scenario Scenario(absl::string_view yaml) {
  auto s = ParseScenarioYaml(yaml, "test");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : v1::Scenario();
}

json GetMetricData(const std::string& url, const json& request,
                   const std::vector<std::string>& extra_headers = {},
                   long* status = nullptr) {
  testing::CurlOptions options;
  options.method = "POST";
  options.body = request.dump();
  options.headers = extra_headers;
  if (extra_headers.empty()) {
    options.headers = {
        "Content-Type: application/x-amz-json-1.0",
        "X-Amz-Target: GraniteServiceVersion20100801.GetMetricData"};
  }
  testing::CurlResult r = testing::CurlFetch(url, options);
  if (status != nullptr) *status = r.status;
  EXPECT_EQ(r.Header("content-type"), "application/x-amz-json-1.0");
  return json::parse(r.body, nullptr, false);
}

json MetricQuery(const std::string& id, const std::string& metric,
                 const std::string& resource) {
  json dims = json::array(
      {{{"Name", "FunctionName"}, {"Value", "fleetcanary-canary"}}});
  if (!resource.empty()) {
    dims.push_back({{"Name", "Resource"}, {"Value", resource}});
  }
  return {{"Id", id},
          {"MetricStat",
           {{"Metric",
             {{"Namespace", "AWS/Lambda"},
              {"MetricName", metric},
              {"Dimensions", dims}}},
            {"Period", 60},
            {"Stat", "Sum"}}}};
}

struct RunResult {
  std::vector<v1::InjectedFault> truth;
  // (minute index, resource, metric) → value read back.
  std::map<std::tuple<int, std::string, std::string>, double> cloudwatch;
  // (minute index, alias) → requests sent / 5xx / 4xx seen by the client.
  std::map<std::pair<int, std::string>, int> sent, client_5xx, client_4xx;
};

// Sends a fixed request sequence over three scenario minutes, then reads
// every metric back through GetMetricData.
RunResult RunSeededScenario(uint64_t seed) {
  RunResult out;
  SimulatedClock clock(kStart);
  EmulatorOptions options;
  options.config.add_regions()->set_name("us-east-1");
  options.config.mutable_ingestion_delay()->set_seconds(30);
  *options.config.mutable_scenario() = Scenario(absl::StrCat(R"(
seed: )",
                                                             seed, R"(
faults:
  - {name: phantom, modes: [RESPONSE_STREAM], probability: {base: 0.05, per_log2_byte: 0.02}, effect: phantom_error}
  - {name: five-oh-two, modes: [BUFFERED], probability: {base: 0.1}, effect: http_status, status: 502}
  - {name: throttle, probability: {base: 0.08}, effect: throttle}
  - {name: truncate, modes: [RESPONSE_STREAM], probability: {base: 0.05}, effect: truncate, after_bytes: 1}
)"));
  auto emu = Emulator::Create(options, &clock);
  EXPECT_TRUE(emu.ok()) << emu.status();
  if (!emu.ok()) return out;
  const std::map<std::string, std::string> url = {
      {"buffered", (*emu)->url("us-east-1", v1::BUFFERED)},
      {"stream", (*emu)->url("us-east-1", v1::RESPONSE_STREAM)}};
  for (int minute = 0; minute < 3; ++minute) {
    for (int i = 0; i < 40; ++i) {
      const std::string alias = i % 2 == 0 ? "buffered" : "stream";
      const uint64_t size = uint64_t{1} << (i % 12);
      testing::CurlResult r = testing::CurlFetch(
          absl::StrCat(url.at(alias), "canary?bytes=", size, "&seed=", i),
          testing::WithHeaders(
              {absl::StrCat("x-canary-probe-id: m", minute, "-", i)}));
      ++out.sent[{minute, alias}];
      if (r.status >= 500) ++out.client_5xx[{minute, alias}];
      if (r.status >= 400 && r.status < 500) ++out.client_4xx[{minute, alias}];
      if (r.status == 200 && r.curl_code == 0) {
        EXPECT_EQ(r.body, MakePayload(i, size));  // Phantoms change nothing.
      }
      clock.AdvanceTime(absl::Milliseconds(1400));  // 40 × 1.4 s < 60 s.
    }
    clock.AdvanceTime(absl::Seconds(60) - absl::Milliseconds(40 * 1400));
  }
  // Minute 2 is visible only after its end + 30 s ingestion delay.
  json request = {{"StartTime", absl::ToUnixSeconds(kStart)},
                  {"EndTime", absl::ToUnixSeconds(kStart) + 3600},
                  {"ScanBy", "TimestampAscending"},
                  {"MetricDataQueries", json::array()}};
  const char* metrics[] = {"Invocations",     "Errors",      "Throttles",
                           "UrlRequestCount", "Url4xxCount", "Url5xxCount"};
  int q = 0;
  std::map<std::string, std::pair<std::string, std::string>> ids;
  for (const char* resource :
       {"", "fleetcanary-canary:buffered", "fleetcanary-canary:stream"}) {
    for (const char* metric : metrics) {
      const std::string id = absl::StrCat("q", q++);
      ids[id] = {resource, metric};
      request["MetricDataQueries"].push_back(MetricQuery(id, metric, resource));
    }
  }
  const std::string cw = (*emu)->cloudwatch_url("us-east-1");
  json early = GetMetricData(cw, request);
  for (const json& r : early["MetricDataResults"]) {
    EXPECT_LE(r["Values"].size(), 2u) << "minute 2 not ingested yet";
  }
  clock.AdvanceTime(absl::Seconds(30));
  json resp = GetMetricData(cw, request);
  for (const json& r : resp["MetricDataResults"]) {
    EXPECT_EQ(r["StatusCode"], "Complete");
    const auto& [resource, metric] = ids[r["Id"].get<std::string>()];
    for (size_t k = 0; k < r["Values"].size(); ++k) {
      const int minute = static_cast<int>(
          (r["Timestamps"][k].get<int64_t>() - absl::ToUnixSeconds(kStart)) /
          60);
      out.cloudwatch[{minute, resource, metric}] = r["Values"][k].get<double>();
    }
  }
  out.truth = (*emu)->truth();
  return out;
}

TEST(PlatformMetricsTest, GetMetricDataTotalsPerMinuteEqualGroundTruth) {
  RunResult run = RunSeededScenario(11);
  ASSERT_FALSE(run.truth.empty());
  // Expected per (minute, alias) from the ground truth alone.
  std::map<std::pair<int, std::string>, int> phantom, five, throttles, truncs;
  for (const v1::InjectedFault& f : run.truth) {
    const int minute = static_cast<int>(
        (f.time().seconds() - absl::ToUnixSeconds(kStart)) / 60);
    const auto key = std::make_pair(minute, f.alias());
    switch (f.effect()) {
      case v1::FAULT_EFFECT_PHANTOM_ERROR:
        ++phantom[key];
        break;
      case v1::FAULT_EFFECT_HTTP_STATUS:
        ++five[key];
        break;
      case v1::FAULT_EFFECT_THROTTLE:
        ++throttles[key];
        break;
      case v1::FAULT_EFFECT_TRUNCATE:
        ++truncs[key];
        break;
      default:
        ADD_FAILURE() << "unexpected effect";
        break;
    }
  }
  int total_phantom = 0, total_throttle = 0, total_502 = 0;
  for (int minute = 0; minute < 3; ++minute) {
    double fn_errors = 0, fn_invocations = 0;
    for (const std::string alias : {"buffered", "stream"}) {
      const auto key = std::make_pair(minute, alias);
      const std::string resource = "fleetcanary-canary:" + alias;
      auto cw = [&](const char* metric) {
        return run.cloudwatch[{minute, resource, metric}];
      };
      const int sent = run.sent[key];
      EXPECT_EQ(cw("UrlRequestCount"), sent) << minute << alias;
      EXPECT_EQ(cw("Invocations"), sent - throttles[key]) << minute << alias;
      EXPECT_EQ(cw("Throttles"), throttles[key]) << minute << alias;
      EXPECT_EQ(cw("Errors"), phantom[key] + five[key]) << minute << alias;
      EXPECT_EQ(cw("Url5xxCount"), five[key]) << minute << alias;
      EXPECT_EQ(cw("Url4xxCount"), throttles[key]) << minute << alias;
      // And the client's view agrees where it can see anything.
      EXPECT_EQ(run.client_5xx[key], five[key]);
      EXPECT_EQ(run.client_4xx[key], throttles[key]);
      fn_errors += cw("Errors");
      fn_invocations += cw("Invocations");
      total_phantom += phantom[key];
      total_throttle += throttles[key];
      total_502 += five[key];
    }
    EXPECT_EQ((run.cloudwatch[{minute, "", "Errors"}]), fn_errors);
    EXPECT_EQ((run.cloudwatch[{minute, "", "Invocations"}]), fn_invocations);
  }
  // The scenario did exercise every kind.
  EXPECT_GT(total_phantom, 0);
  EXPECT_GT(total_throttle, 0);
  EXPECT_GT(total_502, 0);
}

TEST(PlatformMetricsTest, SameSeedSameRequestsSameFaults) {
  RunResult a = RunSeededScenario(5);
  RunResult b = RunSeededScenario(5);
  RunResult c = RunSeededScenario(6);
  auto summary = [](const RunResult& r) {
    std::vector<std::string> out;
    for (const v1::InjectedFault& f : r.truth) {
      out.push_back(
          absl::StrCat(f.probe_id(), "/", f.effect(), "/", f.time().seconds()));
    }
    return out;
  };
  EXPECT_EQ(summary(a), summary(b));
  EXPECT_NE(summary(a), summary(c));
}

// ---------------------------------------------------------------------------
// SigV4.

const sigv4::Credentials kCreds{"AKIDEXAMPLE",
                                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};

std::unique_ptr<Emulator> StartIam(Clock* clock, bool monitoring) {
  EmulatorOptions options;
  v1::EmulatorRegion* r = options.config.add_regions();
  r->set_name("eu-west-1");
  r->set_auth(v1::AWS_IAM);
  v1::EmulatorCredential* c = options.config.add_credentials();
  c->set_access_key_id(kCreds.access_key_id);
  c->set_secret_access_key(kCreds.secret_access_key);
  if (monitoring) options.config.set_monitoring_auth(v1::AWS_IAM);
  auto emu = Emulator::Create(options, clock);
  EXPECT_TRUE(emu.ok()) << emu.status();
  return emu.ok() ? *std::move(emu) : nullptr;
}

std::vector<std::string> SignedHeaders(
    const std::string& url, const std::string& method,
    const std::string& target, const std::string& body,
    const std::string& service, const std::string& region, absl::Time now,
    const sigv4::Credentials& creds, std::vector<std::string> extra = {}) {
  const std::string host = absl::StrCat("127.0.0.1:", testing::PortOf(url));
  std::vector<sigv4::HeaderView> headers = {{"host", host}};
  std::vector<std::pair<std::string, std::string>> extra_kv;
  for (const std::string& e : extra) {
    size_t colon = e.find(':');
    extra_kv.emplace_back(e.substr(0, colon), e.substr(colon + 2));
  }
  for (const auto& [n, v] : extra_kv) headers.push_back({n, v});
  sigv4::HttpRequestView req{method, target, headers, body, ""};
  sigv4::SigningParams params;
  params.service = service;
  params.region = region;
  params.time = now;
  auto signed_req = sigv4::SignRequest(req, creds, params);
  EXPECT_TRUE(signed_req.ok()) << signed_req.status();
  std::vector<std::string> out = extra;
  for (const auto& [n, v] : signed_req->headers_to_add) {
    out.push_back(absl::StrCat(n, ": ", v));
  }
  return out;
}

TEST(IamTest, FunctionUrlVerifiesSigV4ForLambda) {
  SimulatedClock clock(kStart);
  auto emu = StartIam(&clock, false);
  ASSERT_NE(emu, nullptr);
  const std::string url = emu->url("eu-west-1", v1::BUFFERED);
  const std::string target = "/canary?bytes=64&seed=3";
  auto fetch = [&](std::vector<std::string> headers) {
    return testing::CurlFetch(url + target.substr(1),
                              testing::WithHeaders(headers));
  };
  testing::CurlResult ok = fetch(SignedHeaders(
      url, "GET", target, "", "lambda", "eu-west-1", clock.Now(), kCreds));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.body, MakePayload(3, 64));

  testing::CurlResult missing = fetch({});
  EXPECT_EQ(missing.status, 403);
  EXPECT_EQ(missing.Header("x-amzn-errortype"), "AccessDeniedException");

  sigv4::Credentials wrong = kCreds;
  wrong.secret_access_key = "not-the-secret";
  EXPECT_EQ(fetch(SignedHeaders(url, "GET", target, "", "lambda", "eu-west-1",
                                clock.Now(), wrong))
                .status,
            403);
  EXPECT_EQ(fetch(SignedHeaders(url, "GET", target, "", "lambda", "us-east-1",
                                clock.Now(), kCreds))
                .status,
            403);
  EXPECT_EQ(fetch(SignedHeaders(url, "GET", target, "", "monitoring",
                                "eu-west-1", clock.Now(), kCreds))
                .status,
            403);
  // Signed for another query string.
  EXPECT_EQ(fetch(SignedHeaders(url, "GET", "/canary?bytes=65&seed=3", "",
                                "lambda", "eu-west-1", clock.Now(), kCreds))
                .status,
            403);
  // Signed with a payload hash that does not match the body sent.
  std::vector<std::string> body_signed = SignedHeaders(
      url, "GET", target, "abc", "lambda", "eu-west-1", clock.Now(), kCreds,
      {"x-amz-content-sha256: " + sigv4::Sha256Hex("abc")});
  EXPECT_EQ(fetch(body_signed).status, 403);
  // Too old.
  std::vector<std::string> old = SignedHeaders(
      url, "GET", target, "", "lambda", "eu-west-1", clock.Now(), kCreds);
  clock.AdvanceTime(absl::Minutes(6));
  EXPECT_EQ(fetch(old).status, 403);
}

TEST(IamTest, MonitoringEndpointVerifiesSigV4WhenConfigured) {
  SimulatedClock clock(kStart);
  auto emu = StartIam(&clock, true);
  ASSERT_NE(emu, nullptr);
  const std::string cw = emu->cloudwatch_url("eu-west-1");
  json request = {{"StartTime", 0},
                  {"EndTime", 60},
                  {"MetricDataQueries", {MetricQuery("a", "Errors", "")}}};
  long status = 0;
  json denied = GetMetricData(cw, request, {}, &status);
  EXPECT_EQ(status, 403);
  EXPECT_EQ(denied["__type"], "AccessDeniedException");
  std::vector<std::string> headers = SignedHeaders(
      cw, "POST", "/", request.dump(), "monitoring", "eu-west-1", clock.Now(),
      kCreds,
      {"content-type: application/x-amz-json-1.0",
       "x-amz-target: GraniteServiceVersion20100801.GetMetricData"});
  json ok = GetMetricData(cw, request, headers, &status);
  EXPECT_EQ(status, 200) << ok.dump();
  // The same request signed with the wrong secret is refused.
  sigv4::Credentials wrong = kCreds;
  wrong.secret_access_key = "wrong";
  GetMetricData(cw, request,
                SignedHeaders(cw, "POST", "/", request.dump(), "monitoring",
                              "eu-west-1", clock.Now(), wrong,
                              {"content-type: application/x-amz-json-1.0",
                               "x-amz-target: "
                               "GraniteServiceVersion20100801.GetMetricData"}),
                &status);
  EXPECT_EQ(status, 403);
  EXPECT_TRUE(ok.contains("MetricDataResults"));
}

TEST(IamTest, ConfigWithoutCredentialsIsRefused) {
  EmulatorOptions options;
  v1::EmulatorRegion* r = options.config.add_regions();
  r->set_name("eu-west-1");
  r->set_auth(v1::AWS_IAM);
  auto emu = Emulator::Create(options, Clock::Real());
  EXPECT_EQ(emu.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(emu.status().message()), HasSubstr("credentials"));
}

// ---------------------------------------------------------------------------
// TLS.

// Writes a self-signed certificate for 127.0.0.1 and its key.
void WriteSelfSigned(const std::string& cert_path,
                     const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(x, key, EVP_sha256());
  FILE* f = fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
}

TEST(TlsTest, ServesHttpsWithTheGivenCertificate) {
  const std::string cert = ::testing::TempDir() + "/emu_cert.pem";
  const std::string key = ::testing::TempDir() + "/emu_key.pem";
  WriteSelfSigned(cert, key);
  EmulatorOptions options;
  options.config.set_tls_cert_file(cert);
  options.config.set_tls_key_file(key);
  auto emu = Emulator::Create(options, Clock::Real());
  ASSERT_TRUE(emu.ok()) << emu.status();
  const std::string url = (*emu)->url("us-east-1", v1::RESPONSE_STREAM);
  ASSERT_THAT(url, ::testing::StartsWith("https://127.0.0.1:"));
  testing::CurlResult r = testing::CurlFetch(
      url + "canary?bytes=5000&chunk=100&seed=2", testing::WithCaFile(cert));
  EXPECT_EQ(r.curl_code, 0) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, MakePayload(2, 5000));
  // Plain HTTP to a TLS port fails instead of hanging: the server ends the
  // connection, long before the client would give up (60 s, a safety bound).
  testing::CurlResult plain =
      testing::CurlFetch(absl::StrCat("http://127.0.0.1:", testing::PortOf(url),
                                      "/canary?bytes=1"),
                         testing::WithTimeout(absl::Seconds(60)));
  EXPECT_NE(plain.status, 200);
  EXPECT_NE(plain.curl_code, static_cast<int>(CURLE_OPERATION_TIMEDOUT))
      << plain.error;
  // Unknown CA is refused by the client.
  testing::CurlResult untrusted = testing::CurlFetch(
      url + "canary?bytes=1", testing::WithCaFile("/nonexistent"));
  EXPECT_NE(untrusted.curl_code, 0);
  EmulatorOptions bad = options;
  bad.config.set_tls_key_file("/nonexistent/key.pem");
  auto refused = Emulator::Create(bad, Clock::Real());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("tls_key_file"));
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary

namespace fleetcanary {
namespace emulator {
namespace {

TEST(EmulatorConfigTest, ShippedDemoConfigLoadsAndBadConfigsAreLocated) {
  auto demo = LoadEmulatorConfig(std::string(FLEETCANARY_SOURCE_DIR) +
                                 "/emulator/configs/demo.yaml");
  ASSERT_TRUE(demo.ok()) << demo.status();
  EXPECT_EQ(demo->regions_size(), 3);
  EXPECT_EQ(demo->metrics_period().seconds(), 1);
  const std::string path = ::testing::TempDir() + "/emu_bad_config.yaml";
  std::ofstream(path) << "regions:\n  - name: us-east-1\n  - name: us-east-1\n";
  auto dup = LoadEmulatorConfig(path);
  EXPECT_THAT(std::string(dup.status().message()),
              HasSubstr(path + ":3:11: regions[1].name: duplicate region"));
  std::ofstream(path) << "regions:\n  - name: us-east-1\nscenario:\n  faults:\n"
                         "    - {name: x, effect: stall}\n";
  auto bad_rule = LoadEmulatorConfig(path);
  EXPECT_THAT(std::string(bad_rule.status().message()),
              HasSubstr(path + ":5:7: scenario.faults[0].probability"));
  std::ofstream(path) << "regions:\n  - name: us-east-1\n    reserved: 3\n";
  EXPECT_THAT(std::string(LoadEmulatorConfig(path).status().message()),
              HasSubstr(path + ":3:"));
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary
