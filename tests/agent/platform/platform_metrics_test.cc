// The CloudWatch GetMetricData client and the PlatformMetricsReader, against
// a real local HTTP server that verifies every SigV4 signature.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/platform/cloudwatch_client.h"
#include "agent/platform/metrics_reader.h"
#include "common/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_cloudwatch_server.h"

namespace fleetcanary {
namespace platform {
namespace {

using testing::FakeCloudWatchServer;
using ::testing::HasSubstr;

// 2024-02-01T00:00:00Z, a multiple of 60 s.
const absl::Time kT0 = absl::FromUnixSeconds(1706745600);
const sigv4::Credentials kCreds{"AKIDCANARY", "canary/secret+key", ""};

MetricsTarget Target(const std::string& endpoint, v1::InvokeMode mode,
                     const std::string& alias,
                     const std::string& region = "us-east-1") {
  MetricsTarget t;
  t.region = region;
  t.target = "canary";
  t.mode = mode;
  t.identity.set_function_name("fc-canary");
  t.identity.set_alias(alias);
  t.identity.set_endpoint(endpoint);
  return t;
}

absl::Time SampleTime(const v1::PlatformMetricSample& s) {
  return absl::FromUnixSeconds(s.period_start().seconds());
}

class CloudWatchClientTest : public ::testing::Test {
 protected:
  void StartServer(size_t page_size = 1000,
                   const sigv4::Credentials& server_creds = kCreds) {
    FakeCloudWatchServer::Options o;
    o.credentials = server_creds;
    o.clock = &clock_;
    o.page_size = page_size;
    server_ = std::make_unique<FakeCloudWatchServer>(o);
  }

