// The agent's platform-metrics loop on a simulated clock: assignments with a
// CloudWatch identity become reader targets, the reader is polled at each
// period close (reading the shared fake CloudWatch over loopback), and what
// it reads goes to the session.
#include "agent/platform/platform_loop.h"

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/platform/cloudwatch_client.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_cloudwatch_server.h"
#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace agent {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);
const sigv4::Credentials kCreds{"AKIDCANARY", "canary/secret+key", ""};

class FakeSession : public SessionClient {
 public:
  void Notify() override {}
  void SendAdhocResult(v1::AdhocResult) override {}
  void SendPlatformMetrics(v1::PlatformMetricBatch batch) override {
    absl::MutexLock lock(&mu);
    for (const auto& s : batch.samples()) samples.push_back(s);
  }
  bool WaitForFlush(absl::Duration) override { return true; }
  bool Goodbye(const std::string&, absl::Duration) override { return true; }
  SessionClientStats stats() override { return {}; }
  void Shutdown() override {}
  size_t count() {
    absl::MutexLock lock(&mu);
    return samples.size();
  }
  absl::Mutex mu;
  std::vector<v1::PlatformMetricSample> samples;
};

TEST(PlatformLoopTest, PollsAtEveryPeriodCloseAndSendsToTheSession) {
  SimulatedClock clock(kT0 + absl::Milliseconds(300));
  // CloudWatch has Invocations = 5 for the streaming alias in every period
  // the test reaches.
  testing::FakeCloudWatchServer::Options cw;
  cw.credentials = kCreds;
  cw.clock = &clock;
  testing::FakeCloudWatchServer cloudwatch(cw);
  for (int period = 0; period < 30; ++period) {
    cloudwatch.Set("fn", "fn:stream", "Invocations", "Sum",
                   kT0 + absl::Seconds(period), 5);
  }
  platform::CloudWatchClientOptions co;
  co.credentials = kCreds;
  co.clock = &clock;
  co.default_endpoint = cloudwatch.endpoint();
  auto client = platform::CreateCloudWatchClient(co);
  ASSERT_TRUE(client.ok()) << client.status();
  platform::PlatformMetricsReaderOptions ro;
  ro.period = absl::Seconds(1);
  ro.ingestion_delay = absl::ZeroDuration();
  ro.initial_lookback = absl::ZeroDuration();
  ro.metrics = {{"Invocations", "Sum"}};
  ro.zero_fill_metrics = {};
  auto reader =
      platform::PlatformMetricsReader::Create(ro, client->get(), &clock);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto loop = PlatformLoop::Create(reader->get(), &clock);
  ASSERT_TRUE(loop.ok()) << loop.status();
  FakeSession session;
  (*loop)->SetSession(&session);

  v1::AssignmentSet set;
  v1::Assignment* a = set.add_assignments();
  a->set_region("us-east-1");
  a->set_target("canary");
  a->set_mode(v1::RESPONSE_STREAM);
  a->mutable_url()->mutable_cloudwatch()->set_function_name("fn");
  a->mutable_url()->mutable_cloudwatch()->set_alias("stream");
  v1::Assignment* no_identity = set.add_assignments();
  *no_identity = *a;
  no_identity->set_mode(v1::BUFFERED);
  no_identity->mutable_url()->clear_cloudwatch();
  (*loop)->OnAssignments(set);

  // Period closes bring polls. The loop parks on the clock before each
  // step (waiters), so every step crosses the close it waits for.
  for (int step = 1; step <= 8 && (*loop)->polls_total() < 3; ++step) {
    ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Seconds(1)));
  }
  EXPECT_GE((*loop)->polls_total(), 3u);
  (*loop)->Stop();
  EXPECT_EQ((*loop)->poll_errors_total(), 0u);
  EXPECT_GE(session.count(), 2u);
  for (const auto& s : session.samples) {
    EXPECT_EQ(s.mode(), v1::RESPONSE_STREAM);  // Only the identified URL.
  }
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
