#include "controller/retention/retention_job.h"

#include <memory>

#include "common/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace controller {
namespace {

StreamKey Key() { return {"r1", "t", v1::BUFFERED, 1024, false}; }

StreamStats Stats(int ok) {
  StreamStats s;
  for (int i = 0; i < ok; ++i) {
    v1::Outcome o;
    o.set_outcome_class(v1::OK);
    s.Add(o);
  }
  return s;
}

// The job runs on the injected clock's interval: nothing before it, one
// run per interval after, each counted; the rows it rolls up and deletes
// are counted too.
TEST(RetentionJobTest, RunsEveryIntervalOfTheClockAndCounts) {
  const absl::Time t0 = absl::FromUnixSeconds(1706745600);  // An hour start.
  SimulatedClock clock(t0);
  std::unique_ptr<Store> store = CreateMemoryStore();
  WriteBatch b;
  // Minutes of the two hours before t0, and a raw failure an hour old.
  for (int64_t m = MinuteOf(t0) - 120; m < MinuteOf(t0); ++m) {
    b.minutes.push_back({Key(), m, Stats(2)});
  }
  v1::Outcome failure;
  failure.set_outcome_class(v1::HTTP_5XX);
  failure.mutable_start_time()->set_seconds(absl::ToUnixSeconds(t0) - 3600);
  b.failures.push_back(failure);
  ASSERT_TRUE(store->Commit(b, nullptr).ok());

  ControllerMetrics metrics;
  RetentionJobOptions o;
  o.interval = absl::Minutes(30);
  o.retention.raw_retention = absl::Minutes(90);
  // At t0 + 30 min, now - 60 min = t0 - 30 min lies in the hour before t0:
  // only the hour before that one is whole and rolled up.
  o.retention.aggregate_retention = absl::Minutes(60);
  o.retention.max_rows_per_transaction = 16;
  auto job = RetentionJob::Start(o, store.get(), &metrics, &clock);
  ASSERT_TRUE(job.ok()) << job.status();

  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Minutes(29)));
  EXPECT_EQ(metrics.counter("retention_runs_total"), 0);
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Minutes(1)));
  EXPECT_EQ(metrics.counter("retention_runs_total"), 1);
  // Now t0 + 30 min; now - 60 min = t0 - 30 min, in hour -1: hour -2 rolled.
  EXPECT_EQ(metrics.counter("retention_minutes_rolled_up_total"), 60);
  EXPECT_EQ(metrics.counter("retention_rows_deleted_total"), 60);
  auto hours = store->QueryStreamHours(INT64_MIN, INT64_MAX);
  ASSERT_TRUE(hours.ok());
  ASSERT_EQ(hours->size(), 1u);
  EXPECT_EQ((*hours)[0].hour, HourOfMinute(MinuteOf(t0)) - 2);
  EXPECT_EQ((*hours)[0].stats.probes(), 120u);

  // Next interval (t0 + 1 h): hour -1 rolled up, the failure (1 h before t0,
  // older than 90 min) deleted.
  ASSERT_TRUE(testing::StepAndSettle(&clock, 1, absl::Minutes(30)));
  EXPECT_EQ(metrics.counter("retention_runs_total"), 2);
  EXPECT_EQ(metrics.counter("retention_minutes_rolled_up_total"), 120);
  EXPECT_EQ(metrics.counter("retention_rows_deleted_total"), 121);
  EXPECT_EQ(metrics.counter("retention_runs_failed_total"), 0);
  EXPECT_TRUE(store->QueryStreamMinutes(INT64_MIN, INT64_MAX)->empty());
  EXPECT_TRUE(store->QueryFailures(absl::InfinitePast(), 10)->empty());
  (*job)->Stop();
}

// A run refused by the store (a stale leader's, fenced) is counted as
// failed and changes nothing.
TEST(RetentionJobTest, FailedRunIsCounted) {
  SimulatedClock clock(absl::FromUnixSeconds(1706745600));
  std::unique_ptr<Store> store = CreateMemoryStore();
  auto lease = store->AcquireLease("old", "a:1", clock.Now(), absl::Seconds(1));
  ASSERT_TRUE(lease.ok());
  store->SetFencingEpoch(lease->epoch);
  ASSERT_TRUE(store->ReleaseLease("old").ok());
  ASSERT_TRUE(
      store->AcquireLease("new", "b:1", clock.Now(), absl::Seconds(1)).ok());
  ControllerMetrics metrics;
  RetentionJobOptions o;
  auto job = RetentionJob::Start(o, store.get(), &metrics, &clock);
  ASSERT_TRUE(job.ok());
  auto r = (*job)->RunOnce();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(metrics.counter("retention_runs_failed_total"), 1);
  EXPECT_EQ(metrics.counter("retention_runs_total"), 0);
}

TEST(RetentionJobTest, BadOptionsNameTheField) {
  SimulatedClock clock(absl::FromUnixSeconds(0));
  std::unique_ptr<Store> store = CreateMemoryStore();
  ControllerMetrics metrics;
  RetentionJobOptions o;
  o.retention.hourly_retention = absl::ZeroDuration();
  auto job = RetentionJob::Start(o, store.get(), &metrics, &clock);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(job.status().message().find("hourly_retention"), std::string::npos);
  o = RetentionJobOptions();
  o.retention.max_rows_per_transaction = 0;
  EXPECT_EQ(
      RetentionJob::Start(o, store.get(), &metrics, &clock).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
