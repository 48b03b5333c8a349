#include "controller/web/status_data.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using google::protobuf::util::TimeUtil;

v1::Outcome MakeOutcome(v1::InvokeMode mode, uint64_t size,
                        v1::OutcomeClass cls, absl::Time start) {
  v1::Outcome o;
  o.set_region("us-east-1");
  o.set_target("canary");
  o.set_mode(mode);
  o.set_requested_bytes(size);
  o.set_outcome_class(cls);
  *o.mutable_start_time() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(start));
  return o;
}

controller::StreamMinute Minute(v1::InvokeMode mode, uint64_t size, bool adhoc,
                                absl::Time t,
                                std::vector<v1::OutcomeClass> classes) {
  controller::StreamMinute m;
  m.key.region = "us-east-1";
  m.key.target = "canary";
  m.key.mode = mode;
  m.key.size_bytes = size;
  m.key.adhoc = adhoc;
  m.minute = controller::MinuteOf(t);
  for (v1::OutcomeClass c : classes) m.stats.Add(MakeOutcome(mode, size, c, t));
  return m;
}

v1::PlatformMetricSample Sample(v1::InvokeMode mode, const std::string& metric,
                                double value, absl::Time t) {
  v1::PlatformMetricSample s;
  s.set_region("us-east-1");
  s.set_target("canary");
  s.set_mode(mode);
  s.set_metric(metric);
  s.set_stat("Sum");
  s.set_value(value);
  *s.mutable_period_start() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
  return s;
}

TEST(StatusDataTest, RatesByModeAndSizeFromStoreExcludingAdhocAndOurFaults) {
  const absl::Time now = absl::FromUnixSeconds(1706745600 + 600);
  std::unique_ptr<controller::Store> store = controller::CreateMemoryStore();
  controller::WriteBatch batch;
  const absl::Time t = now - absl::Minutes(2);
  batch.minutes.push_back(
      Minute(v1::RESPONSE_STREAM, 1024, false, t,
             {v1::OK, v1::OK, v1::OK, v1::TRUNCATED, v1::AGENT_ERROR}));
  batch.minutes.push_back(
      Minute(v1::BUFFERED, 1024, false, t, {v1::OK, v1::OK, v1::OK, v1::OK}));
  // Ad-hoc probes never reach the charts.
  batch.minutes.push_back(
      Minute(v1::BUFFERED, 1024, true, t, {v1::HTTP_5XX, v1::HTTP_5XX}));
  batch.platform_samples.push_back(
      Sample(v1::RESPONSE_STREAM, "Invocations", 200, t));
  batch.platform_samples.push_back(Sample(v1::RESPONSE_STREAM, "Errors", 3, t));
  controller::CommitResult result;
  ASSERT_TRUE(store->Commit(batch, &result).ok());

  absl::StatusOr<StatusPageData> data = CollectStatusPageData(
      store.get(), nullptr, nullptr, now, absl::Minutes(30));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->probes_total, 9u);
  std::map<std::string, double> last;
  for (const RateSeries& s : data->rate_by_mode) {
    ASSERT_FALSE(s.points.empty()) << s.label;
    last[s.label] = s.points.back().second;
  }
  EXPECT_DOUBLE_EQ(last["stream (clients)"], 0.25);  // 1 of 4, AGENT_ERROR out.
  EXPECT_DOUBLE_EQ(last["buffered (clients)"], 0.0);
  EXPECT_DOUBLE_EQ(last["stream (platform)"], 3.0 / 200);
  ASSERT_EQ(data->rate_by_size.size(), 1u);
  EXPECT_EQ(data->rate_by_size[0].label, "1KiB");
  EXPECT_DOUBLE_EQ(data->rate_by_size[0].points[0].second, 1.0 / 8);

  std::string html = RenderStatusPage(*data);
  EXPECT_THAT(html, ::testing::HasSubstr("stream (platform)"));
}