  std::unique_ptr<PlatformMetricsClient> Client(
      const sigv4::Credentials& creds = kCreds) {
    CloudWatchClientOptions o;
    o.credentials = creds;
    o.clock = &clock_;
    o.request_timeout = absl::Seconds(5);
    auto client = CreateCloudWatchClient(o);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  SimulatedClock clock_{kT0};
  std::unique_ptr<FakeCloudWatchServer> server_;
};

TEST_F(CloudWatchClientTest, SignedJson10RequestAndSamples) {
  StartServer();
  server_->Set("fc-canary", "fc-canary:stream", "Errors", "Sum",
               kT0 - absl::Minutes(3), 2);
  server_->Set("fc-canary", "fc-canary:stream", "Invocations", "Sum",
               kT0 - absl::Minutes(3), 1000);
  server_->Set("fc-canary", "fc-canary:stream", "Duration", "Average",
               kT0 - absl::Minutes(2), 101.5);
  // Outside the window: not returned.
  server_->Set("fc-canary", "fc-canary:stream", "Errors", "Sum", kT0, 9);
  // Another alias: not this target's series.
  server_->Set("fc-canary", "fc-canary:buffered", "Errors", "Sum",
               kT0 - absl::Minutes(3), 7);

  auto client = Client();
  auto result = client->GetMetricData(
      {Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->complete);

  std::map<std::string, double> got;
  for (const auto& s : result->samples) {
    EXPECT_EQ(s.region(), "us-east-1");
    EXPECT_EQ(s.target(), "canary");
    EXPECT_EQ(s.mode(), v1::RESPONSE_STREAM);
    EXPECT_EQ(s.function_name(), "fc-canary");
    EXPECT_EQ(s.resource(), "fc-canary:stream");
    EXPECT_EQ(s.period().seconds(), 60);
    got[absl::StrCat(s.metric(), "/", s.stat(), "@",
                     absl::ToUnixSeconds(SampleTime(s)))] = s.value();
  }
  EXPECT_EQ(got, (std::map<std::string, double>{
                     {"Errors/Sum@1706745420", 2},
                     {"Invocations/Sum@1706745420", 1000},
                     {"Duration/Average@1706745480", 101.5}}));

  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  EXPECT_EQ(r.verify_error, "");
  EXPECT_EQ(r.target, "GraniteServiceVersion20100801.GetMetricData");
  EXPECT_EQ(r.content_type, "application/x-amz-json-1.0");
  EXPECT_EQ(r.body["StartTime"], 1706745300);
  EXPECT_EQ(r.body["EndTime"], 1706745600);
  EXPECT_EQ(r.body["ScanBy"], "TimestampAscending");
  EXPECT_FALSE(r.body.contains("NextToken"));
  ASSERT_EQ(r.body["MetricDataQueries"].size(), 8u);
  const auto& q0 = r.body["MetricDataQueries"][0];
  EXPECT_EQ(q0["MetricStat"]["Metric"]["Namespace"], "AWS/Lambda");
  EXPECT_EQ(q0["MetricStat"]["Metric"]["MetricName"], "Invocations");
  EXPECT_EQ(q0["MetricStat"]["Period"], 60);
  EXPECT_EQ(q0["MetricStat"]["Stat"], "Sum");
  EXPECT_EQ(q0["ReturnData"], true);
  EXPECT_EQ(q0["MetricStat"]["Metric"]["Dimensions"],
            nlohmann::json::parse(
                R"([{"Name":"FunctionName","Value":"fc-canary"},
                    {"Name":"Resource","Value":"fc-canary:stream"}])"));
}

// The request the agent sends, checked by an oracle not written here: the
// GetMetricData input shape of Debian's python3-botocore service model
// (types, required members, ranges, enum values).
TEST_F(CloudWatchClientTest, RequestMatchesBotocoreServiceModel) {
  StartServer();
  auto client = Client();
  auto result = client->GetMetricData(
      {Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream"),
       Target(server_->endpoint(), v1::BUFFERED, "")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  ASSERT_TRUE(result.ok()) << result.status();
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  const std::string path = ::testing::TempDir() + "/get_metric_data.json";
  std::ofstream(path) << requests[0].body.dump();
  const std::string cmd =
      std::string("/usr/bin/python3 " FLEETCANARY_SOURCE_DIR
                  "/tests/agent/platform/validate_get_metric_data.py ") +
      path + " " + requests[0].target;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// Credentials asked per request (the refreshing chain): an error fails the
// read with UNAVAILABLE naming the cause; fresh ones are used as they come.
TEST_F(CloudWatchClientTest, CredentialsSourceIsAskedPerRequest) {
  StartServer();
  absl::StatusOr<sigv4::Credentials> current =
      absl::UnavailableError("web-identity: token file gone");
  CloudWatchClientOptions o;
  o.clock = &clock_;
  o.credentials_source = [&current] { return current; };
  auto client = CreateCloudWatchClient(o);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<MetricsTarget> targets = {
      Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream")};
  auto failed =
      (*client)->GetMetricData(targets, DefaultLambdaMetrics(),
                               kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(failed.status().message()),
              ::testing::HasSubstr("web-identity"));
  current = kCreds;
  auto ok =
      (*client)->GetMetricData(targets, DefaultLambdaMetrics(),
                               kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  EXPECT_TRUE(ok.ok()) << ok.status();
}

// A target with a role_arn is read with that role's credentials, in its own
// signed call; other targets keep the client's own credentials.
TEST_F(CloudWatchClientTest, TargetsWithARoleAreSignedWithTheRolesCredentials) {
  StartServer();
  sigv4::Credentials wrong = kCreds;
  wrong.secret_access_key = "not-the-secret";
  std::vector<std::string> asked;
  CloudWatchClientOptions o;
  o.clock = &clock_;
  o.credentials_source = [&wrong] { return wrong; };
  o.role_credentials =
      [&](const std::string& role) -> absl::StatusOr<sigv4::Credentials> {
    asked.push_back(role);
    return kCreds;
  };
  auto client = CreateCloudWatchClient(o);
  ASSERT_TRUE(client.ok()) << client.status();
  MetricsTarget with_role =
      Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream");
  with_role.role_arn = "arn:aws:iam::210987654321:role/reader";
  auto ok =
      (*client)->GetMetricData({with_role}, DefaultLambdaMetrics(),
                               kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  EXPECT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(asked, std::vector<std::string>{with_role.role_arn});
  // With a target without a role too, that one is signed with the chain's
  // credentials (a wrong secret here): refused, so the read fails.
  auto mixed = (*client)->GetMetricData(
      {with_role, Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  EXPECT_FALSE(mixed.ok());
  int verified = 0, refused = 0;
  for (const auto& r : server_->requests()) {
    (r.verify_error.empty() ? verified : refused)++;
  }
  EXPECT_EQ(verified, 1);
  EXPECT_EQ(refused, 1);
  // Without a source of role credentials, a role target cannot be read.
  CloudWatchClientOptions plain;
  plain.clock = &clock_;
  plain.credentials = kCreds;
  auto no_roles = CreateCloudWatchClient(plain);
  ASSERT_TRUE(no_roles.ok());
  auto refused_read = (*no_roles)->GetMetricData(
      {with_role}, DefaultLambdaMetrics(), kT0 - absl::Minutes(5), kT0,
      absl::Seconds(60));
  EXPECT_EQ(refused_read.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused_read.status().message()),
              ::testing::HasSubstr(with_role.role_arn));
}

TEST(CloudWatchEndpoint, PartitionAndOverride) {
  MetricsTarget t;
  t.region = "cn-north-1";
  EXPECT_EQ(EndpointFor(t), "https://monitoring.cn-north-1.amazonaws.com.cn");
  t.region = "us-gov-west-1";
  EXPECT_EQ(EndpointFor(t), "https://monitoring.us-gov-west-1.amazonaws.com");
  EXPECT_EQ(EndpointFor(t,
                        "https://vpce-1.monitoring.us-gov-west-1.vpce."
                        "amazonaws.com"),
            "https://vpce-1.monitoring.us-gov-west-1.vpce.amazonaws.com");
  t.identity.set_endpoint("http://127.0.0.1:1/");
  EXPECT_EQ(EndpointFor(t, "https://ignored"), "http://127.0.0.1:1/");
}

// An endpoint that does not check signatures (the emulator without
// monitoring_auth) is read unsigned, without credentials; this server checks
// them, so the request is refused - and shows no signature was sent.
TEST_F(CloudWatchClientTest, UnsignedRequestsNeedNoCredentials) {
  StartServer();
  CloudWatchClientOptions o;
  o.clock = &clock_;
  EXPECT_EQ(CreateCloudWatchClient(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.sign = false;
  auto client = CreateCloudWatchClient(o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto result = (*client)->GetMetricData(
      {Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(5), kT0, absl::Seconds(60));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied);
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].verify_error, HasSubstr("uthorization"));
  EXPECT_EQ(requests[0].target, "GraniteServiceVersion20100801.GetMetricData");
}

TEST_F(CloudWatchClientTest, FollowsNextTokenAcrossPages) {
  StartServer(/*page_size=*/3);
  for (int i = 0; i < 10; ++i) {
    server_->Set("fc-canary", "fc-canary:buffered", "Invocations", "Sum",
                 kT0 - absl::Minutes(10 - i), i + 1);
    server_->Set("fc-canary", "fc-canary:buffered", "Errors", "Sum",
                 kT0 - absl::Minutes(10 - i), i % 2);
  }
  auto client = Client();
  auto result = client->GetMetricData(
      {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      {{"Invocations", "Sum"}, {"Errors", "Sum"}}, kT0 - absl::Minutes(10), kT0,
      absl::Seconds(60));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->complete);
  ASSERT_EQ(result->samples.size(), 20u);
  double invocations = 0;
  for (const auto& s : result->samples) {
    if (s.metric() == "Invocations") invocations += s.value();
  }
  EXPECT_EQ(invocations, 55);
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 7u);  // ceil(20 / 3).
  EXPECT_EQ(requests[1].body["NextToken"], "page-3");
  for (const auto& r : requests) EXPECT_EQ(r.verify_error, "");
}

TEST_F(CloudWatchClientTest, SessionTokenIsSignedAndChecked) {
  sigv4::Credentials with_token = kCreds;
  with_token.session_token = "session-token-1";
  StartServer(1000, with_token);
  auto ok = Client(with_token)
                ->GetMetricData(
                    {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
                    DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0,
                    absl::Seconds(60));
  EXPECT_TRUE(ok.ok()) << ok.status();
  // Without the token the server refuses.
  auto denied = Client(kCreds)->GetMetricData(
      {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  EXPECT_TRUE(absl::IsPermissionDenied(denied.status())) << denied.status();
  EXPECT_THAT(std::string(denied.status().message()),
              HasSubstr("X-Amz-Security-Token"));
}

TEST_F(CloudWatchClientTest, WrongSecretIsPermissionDenied) {
  StartServer();
  sigv4::Credentials wrong = kCreds;
  wrong.secret_access_key = "not-the-secret";
  auto result = Client(wrong)->GetMetricData(
      {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("SignatureDoesNotMatch"));
}

TEST_F(CloudWatchClientTest, ResultStatusCodes) {
  StartServer();
  auto client = Client();
  auto call = [&] {
    return client->GetMetricData(
        {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
        DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  };
  server_->ForceStatusCode("Forbidden");
  EXPECT_TRUE(absl::IsPermissionDenied(call().status()));
  server_->ForceStatusCode("InternalError");
  EXPECT_TRUE(absl::IsUnavailable(call().status()));
  server_->ForceStatusCode("PartialData");  // With no further page.
  auto partial = call();
  ASSERT_TRUE(partial.ok());
  EXPECT_FALSE(partial->complete);
  server_->ForceStatusCode("");
  auto complete = call();
  ASSERT_TRUE(complete.ok());
  EXPECT_TRUE(complete->complete);
}

TEST_F(CloudWatchClientTest, HttpErrorsMapToStatuses) {
  StartServer();
  auto client = Client();
  auto call = [&] {
    return client->GetMetricData(
        {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
        DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  };
  server_->FailNext(1, 400,
                    R"({"__type":"com.amazon.coral#InvalidParameterValue",)"
                    R"("message":"bad Period"})");
  auto bad = call();
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("InvalidParameterValue: bad Period"));
  server_->FailNext(1, 400, R"({"__type":"Throttling","message":"slow down"})");
  EXPECT_TRUE(absl::IsUnavailable(call().status()));
  server_->FailNext(1, 503, "not json");
  EXPECT_TRUE(absl::IsUnavailable(call().status()));
  server_->FailNext(1, 200, "[1,2]");
  EXPECT_TRUE(absl::IsUnavailable(call().status()));
  server_->FailNext(1, 200,
                    R"({"MetricDataResults":[{"Id":"q0","Timestamps":[1],)"
                    R"("Values":[]}]})");
  EXPECT_TRUE(absl::IsUnavailable(call().status()));
  EXPECT_TRUE(call().ok());
}

TEST_F(CloudWatchClientTest, OversizedResponseIsRefused) {
  StartServer();
  for (int i = 0; i < 200; ++i) {
    server_->Set("fc-canary", "fc-canary:buffered", "Invocations", "Sum",
                 kT0 - absl::Minutes(200 - i), i);
  }
  CloudWatchClientOptions o;
  o.credentials = kCreds;
  o.clock = &clock_;
  o.max_response_bytes = 1024;
  auto client = *CreateCloudWatchClient(o);
  auto result = client->GetMetricData(
      {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      {{"Invocations", "Sum"}}, kT0 - absl::Minutes(200), kT0,
      absl::Seconds(60));
  EXPECT_TRUE(absl::IsResourceExhausted(result.status())) << result.status();
}

TEST_F(CloudWatchClientTest, SilentServerTimesOut) {
  StartServer();
  server_->SetHang(true);
  CloudWatchClientOptions o;
  o.credentials = kCreds;
  o.clock = &clock_;
  o.request_timeout = absl::Milliseconds(300);
  auto client = *CreateCloudWatchClient(o);
  // If the request timeout did not work, this call would never return.
  auto result = client->GetMetricData(
      {Target(server_->endpoint(), v1::BUFFERED, "buffered")},
      DefaultLambdaMetrics(), kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  server_->SetHang(false);
}

TEST_F(CloudWatchClientTest, ConnectionRefusedIsUnavailable) {
  std::string endpoint;
  {
    StartServer();
    endpoint = server_->endpoint();
    server_.reset();  // Port now closed.
  }
  auto result = Client()->GetMetricData(
      {Target(endpoint, v1::BUFFERED, "buffered")}, DefaultLambdaMetrics(),
      kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
}

TEST_F(CloudWatchClientTest, GroupsByEndpointAndRegionAndBatchesBy500) {
  FakeCloudWatchServer::Options o;
  o.credentials = kCreds;
  o.clock = &clock_;
  o.region = "eu-west-1";
  FakeCloudWatchServer eu(o);
  o.region = "us-east-1";
  FakeCloudWatchServer us(o);
  eu.Set("fc-canary", "fc-canary:stream", "Errors", "Sum",
         kT0 - absl::Minutes(1), 3);
  us.Set("fc-canary", "fc-canary:stream", "Errors", "Sum",
         kT0 - absl::Minutes(1), 4);

  std::vector<MetricsTarget> targets;
  // 63 targets x 8 metrics = 504 queries in us-east-1: two calls.
  for (int i = 0; i < 63; ++i) {
    MetricsTarget t = Target(us.endpoint(), v1::RESPONSE_STREAM, "stream");
    t.target = absl::StrCat("t", i);
    targets.push_back(t);
  }
  targets.push_back(
      Target(eu.endpoint(), v1::RESPONSE_STREAM, "stream", "eu-west-1"));
  auto result =
      Client()->GetMetricData(targets, DefaultLambdaMetrics(),
                              kT0 - absl::Minutes(1), kT0, absl::Seconds(60));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->samples.size(), 64u);
  auto us_requests = us.requests();
  ASSERT_EQ(us_requests.size(), 2u);
  EXPECT_EQ(us_requests[0].body["MetricDataQueries"].size(), 500u);
  EXPECT_EQ(us_requests[1].body["MetricDataQueries"].size(), 4u);
  for (const auto& r : us_requests) EXPECT_EQ(r.verify_error, "");
  auto eu_requests = eu.requests();
  ASSERT_EQ(eu_requests.size(), 1u);
  EXPECT_EQ(eu_requests[0].verify_error, "");  // Signed for eu-west-1.
  for (const auto& s : result->samples) {
    EXPECT_EQ(s.value(), s.region() == "eu-west-1" ? 3 : 4);
  }
}

TEST_F(CloudWatchClientTest, BadArgumentsNameTheField) {
  auto client = Client();
  MetricsTarget t = Target("http://127.0.0.1:1/", v1::BUFFERED, "buffered");
  auto msg = [](const absl::StatusOr<MetricDataResult>& r) {
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    return std::string(r.status().message());
  };
  EXPECT_THAT(msg(client->GetMetricData({t}, DefaultLambdaMetrics(), kT0,
                                        kT0 + absl::Minutes(1),
                                        absl::Milliseconds(1500))),
              HasSubstr("period"));
  EXPECT_THAT(msg(client->GetMetricData({t}, DefaultLambdaMetrics(), kT0, kT0,
                                        absl::Seconds(60))),
              HasSubstr("end"));
  MetricsTarget no_fn = t;
  no_fn.identity.set_function_name("");
  EXPECT_THAT(msg(client->GetMetricData({no_fn}, DefaultLambdaMetrics(),
                                        kT0 - absl::Minutes(1), kT0,
                                        absl::Seconds(60))),
              HasSubstr("targets[0].cloudwatch.function_name"));
  MetricsTarget bad_url = t;
  bad_url.identity.set_endpoint("ftp://example.invalid/");
  EXPECT_THAT(msg(client->GetMetricData({bad_url}, DefaultLambdaMetrics(),
                                        kT0 - absl::Minutes(1), kT0,
                                        absl::Seconds(60))),
              HasSubstr("scheme"));
  CloudWatchClientOptions o;
  o.clock = &clock_;
  EXPECT_TRUE(absl::IsInvalidArgument(CreateCloudWatchClient(o).status()));
  EXPECT_EQ(EndpointFor(Target("", v1::BUFFERED, "b", "ap-south-1")),
            "https://monitoring.ap-south-1.amazonaws.com");
}

// ---------------------------------------------------------------------------
// PlatformMetricsReader: real client, real server, simulated clock.

class ReaderTest : public CloudWatchClientTest {
 protected:
  void SetUp() override {
    StartServer();
    client_ = Client();
    PlatformMetricsReaderOptions o;
    o.period = absl::Seconds(60);
    o.ingestion_delay = absl::Minutes(3);
    o.initial_lookback = absl::Minutes(5);
    o.max_lookback = absl::Minutes(30);
    reader_ = *PlatformMetricsReader::Create(o, client_.get(), &clock_);
    buffered_ = Target(server_->endpoint(), v1::BUFFERED, "buffered");
    stream_ = Target(server_->endpoint(), v1::RESPONSE_STREAM, "stream");
    reader_->SetTargets({buffered_, stream_});
  }

  // Polls and indexes the samples by "mode/metric@minutes-from-T0".
  std::map<std::string, double> Poll() {
    auto samples = reader_->Poll();
    EXPECT_TRUE(samples.ok()) << samples.status();
    std::map<std::string, double> out;
    if (!samples.ok()) return out;
    for (const auto& s : *samples) {
      std::string key =
          absl::StrCat(s.mode() == v1::BUFFERED ? "b" : "s", "/", s.metric(),
                       "@", absl::ToInt64Minutes(SampleTime(s) - kT0));
      EXPECT_FALSE(out.count(key)) << "reported twice in one poll: " << key;
      out[key] = s.value();
    }
    return out;
  }

  void SetStream(const std::string& metric, int minute, double v) {
    server_->Set("fc-canary", "fc-canary:stream", metric, "Sum",
                 kT0 + absl::Minutes(minute), v);
  }

  std::unique_ptr<PlatformMetricsClient> client_;
  std::unique_ptr<PlatformMetricsReader> reader_;
  MetricsTarget buffered_, stream_;
};

TEST_F(ReaderTest, RereadsUntilFinalThenZeroFills) {
  SetStream("Invocations", -2, 5);
  clock_.AdvanceTime(absl::Seconds(10));  // now = T0 + 10 s.
  // Reads [T0-5m, T0). Final: periods before PeriodStart(now-3m) = T0-3m.
  EXPECT_EQ(Poll(), (std::map<std::string, double>{
                        {"s/Invocations@-2", 5},
                        // Zero-filled: -5 and -4 for both modes.
                        {"b/Invocations@-5", 0},
                        {"b/Errors@-5", 0},
                        {"b/Invocations@-4", 0},
                        {"b/Errors@-4", 0},
                        {"s/Invocations@-5", 0},
                        {"s/Errors@-5", 0},
                        {"s/Invocations@-4", 0},
                        {"s/Errors@-4", 0}}));
  auto requests = server_->requests();
  EXPECT_EQ(requests.back().body["StartTime"], absl::ToUnixSeconds(kT0) - 300);
  EXPECT_EQ(requests.back().body["EndTime"], absl::ToUnixSeconds(kT0));

  // Late datapoints for a closed, not-yet-final period are picked up; a
  // changed value is reported again; an unchanged one is not.
  SetStream("Errors", -2, 1);
  SetStream("Invocations", -2, 7);
  // Late data for an already final period is not (the policy's bound).
  SetStream("Errors", -4, 100);
  clock_.AdvanceTime(absl::Seconds(60));  // now = T0 + 70 s.
  EXPECT_EQ(Poll(), (std::map<std::string, double>{{"s/Errors@-2", 1},
                                                   {"s/Invocations@-2", 7},
                                                   {"b/Invocations@-3", 0},
                                                   {"b/Errors@-3", 0},
                                                   {"s/Invocations@-3", 0},
                                                   {"s/Errors@-3", 0}}));
  requests = server_->requests();
  EXPECT_EQ(requests.back().body["StartTime"], absl::ToUnixSeconds(kT0) - 180);
  EXPECT_EQ(requests.back().body["EndTime"], absl::ToUnixSeconds(kT0) + 60);

  // Nothing new: nothing reported but the newly final minute -2, where the
  // stream mode has data and the buffered mode gets zeros.
  clock_.AdvanceTime(absl::Seconds(60));  // now = T0 + 130 s.
  EXPECT_EQ(Poll(), (std::map<std::string, double>{{"b/Invocations@-2", 0},
                                                   {"b/Errors@-2", 0}}));
}

TEST_F(ReaderTest, FailedReadLosesNothing) {
  clock_.AdvanceTime(absl::Seconds(10));
  Poll();
  SetStream("Errors", -1, 2);
  server_->FailNext(1, 500, R"({"__type":"InternalFailure"})");
  clock_.AdvanceTime(absl::Seconds(120));  // now = T0 + 130 s.
  auto failed = reader_->Poll();
  EXPECT_TRUE(absl::IsUnavailable(failed.status())) << failed.status();
  // The next poll reports what the failed one would have, and more.
  clock_.AdvanceTime(absl::Seconds(60));  // now = T0 + 190 s.
  auto got = Poll();
  EXPECT_EQ(got["s/Errors@-1"], 2);
  for (int minute : {-3, -2}) {
    for (const char* key :
         {"b/Invocations", "b/Errors", "s/Invocations", "s/Errors"}) {
      EXPECT_TRUE(got.count(absl::StrCat(key, "@", minute)))
          << key << "@" << minute;
    }
  }
}

TEST_F(ReaderTest, PartialReadDefersFinalisation) {
  clock_.AdvanceTime(absl::Seconds(10));
  server_->ForceStatusCode("PartialData");
  EXPECT_EQ(Poll(), (std::map<std::string, double>{}));
  server_->ForceStatusCode("");
  EXPECT_EQ(Poll().size(), 8u);  // The zero fills of minutes -5 and -4.
}

TEST_F(ReaderTest, TargetsKeepProgressAndLookbackIsBounded) {
  clock_.AdvanceTime(absl::Seconds(10));
  EXPECT_EQ(Poll().size(), 8u);
  // Re-setting the same targets keeps their progress: no repeated zeros.
  reader_->SetTargets({stream_, buffered_});
  EXPECT_EQ(Poll().size(), 0u);
  // A long outage: the reader looks back at most max_lookback (30 min).
  clock_.AdvanceTime(absl::Hours(5));
  auto got = Poll();
  // Final periods: [now-30m, now-3m) -> 27 minutes x 2 metrics x 2 modes.
  EXPECT_EQ(got.size(), 27u * 4);
  auto requests = server_->requests();
  const int64_t now_s = absl::ToUnixSeconds(clock_.Now());
  EXPECT_EQ(requests.back().body["StartTime"], now_s - 10 - 30 * 60);
  // Dropping a target forgets it.
  reader_->SetTargets({stream_});
  clock_.AdvanceTime(absl::Minutes(1));
  for (const auto& [key, value] : Poll()) EXPECT_EQ(key[0], 's') << key;
}

TEST_F(ReaderTest, NextPollTimeAndCreateValidation) {
  clock_.AdvanceTime(absl::Seconds(10));
  EXPECT_EQ(reader_->NextPollTime(), kT0 + absl::Minutes(1));
  EXPECT_EQ(reader_->PeriodStart(kT0 + absl::Seconds(59)), kT0);
  PlatformMetricsReaderOptions bad;
  bad.period = absl::Milliseconds(500);
  EXPECT_TRUE(absl::IsInvalidArgument(
      PlatformMetricsReader::Create(bad, client_.get(), &clock_).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      PlatformMetricsReader::Create({}, nullptr, &clock_).status()));
}

}  // namespace
}  // namespace platform
}  // namespace fleetcanary
