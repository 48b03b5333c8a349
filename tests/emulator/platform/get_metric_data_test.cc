#include "emulator/platform/get_metric_data.h"

#include "emulator/platform/metric_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1706659200);  // Minute-aligned.

json Query(const std::string& id, const std::string& metric,
           const std::string& stat, int period,
           const std::string& resource = "") {
  json dims = json::array({{{"Name", "FunctionName"}, {"Value", "fn"}}});
  if (!resource.empty()) {
    dims.push_back({{"Name", "Resource"}, {"Value", resource}});
  }
  return {{"Id", id},
          {"MetricStat",
           {{"Metric",
             {{"Namespace", "AWS/Lambda"},
              {"MetricName", metric},
              {"Dimensions", dims}}},
            {"Period", period},
            {"Stat", stat}}},
          {"ReturnData", true}};
}

json Call(const MetricStore& store, const json& req, absl::Time now,
          int* status = nullptr) {
  JsonResponse r =
      HandleCloudWatchJson(kGetMetricDataTarget, req.dump(), store, now);
  if (status != nullptr) *status = r.status;
  return json::parse(r.body);
}

TEST(MetricStoreTest, BucketsByPeriodAggregatesAndHidesUntilIngested) {
  MetricStoreOptions options;
  options.ingestion_delay = absl::Seconds(30);
  MetricStore store(options);
  // Minute 0: 3 invocations, 1 error; minute 1: 2 invocations.
  for (int i = 0; i < 3; ++i) {
    store.Record("fn", "stream", LambdaMetric::kInvocations, 1,
                 kT0 + absl::Seconds(10 * i));
    store.Record("fn", "stream", LambdaMetric::kErrors, i == 1 ? 1 : 0,
                 kT0 + absl::Seconds(10 * i));
    store.Record("fn", "stream", LambdaMetric::kDuration, 100.0 * (i + 1),
                 kT0 + absl::Seconds(10 * i));
  }
  store.Record("fn", "buffered", LambdaMetric::kInvocations, 1,
               kT0 + absl::Seconds(70));
  store.Record("fn", "buffered", LambdaMetric::kInvocations, 1,
               kT0 + absl::Seconds(119.999));
  auto q = [&](absl::string_view resource, LambdaMetric m,
               absl::string_view stat, absl::Duration period, absl::Time now) {
    auto r = store.Query("fn", resource, m, kT0 - absl::Hours(1),
                         kT0 + absl::Hours(1), period, stat, now);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<Datapoint>();
  };
  // Not visible before period end + ingestion delay.
  EXPECT_TRUE(q("", LambdaMetric::kInvocations, "Sum", absl::Seconds(60),
                kT0 + absl::Seconds(89.999))
                  .empty());
  auto sums = q("", LambdaMetric::kInvocations, "Sum", absl::Seconds(60),
                kT0 + absl::Seconds(90));
  ASSERT_EQ(sums.size(), 1u);
  EXPECT_EQ(sums[0].timestamp, kT0);
  EXPECT_EQ(sums[0].value, 3);
  sums = q("", LambdaMetric::kInvocations, "Sum", absl::Seconds(60),
           kT0 + absl::Hours(1));
  ASSERT_EQ(sums.size(), 2u);
  EXPECT_EQ(sums[1].value, 2);
  // Per resource.
  auto stream = q("fn:stream", LambdaMetric::kInvocations, "Sum",
                  absl::Seconds(60), kT0 + absl::Hours(1));
  ASSERT_EQ(stream.size(), 1u);
  EXPECT_EQ(stream[0].value, 3);
  // Two-minute period aggregates both minutes.
  auto two = q("", LambdaMetric::kInvocations, "SampleCount",
               absl::Seconds(120), kT0 + absl::Hours(1));
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].value, 5);
  // Statistics.
  EXPECT_NEAR(q("", LambdaMetric::kErrors, "Average", absl::Seconds(60),
                kT0 + absl::Hours(1))[0]
                  .value,
              1.0 / 3, 1e-12);
  EXPECT_EQ(q("", LambdaMetric::kDuration, "Maximum", absl::Seconds(60),
              kT0 + absl::Hours(1))[0]
                .value,
            300);
  EXPECT_EQ(q("", LambdaMetric::kDuration, "Minimum", absl::Seconds(60),
              kT0 + absl::Hours(1))[0]
                .value,
            100);
  EXPECT_EQ(q("", LambdaMetric::kDuration, "p50", absl::Seconds(60),
              kT0 + absl::Hours(1))[0]
                .value,
            200);
  EXPECT_EQ(q("", LambdaMetric::kDuration, "p99.9", absl::Seconds(60),
              kT0 + absl::Hours(1))[0]
                .value,
            300);
  EXPECT_FALSE(store
                   .Query("fn", "", LambdaMetric::kErrors, kT0,
                          kT0 + absl::Hours(1), absl::Seconds(90), "Sum",
                          kT0 + absl::Hours(1))
                   .ok());
  EXPECT_FALSE(store
                   .Query("fn", "", LambdaMetric::kErrors, kT0,
                          kT0 + absl::Hours(1), absl::Seconds(60), "Median",
                          kT0 + absl::Hours(1))
                   .ok());
}