// A minimal verdict source: fixed current verdicts.
class FixedVerdicts : public controller::VerdictSource {
 public:
  explicit FixedVerdicts(std::vector<v1::Verdict> v) : v_(std::move(v)) {}
  absl::StatusOr<std::vector<v1::Verdict>> Current(const v1::StreamKey&,
                                                   bool) override {
    return v_;
  }
  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey&,
                                          Callback) override {
    return nullptr;
  }
  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest&) override {
    return absl::UnimplementedError("not here");
  }

 private:
  std::vector<v1::Verdict> v_;
};

TEST(StatusDataTest, MatrixHasRatesPhantomRateStateAndReportLinks) {
  const absl::Time now = absl::FromUnixSeconds(1706745600 + 600);
  std::unique_ptr<controller::Store> store = controller::CreateMemoryStore();
  controller::WriteBatch batch;
  const absl::Time t = now - absl::Minutes(2);
  batch.minutes.push_back(
      Minute(v1::RESPONSE_STREAM, 1024, false, t,
             {v1::OK, v1::OK, v1::OK, v1::TRUNCATED, v1::AGENT_ERROR}));
  batch.minutes.push_back(
      Minute(v1::BUFFERED, 1024, false, t, {v1::OK, v1::OK, v1::OK, v1::OK}));
  batch.platform_samples.push_back(
      Sample(v1::RESPONSE_STREAM, "Invocations", 200, t));
  // 3 platform errors, 1 of them seen by a client: 2 phantom.
  batch.platform_samples.push_back(Sample(v1::RESPONSE_STREAM, "Errors", 3, t));
  ASSERT_TRUE(store->Commit(batch, nullptr).ok());
  v1::Verdict phantom;
  phantom.set_kind(v1::PHANTOM_ERRORS);
  phantom.mutable_key()->set_region("us-east-1");
  phantom.mutable_key()->set_target("canary");
  phantom.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  phantom.set_state(v1::REGRESSION);
  v1::Verdict healthy;
  healthy.set_kind(v1::STREAM_HEALTH);
  *healthy.mutable_key() = phantom.key();
  healthy.mutable_key()->set_size_class("1KiB");
  healthy.set_state(v1::HEALTHY);
  FixedVerdicts verdicts({phantom, healthy});

  absl::StatusOr<StatusPageData> data = CollectStatusPageData(
      store.get(), &verdicts, nullptr, now, absl::Minutes(30));
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->matrix.size(), 2u);
  const MatrixCell& buffered = data->matrix[0];
  const MatrixCell& stream = data->matrix[1];
  EXPECT_EQ(buffered.mode, v1::BUFFERED);
  EXPECT_EQ(buffered.trials, 4u);
  EXPECT_EQ(buffered.failures, 0u);
  EXPECT_EQ(buffered.state, v1::VERDICT_STATE_UNSPECIFIED);
  EXPECT_LT(buffered.phantom_rate, 0);  // No platform metrics.
  EXPECT_EQ(stream.trials, 4u);
  EXPECT_EQ(stream.failures, 1u);
  EXPECT_DOUBLE_EQ(stream.phantom_rate, 2.0 / 200);
  EXPECT_EQ(stream.state, v1::REGRESSION);  // Worst of HEALTHY and phantom.
  ASSERT_EQ(data->incident_targets.size(), 1u);
  EXPECT_EQ(data->incident_targets[0], "canary");

  const std::string html = RenderStatusPage(*data);
  EXPECT_THAT(html, ::testing::HasSubstr("class=\"matrix\""));
  EXPECT_THAT(html, ::testing::HasSubstr(
                        "href=\"/report?target=canary#cell-us-east-1-stream-"
                        "1024\">err 25 %<br>phantom 1 %</a>"));
  EXPECT_THAT(html,
              ::testing::HasSubstr(
                  "class=\"report-link\" href=\"/report?target=canary\""));
  // The matrix comes before the verdict table.
  EXPECT_LT(html.find("class=\"matrix\""), html.find("id=\"verdicts\""));
}

}  // namespace
}  // namespace fleetcanary
