#include "controller/verdicts/verdict_service.h"

#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);
constexpr char kRegion[] = "us-east-1";
constexpr char kTarget[] = "canary";

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

absl::Time FromTs(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

v1::Outcome MakeOutcome(v1::InvokeMode mode, uint64_t bytes, absl::Time t,
                        v1::OutcomeClass cls = v1::OK,
                        const std::string& agent = "a1",
                        const std::string& adhoc = "") {
  v1::Outcome o;
  o.set_agent_id(agent);
  o.set_region(kRegion);
  o.set_target(kTarget);
  o.set_mode(mode);
  o.set_requested_bytes(bytes);
  o.set_adhoc_id(adhoc);
  *o.mutable_start_time() = Ts(t);
  o.set_outcome_class(cls);
  return o;
}

v1::PlatformMetricSample MakeSample(v1::InvokeMode mode, absl::Time period,
                                    const std::string& metric, double value) {
  v1::PlatformMetricSample s;
  s.set_region(kRegion);
  s.set_target(kTarget);
  s.set_mode(mode);
  s.set_metric(metric);
  s.set_stat("Sum");
  *s.mutable_period_start() = Ts(period);
  s.mutable_period()->set_seconds(1);
  s.set_value(value);
  return s;
}

class VerdictServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = CreateMemoryStore();
    options_.metrics_period = absl::Seconds(1);
    options_.reconcile_settle = absl::Seconds(2);
    options_.reconcile_max_wait = absl::Seconds(10);
    options_.reorder_window = absl::Seconds(1);
    options_.detection.mutable_comparison_bucket()->set_seconds(5);
    options_.detection.mutable_trend_window()->set_seconds(10);
  }

  void Start() {
    auto s = VerdictService::Create(options_, store_.get(), &metrics_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    service_ = *std::move(s);
  }

  // One second of traffic at `t` (period start): `n` probes per mode of
  // `bytes`, and the platform's sums with `phantom` unexplained streaming
  // errors.
  void Second(absl::Time t, uint64_t bytes, int n, int phantom,
              int buffered_phantom = 0) {
    CommittedBatch b;
    for (int i = 0; i < n; ++i) {
      const absl::Time at = t + absl::Milliseconds(1000 * i / n);
      b.outcomes.push_back(MakeOutcome(v1::BUFFERED, bytes, at));
      b.outcomes.push_back(
          MakeOutcome(v1::RESPONSE_STREAM, bytes, at + absl::Milliseconds(1)));
    }
    b.platform_samples.push_back(
        MakeSample(v1::RESPONSE_STREAM, t, "Errors", phantom));
    b.platform_samples.push_back(
        MakeSample(v1::RESPONSE_STREAM, t, "Invocations", n));
    b.platform_samples.push_back(
        MakeSample(v1::BUFFERED, t, "Errors", buffered_phantom));
    b.platform_samples.push_back(MakeSample(v1::BUFFERED, t, "Invocations", n));
    service_->OnCommitted(b);
  }

  // Takes in everything committed so far at the clock's current time, then
  // moves the clock to `until` and processes again. Without the first Sync
  // the worker could take a batch in after the clock moved, and a batch
  // committed "at the same time" as another would arrive seconds late.
  void Run(absl::Time until) {
    ASSERT_TRUE(service_->Sync(absl::Seconds(30)));
    clock_.AdvanceTime(until - clock_.Now());
    ASSERT_TRUE(service_->Sync(absl::Seconds(30)));
  }

  v1::Verdict Find(v1::VerdictKind kind, v1::InvokeMode mode,
                   const std::string& size) {
    v1::StreamKey filter;
    auto all = service_->Current(filter, true);
    EXPECT_TRUE(all.ok());
    for (const v1::Verdict& v : *all) {
      if (v.kind() == kind && v.key().mode() == mode &&
          v.key().size_class() == size) {
        return v;
      }
    }
    return v1::Verdict();
  }

  // Value of the series of `family` whose labels include `want`, or -1.
  double Series(const std::string& family,
                const std::map<std::string, std::string>& want) {
    for (const prometheus::MetricFamily& f :
         metrics_.collectable()->Collect()) {
      if (f.name != family) continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        size_t matched = 0;
        for (const prometheus::ClientMetric::Label& l : m.label) {
          auto it = want.find(l.name);
          if (it != want.end() && it->second == l.value) ++matched;
        }
        if (matched == want.size()) return m.gauge.value + m.counter.value;
      }
    }
    return -1;
  }

  SimulatedClock clock_{kT0};
  std::unique_ptr<Store> store_;
  ControllerMetrics metrics_;
  VerdictServiceOptions options_;
  std::unique_ptr<VerdictService> service_;
};