TEST(MetricStoreTest, MemoryIsBounded) {
  MetricStoreOptions options;
  options.period = absl::Seconds(1);
  options.max_buckets_per_series = 10;
  options.max_samples_per_bucket = 100;
  MetricStore store(options);
  for (int i = 0; i < 1000; ++i) {
    store.Record("fn", "a", LambdaMetric::kDuration, i, kT0 + absl::Seconds(i));
  }
  for (int i = 0; i < 10000; ++i) {
    store.Record("fn", "a", LambdaMetric::kDuration, i % 100,
                 kT0 + absl::Seconds(999));
  }
  auto r =
      store.Query("fn", "", LambdaMetric::kDuration, kT0, kT0 + absl::Hours(1),
                  absl::Seconds(1), "SampleCount", kT0 + absl::Hours(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 10u);
  EXPECT_EQ(r->back().value, 10001);  // Counts stay exact.
}

TEST(GetMetricDataTest, AnswersLikeCloudWatchWithPagination) {
  MetricStoreOptions options;
  options.period = absl::Seconds(1);
  MetricStore store(options);
  for (int s = 0; s < 10; ++s) {
    for (int k = 0; k <= s; ++k) {
      store.Record("fn", "stream", LambdaMetric::kInvocations, 1,
                   kT0 + absl::Seconds(s) + absl::Milliseconds(k));
    }
  }
  json req = {{"MetricDataQueries",
               {Query("inv", "Invocations", "Sum", 1, "fn:stream"),
                Query("err", "Errors", "Sum", 1)}},
              {"StartTime", absl::ToUnixSeconds(kT0)},
              {"EndTime", absl::ToUnixSeconds(kT0) + 3600},
              {"ScanBy", "TimestampAscending"},
              {"MaxDatapoints", 4}};
  const absl::Time now = kT0 + absl::Minutes(5);
  std::vector<double> values;
  std::vector<int64_t> stamps;
  int pages = 0;
  while (true) {
    int status = 0;
    json resp = Call(store, req, now, &status);
    ASSERT_EQ(status, 200) << resp.dump();
    ++pages;
    for (const json& r : resp["MetricDataResults"]) {
      if (r["Id"] != "inv") {
        EXPECT_EQ(r["StatusCode"], "Complete");
        EXPECT_TRUE(r["Values"].empty());
        continue;
      }
      EXPECT_EQ(r["Label"], "Invocations");
      for (const json& v : r["Values"]) values.push_back(v.get<double>());
      for (const json& t : r["Timestamps"]) stamps.push_back(t.get<int64_t>());
      EXPECT_EQ(r["StatusCode"],
                resp.contains("NextToken") ? "PartialData" : "Complete");
    }
    if (!resp.contains("NextToken")) break;
    req["NextToken"] = resp["NextToken"];
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(values.size(), 10u);
  for (int s = 0; s < 10; ++s) {
    EXPECT_EQ(values[s], s + 1);
    EXPECT_EQ(stamps[s], absl::ToUnixSeconds(kT0) + s);
  }
  // Default order: newest first.
  req.erase("ScanBy");
  req.erase("NextToken");
  req["MaxDatapoints"] = 100;
  json resp = Call(store, req, now);
  EXPECT_EQ(resp["MetricDataResults"][0]["Values"][0], 10);
}

TEST(GetMetricDataTest, RefusesBadRequests) {
  MetricStore store{MetricStoreOptions()};
  const json good = {{"MetricDataQueries", {Query("a", "Errors", "Sum", 60)}},
                     {"StartTime", 0},
                     {"EndTime", 60}};
  struct Case {
    json req;
    const char* type;
  };
  json no_queries = good;
  no_queries.erase("MetricDataQueries");
  json bad_id = good;
  bad_id["MetricDataQueries"][0]["Id"] = "Upper";
  json bad_period = good;
  bad_period["MetricDataQueries"][0]["MetricStat"]["Period"] = 90;
  json reversed = good;
  reversed["StartTime"] = 100;
  json bad_token = good;
  bad_token["NextToken"] = "garbage";
  json expression = good;
  expression["MetricDataQueries"][0]["Expression"] = "SUM(METRICS())";
  json wrong_type = good;
  wrong_type["MetricDataQueries"][0]["MetricStat"]["Stat"] = 5;
  for (const Case& c : {Case{no_queries, "MissingParameter"},
                        Case{bad_id, "InvalidParameterValue"},
                        Case{bad_period, "InvalidParameterValue"},
                        Case{reversed, "InvalidParameterValue"},
                        Case{bad_token, "InvalidNextToken"},
                        Case{expression, "InvalidParameterValue"},
                        Case{wrong_type, "MissingParameter"}}) {
    int status = 0;
    json resp = Call(store, c.req, kT0, &status);
    EXPECT_EQ(status, 400) << c.req.dump();
    EXPECT_EQ(resp["__type"], c.type) << resp.dump();
    EXPECT_FALSE(resp["message"].get<std::string>().empty());
  }
  JsonResponse garbage =
      HandleCloudWatchJson(kGetMetricDataTarget, "{nope", store, kT0);
  EXPECT_EQ(garbage.status, 400);
  EXPECT_THAT(garbage.body, HasSubstr("SerializationException"));
  JsonResponse unknown = HandleCloudWatchJson(
      "GraniteServiceVersion20100801.PutMetricData", "{}", store, kT0);
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(unknown.body, HasSubstr("UnknownOperationException"));
  // Other namespaces simply have no data.
  json other = good;
  other["MetricDataQueries"][0]["MetricStat"]["Metric"]["Namespace"] =
      "AWS/EC2";
  int status = 0;
  json resp = Call(store, other, kT0, &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(resp["MetricDataResults"][0]["StatusCode"], "Complete");
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary
