#include "analysis/probe_summary.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace analysis {
namespace {

v1::Outcome Outcome(v1::InvokeMode mode, uint64_t size, v1::OutcomeClass c,
                    int ttfb_ms) {
  v1::Outcome o;
  o.set_mode(mode);
  o.set_requested_bytes(size);
  o.set_outcome_class(c);
  o.set_received_bytes(size);
  o.mutable_timings()->mutable_headers_received()->set_nanos(ttfb_ms * 1000000);
  o.mutable_timings()->mutable_total()->set_seconds(1);
  return o;
}

TEST(ProbeSummaryTest, WilsonIntervalAndCountsPerStream) {
  SummaryBuilder b("local");
  for (int i = 0; i < 1000; ++i) {
    b.Add(Outcome(v1::RESPONSE_STREAM, 1024, i < 3 ? v1::TRUNCATED : v1::OK,
                  1 + i % 100));
  }
  // Our own failures are not trials.
  for (int i = 0; i < 5; ++i) {
    b.Add(Outcome(v1::RESPONSE_STREAM, 1024, v1::AGENT_ERROR, 1));
  }
  b.Add(Outcome(v1::BUFFERED, 2, v1::OK, 7));
  const std::vector<v1::ProbeSummary> s = b.Build();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].mode(), v1::BUFFERED);
  const v1::ProbeSummary& stream = s[1];
  EXPECT_EQ(stream.probes(), 1005u);
  EXPECT_EQ(stream.by_class().at("TRUNCATED"), 3u);
  EXPECT_EQ(stream.by_class().at("AGENT_ERROR"), 5u);
  EXPECT_DOUBLE_EQ(stream.error_rate(), 0.003);
  // docs/statistics.md §5 vector: Wilson 3/1000 at 95 %.
  EXPECT_NEAR(stream.error_rate_interval().lower(), 0.0010207839, 1e-9);
  EXPECT_NEAR(stream.error_rate_interval().upper(), 0.0087830141, 1e-9);
  EXPECT_EQ(stream.ttfb_p50().nanos(), 50 * 1000000);
  EXPECT_EQ(stream.ttfb_p99().nanos(), 99 * 1000000);
  EXPECT_DOUBLE_EQ(stream.throughput_bytes_per_second(), 1024.0 * 1005 / 1005);
  EXPECT_EQ(b.failures(), 3u);
  EXPECT_EQ(b.agent_errors(), 5u);
}

// One failure definition with the verdicts: 4XX and throttling are trials,
// not platform failures.
TEST(ProbeSummaryTest, ClientErrorsAreNotPlatformFailures) {
  EXPECT_FALSE(IsPlatformFailure(v1::HTTP_4XX));
  EXPECT_FALSE(IsPlatformFailure(v1::THROTTLED));
  EXPECT_FALSE(IsPlatformFailure(v1::AGENT_ERROR));
  EXPECT_FALSE(IsPlatformFailure(v1::OK));
  EXPECT_TRUE(IsPlatformFailure(v1::TRUNCATED));
  EXPECT_TRUE(IsPlatformFailure(v1::HTTP_5XX));
}

TEST(ProbeSummaryTest, NearestRankPercentile) {
  std::vector<absl::Duration> v = {absl::Milliseconds(3), absl::Milliseconds(1),
                                   absl::Milliseconds(2)};
  EXPECT_EQ(Percentile(&v, 0.5), absl::Milliseconds(2));
  EXPECT_EQ(Percentile(&v, 0.99), absl::Milliseconds(3));
  std::vector<absl::Duration> empty;
  EXPECT_EQ(Percentile(&empty, 0.5), absl::ZeroDuration());
}

}  // namespace
}  // namespace analysis
}  // namespace fleetcanary