TEST_F(VerdictServiceTest, RejectsBadOptions) {
  options_.metrics_period = absl::ZeroDuration();
  EXPECT_EQ(VerdictService::Create(options_, store_.get(), &metrics_, &clock_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  options_.metrics_period = absl::Seconds(1);
  options_.detection.set_p1_ratio(0.5);
  EXPECT_EQ(VerdictService::Create(options_, store_.get(), &metrics_, &clock_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerdictService::Create(options_, nullptr, &metrics_, &clock_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VerdictServiceTest, PhantomErrorsRaiseRegressionOnlyForStreaming) {
  Start();
  std::vector<v1::Verdict> seen;
  absl::Mutex mu;
  v1::StreamKey filter;
  filter.set_mode(v1::RESPONSE_STREAM);
  auto sub = service_->Subscribe(filter, [&](const v1::Verdict& v) {
    absl::MutexLock lock(&mu);
    seen.push_back(v);
  });
  // 20 healthy seconds, then streaming phantom errors (2 per 50).
  for (int s = 0; s < 40; ++s) {
    Second(kT0 + absl::Seconds(s), 1024, 50, s >= 20 ? 2 : 0);
  }
  Run(kT0 + absl::Seconds(45));

  const v1::Verdict phantom = Find(v1::PHANTOM_ERRORS, v1::RESPONSE_STREAM, "");
  EXPECT_EQ(phantom.state(), v1::REGRESSION) << phantom.DebugString();
  // Dated in the outcomes' time base, after the onset.
  EXPECT_GE(FromTs(phantom.since()), kT0 + absl::Seconds(20));
  EXPECT_LT(FromTs(phantom.since()), kT0 + absl::Seconds(40));
  EXPECT_GT(phantom.evidence().platform_errors(), 0);
  EXPECT_EQ(Find(v1::PHANTOM_ERRORS, v1::BUFFERED, "").state(), v1::HEALTHY);
  // Clients saw nothing wrong.
  EXPECT_EQ(Find(v1::STREAM_HEALTH, v1::RESPONSE_STREAM, "1KiB").state(),
            v1::HEALTHY);

  // Transition stored, exported and streamed.
  auto history = store_->ListVerdicts(absl::InfinitePast(), 100);
  ASSERT_TRUE(history.ok());
  bool stored = false;
  for (const v1::Verdict& v : *history) {
    stored |= v.kind() == v1::PHANTOM_ERRORS && v.state() == v1::REGRESSION;
  }
  EXPECT_TRUE(stored);
  {
    absl::MutexLock lock(&mu);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back().kind(), v1::PHANTOM_ERRORS);
    EXPECT_EQ(seen.back().state(), v1::REGRESSION);
    for (const v1::Verdict& v : seen) {
      EXPECT_EQ(v.key().mode(), v1::RESPONSE_STREAM);  // Filter applied.
    }
  }
  EXPECT_EQ(Series("fleetcanary_verdict", {{"kind", "PHANTOM_ERRORS"},
                                           {"region", kRegion},
                                           {"mode", "stream"},
                                           {"state", "REGRESSION"}}),
            1);
  EXPECT_EQ(Series("fleetcanary_verdict", {{"kind", "PHANTOM_ERRORS"},
                                           {"mode", "stream"},
                                           {"state", "HEALTHY"}}),
            0);
  EXPECT_EQ(Series("fleetcanary_phantom_errors_total",
                   {{"region", kRegion}, {"mode", "stream"}}),
            service_->stats().phantom_errors);
  EXPECT_EQ(Series("fleetcanary_phantom_errors_total", {{"mode", "buffered"}}),
            -1);
  EXPECT_GE(service_->stats().phantom_errors, 30u);
  // Persisted, so it survives a restart.
  auto counters = store_->LoadCounters();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ(
      (*counters)[PhantomCounterName(kRegion, kTarget, v1::RESPONSE_STREAM)],
      service_->stats().phantom_errors);
  EXPECT_GT(Series("fleetcanary_error_rate_upper_bound",
                   {{"mode", "stream"}, {"size_class", "1KiB"}}),
            0);
}

TEST_F(VerdictServiceTest, AdhocOutcomesNeverFeedStreamVerdicts) {
  Start();
  CommittedBatch b;
  for (int i = 0; i < 200; ++i) {
    b.outcomes.push_back(MakeOutcome(v1::RESPONSE_STREAM, 1024,
                                     kT0 + absl::Milliseconds(10 * i),
                                     v1::HTTP_5XX, "a1", "adhoc-7"));
  }
  service_->OnCommitted(b);
  Run(kT0 + absl::Seconds(30));
  auto all = service_->Current(v1::StreamKey(), true);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
  EXPECT_EQ(service_->stats().adhoc_outcomes, 200u);
  EXPECT_EQ(service_->stats().outcomes_observed, 0u);
}

TEST_F(VerdictServiceTest, OutcomesOfSeveralAgentsAreFedInTimeOrder) {
  Start();
  // Agent a2's batch covers an earlier time but arrives second.
  CommittedBatch late, early;
  for (int i = 0; i < 10; ++i) {
    late.outcomes.push_back(MakeOutcome(
        v1::BUFFERED, 2, kT0 + absl::Milliseconds(500 + 10 * i), v1::OK, "a1"));
    early.outcomes.push_back(MakeOutcome(
        v1::BUFFERED, 2, kT0 + absl::Milliseconds(100 + 10 * i), v1::OK, "a2"));
  }
  service_->OnCommitted(late);
  service_->OnCommitted(early);
  Run(kT0 + absl::Seconds(5));
  EXPECT_EQ(service_->stats().outcomes_observed, 20u);
  EXPECT_EQ(service_->stats().reordered_late, 0u);
  EXPECT_EQ(service_->stats().engine_errors, 0u);
  // Once released, an older outcome is fed at the engine's time.
  CommittedBatch stale;
  stale.outcomes.push_back(MakeOutcome(v1::BUFFERED, 2, kT0, v1::OK, "a3"));
  service_->OnCommitted(stale);
  Run(kT0 + absl::Seconds(6));
  EXPECT_EQ(service_->stats().reordered_late, 1u);
  EXPECT_EQ(service_->stats().engine_errors, 0u);
}

TEST_F(VerdictServiceTest, HardDownNeedsAgentIds) {
  Start();
  CommittedBatch b;
  for (int i = 0; i < 4; ++i) {
    for (const char* agent : {"a1", "a2"}) {
      b.outcomes.push_back(MakeOutcome(v1::BUFFERED, 2,
                                       kT0 + absl::Milliseconds(100 * i),
                                       v1::CONNECT_ERROR, agent));
    }
  }
  service_->OnCommitted(b);
  Run(kT0 + absl::Seconds(5));
  EXPECT_EQ(Find(v1::HARD_DOWN, v1::BUFFERED, "").state(), v1::REGRESSION);
}

// Sizes rotate per period (schedules with size_rotation): the platform view
// attributes phantom errors to sizes and compares the modes.
TEST_F(VerdictServiceTest, PlatformViewFindsModeDifferenceAndSizeTrend) {
  Start();
  const uint64_t sizes[] = {2, 1024, 65536};
  const int phantom_per_100[] = {0, 1, 8};
  for (int s = 0; s < 60; ++s) {
    const int i = s % 3;
    Second(kT0 + absl::Seconds(s), sizes[i], 100,
           s >= 10 ? phantom_per_100[i] : 0);
  }
  Run(kT0 + absl::Seconds(65));
  EXPECT_GT(service_->stats().attributed_periods, 100u);

  const v1::Verdict trend = Find(v1::SIZE_TREND, v1::RESPONSE_STREAM, "");
  EXPECT_EQ(trend.state(), v1::REGRESSION) << trend.DebugString();
  EXPECT_NE(trend.evidence().summary().find("platform view"),
            std::string::npos);
  EXPECT_EQ(Find(v1::SIZE_TREND, v1::BUFFERED, "").state(), v1::HEALTHY);
  const v1::Verdict mode =
      Find(v1::MODE_DIFFERENCE, v1::INVOKE_MODE_UNSPECIFIED, "64KiB");
  EXPECT_EQ(mode.state(), v1::REGRESSION) << mode.DebugString();
  EXPECT_GT(mode.evidence().rate_ratio(), 1);
  EXPECT_EQ(
      Find(v1::MODE_DIFFERENCE, v1::INVOKE_MODE_UNSPECIFIED, "2B").state(),
      v1::HEALTHY);
  // Client-side views stay healthy.
  for (const char* size : {"2B", "1KiB", "64KiB"}) {
    EXPECT_EQ(Find(v1::STREAM_HEALTH, v1::RESPONSE_STREAM, size).state(),
              v1::HEALTHY);
  }
}

// After a hotfix the phantom-error verdict recovers, confirms the fix and
// dates the change.
TEST_F(VerdictServiceTest, ConfirmsTheFixAndDatesTheChange) {
  Start();
  const absl::Time fix = kT0 + absl::Seconds(40);
  // p_bad = 2 x the floor 1e-4: ~20,500 clean invocations confirm (mixture
  // test), as many again return to HEALTHY; 200 a second.
  for (int s = 0; s < 400; ++s) {
    const absl::Time t = kT0 + absl::Seconds(s);
    Second(t, 1024, 200, (s >= 10 && t < fix) ? 4 : 0);
  }
  Run(kT0 + absl::Seconds(405));
  // The whole life cycle went through the store: REGRESSION, RECOVERING,
  // FIX_CONFIRMED and, after as many clean probes again, HEALTHY.
  auto history = store_->ListVerdicts(absl::InfinitePast(), 100);
  ASSERT_TRUE(history.ok());
  std::vector<v1::VerdictState> states;
  v1::Verdict confirmed;
  for (const v1::Verdict& h : *history) {
    // Every transition is dated in the outcomes' time base, including those
    // where the other view's verdict took over (merged kinds).
    EXPECT_GE(FromTs(h.since()), kT0) << h.DebugString();
    if (h.kind() != v1::PHANTOM_ERRORS) continue;
    states.push_back(h.state());
    if (h.state() == v1::FIX_CONFIRMED) confirmed = h;
  }
  EXPECT_EQ(states,
            (std::vector<v1::VerdictState>{v1::REGRESSION, v1::RECOVERING,
                                           v1::FIX_CONFIRMED, v1::HEALTHY}));
  ASSERT_EQ(confirmed.state(), v1::FIX_CONFIRMED);
  const v1::TimeInterval& iv = confirmed.evidence().change_interval();
  EXPECT_LE(FromTs(iv.lower()), fix);
  EXPECT_GE(FromTs(iv.upper()) + absl::Seconds(1), fix);
  EXPECT_GT(confirmed.evidence().proven_upper_bound(), 0);
  EXPECT_LT(confirmed.evidence().proven_upper_bound(), 2e-4);
  EXPECT_EQ(Find(v1::PHANTOM_ERRORS, v1::RESPONSE_STREAM, "").state(),
            v1::HEALTHY);
}

TEST_F(VerdictServiceTest, DeclaredFixStartsConfirmationAtOnce) {
  options_.declared_fix_time = kT0 + absl::Seconds(30);
  Start();
  for (int s = 0; s < 160; ++s) {
    const absl::Time t = kT0 + absl::Seconds(s);
    Second(t, 1024, 200, (s >= 10 && s < 30) ? 4 : 0);
  }
  Run(kT0 + absl::Seconds(165));
  const v1::Verdict v = Find(v1::PHANTOM_ERRORS, v1::RESPONSE_STREAM, "");
  ASSERT_EQ(v.state(), v1::FIX_CONFIRMED) << v.DebugString();
  EXPECT_EQ(FromTs(v.evidence().confirmation_start()), kT0 + absl::Seconds(30));
}

// A controller restart mid-incident (service stopped, a new one created on
// the same store): the new service answers the same verdicts at once,
// appends nothing for them, and the episode goes on to a dated fix without
// a second alarm.
TEST_F(VerdictServiceTest, RestartContinuesFromTheSavedDetectorState) {
  const absl::Time fix = kT0 + absl::Seconds(40);
  auto traffic = [&](int from, int to) {
    for (int s = from; s < to; ++s) {
      const absl::Time t = kT0 + absl::Seconds(s);
      Second(t, 1024, 200, (s >= 10 && t < fix) ? 4 : 0);
    }
  };
  Start();
  traffic(0, 30);
  Run(kT0 + absl::Seconds(35));
  ASSERT_EQ(Find(v1::PHANTOM_ERRORS, v1::RESPONSE_STREAM, "").state(),
            v1::REGRESSION);
  auto before = service_->Current(v1::StreamKey(), true);
  ASSERT_TRUE(before.ok());
  service_->Shutdown();
  EXPECT_GE(service_->stats().state_saves, 1u);
  auto stored = store_->ListVerdicts(absl::InfinitePast(), 1000);
  ASSERT_TRUE(stored.ok());
  const size_t appended_before = stored->size();

  Start();
  EXPECT_TRUE(service_->stats().state_restored);
  EXPECT_EQ(metrics_.counter("detector_state_restores_total"), 1);
  auto after = service_->Current(v1::StreamKey(), true);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_EQ((*after)[i].SerializeAsString(), (*before)[i].SerializeAsString())
        << (*after)[i].DebugString() << " vs " << (*before)[i].DebugString();
  }
  EXPECT_EQ(Series("fleetcanary_verdict", {{"kind", "PHANTOM_ERRORS"},
                                           {"mode", "stream"},
                                           {"state", "REGRESSION"}}),
            1);
  traffic(30, 400);
  Run(kT0 + absl::Seconds(405));
  stored = store_->ListVerdicts(absl::InfinitePast(), 1000);
  ASSERT_TRUE(stored.ok());
  std::vector<v1::VerdictState> states;
  v1::Verdict confirmed;
  for (size_t i = 0; i < stored->size(); ++i) {
    const v1::Verdict& h = (*stored)[i];
    if (h.kind() != v1::PHANTOM_ERRORS) continue;
    if (i >= appended_before) states.push_back(h.state());
    if (h.state() == v1::FIX_CONFIRMED) confirmed = h;
  }
  // After the restart: the rest of the episode, no second REGRESSION.
  EXPECT_EQ(states, (std::vector<v1::VerdictState>{
                        v1::RECOVERING, v1::FIX_CONFIRMED, v1::HEALTHY}));
  const v1::TimeInterval& iv = confirmed.evidence().change_interval();
  EXPECT_LE(FromTs(iv.lower()), fix);
  EXPECT_GE(FromTs(iv.upper()) + absl::Seconds(1), fix);
  // Periods that began before the new service started are not reconciled.
  EXPECT_GT(service_->stats().reconciler.before_start, 0u);
}

// Another detection config: the saved state would not mean what it says.
// It is discarded, counted, and verdicts start from HEALTHY.
TEST_F(VerdictServiceTest, StateOfAnotherDetectionConfigIsDiscarded) {
  Start();
  for (int s = 0; s < 30; ++s) {
    Second(kT0 + absl::Seconds(s), 1024, 200, s >= 10 ? 4 : 0);
  }
  Run(kT0 + absl::Seconds(35));
  ASSERT_EQ(Find(v1::PHANTOM_ERRORS, v1::RESPONSE_STREAM, "").state(),
            v1::REGRESSION);
  service_->Shutdown();

  options_.detection.set_p0_floor(0.002);
  Start();
  EXPECT_FALSE(service_->stats().state_restored);
  EXPECT_EQ(metrics_.counter("detector_state_discarded_total"), 1);
  EXPECT_TRUE(service_->Current(v1::StreamKey(), false)->empty());
}

// A garbage blob in the store never stops the controller.
TEST_F(VerdictServiceTest, UnreadableStateIsDiscarded) {
  ASSERT_TRUE(store_->SaveDetectorState("\xff\xff not a state").ok());
  Start();
  EXPECT_FALSE(service_->stats().state_restored);
  EXPECT_EQ(metrics_.counter("detector_state_discarded_total"), 1);
}

TEST_F(VerdictServiceTest, AnalyzeWithoutAnalyzerIsUnimplemented) {
  Start();
  EXPECT_EQ(service_->Analyze(v1::AnalyzeRequest()).status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(VerdictFilterTest, EmptyFieldsMatchEverything) {
  v1::StreamKey key;
  key.set_region("r");
  key.set_target("t");
  key.set_mode(v1::BUFFERED);
  key.set_size_class("2B");
  EXPECT_TRUE(VerdictFilterMatches(v1::StreamKey(), key));
  v1::StreamKey f;
  f.set_region("r");
  f.set_mode(v1::BUFFERED);
  EXPECT_TRUE(VerdictFilterMatches(f, key));
  f.set_size_class("1KiB");
  EXPECT_FALSE(VerdictFilterMatches(f, key));
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
