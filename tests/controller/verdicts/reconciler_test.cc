#include "controller/verdicts/reconciler.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);  // Minute-aligned.

v1::Outcome MakeOutcome(v1::InvokeMode mode, absl::Duration at,
                        v1::OutcomeClass cls = v1::OK, uint64_t bytes = 1024,
                        const std::string& adhoc = "") {
  v1::Outcome o;
  o.set_region("us-east-1");
  o.set_target("canary");
  o.set_mode(mode);
  o.set_requested_bytes(bytes);
  o.set_adhoc_id(adhoc);
  const int64_t ns = absl::ToUnixNanos(kT0 + at);
  o.mutable_start_time()->set_seconds(ns / 1000000000);
  o.mutable_start_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  o.set_outcome_class(cls);
  return o;
}

v1::PlatformMetricSample MakeSample(v1::InvokeMode mode, int minute,
                                    const std::string& metric, double value,
                                    const std::string& stat = "Sum") {
  v1::PlatformMetricSample s;
  s.set_region("us-east-1");
  s.set_target("canary");
  s.set_mode(mode);
  s.set_metric(metric);
  s.set_stat(stat);
  s.mutable_period_start()->set_seconds(
      absl::ToUnixSeconds(kT0 + absl::Minutes(minute)));
  s.mutable_period()->set_seconds(60);
  s.set_value(value);
  return s;
}

std::unique_ptr<Reconciler> Make(absl::Duration settle = absl::Minutes(2),
                                 absl::Duration max_wait = absl::Minutes(5)) {
  ReconcilerOptions o;
  o.period = absl::Minutes(1);
  o.settle = settle;
  o.max_wait = max_wait;
  auto r = Reconciler::Create(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

TEST(ReconcilerTest, RejectsBadOptions) {
  ReconcilerOptions o;
  o.period = absl::ZeroDuration();
  EXPECT_EQ(Reconciler::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.period = absl::Seconds(1);
  o.settle = absl::Seconds(10);
  o.max_wait = absl::Seconds(5);
  EXPECT_EQ(Reconciler::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReconcilerTest, MatchesPerPeriodAndCountsPhantomErrors) {
  auto r = Make();
  // Minute 0: 3 stream probes, one a client-visible 502. Minute 1: 2 probes.
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(1)));
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(30), v1::HTTP_5XX));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM,
                            absl::Seconds(60) - absl::Nanoseconds(1)));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(60)));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(119)));
  // Platform: minute 0 has 3 errors (1 seen by a client -> 2 phantom),
  // minute 1 has none.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 3));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 3));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Errors", 0));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Invocations", 2));

  // Not yet settled: minute 0 ends at +1m, settle 2m.
  EXPECT_TRUE(r->Advance(kT0 + absl::Minutes(3) - absl::Seconds(1)).empty());
  std::vector<ReconciledPeriod> got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kT0);
  EXPECT_EQ(got[0].mode, v1::RESPONSE_STREAM);
  EXPECT_EQ(got[0].client_probes, 3u);
  EXPECT_EQ(got[0].client_failures, 1u);
  EXPECT_EQ(got[0].platform_errors, 3);
  EXPECT_EQ(got[0].phantom_errors, 2u);
  EXPECT_EQ(got[0].scheduled_probes_by_size.at(1024), 3u);

  got = r->Advance(kT0 + absl::Minutes(4));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kT0 + absl::Minutes(1));
  EXPECT_EQ(got[0].client_probes, 2u);
  EXPECT_EQ(got[0].phantom_errors, 0u);
  EXPECT_EQ(r->stats().periods_reconciled, 2u);
  EXPECT_EQ(r->stats().open_periods, 0u);
}

// After a restart the previous process consumed part of the straddling
// period's client outcomes: a truncation it saw (platform error, client
// failure) must not come back as a phantom error. Periods that began before
// not_before are left alone and counted; later ones reconcile as usual.
TEST(ReconcilerTest, PeriodsBeforeNotBeforeAreNeverReconciled) {
  ReconcilerOptions o;
  o.period = absl::Minutes(1);
  o.settle = absl::Minutes(2);
  o.max_wait = absl::Minutes(5);
  o.not_before = kT0 + absl::Seconds(90);  // Restarted inside minute 1.
  auto made = Reconciler::Create(o);
  ASSERT_TRUE(made.ok()) << made.status();
  Reconciler& r = **made;
  // Minute 1: the truncation's outcome went to the previous process; only
  // a later OK outcome and the platform's readings reach this one.
  r.AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(100)));
  r.AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Errors", 1));
  r.AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Invocations", 2));
  // Minute 2: entirely after the restart.
  r.AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(130), v1::TRUNCATED));
  r.AddSample(MakeSample(v1::RESPONSE_STREAM, 2, "Errors", 1));
  r.AddSample(MakeSample(v1::RESPONSE_STREAM, 2, "Invocations", 1));

  std::vector<ReconciledPeriod> got = r.Advance(kT0 + absl::Minutes(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kT0 + absl::Minutes(2));
  EXPECT_EQ(got[0].client_failures, 1u);
  EXPECT_EQ(got[0].phantom_errors, 0u);
  EXPECT_EQ(r.stats().before_start, 3u);
  EXPECT_EQ(r.stats().periods_missing, 0u);
}

TEST(ReconcilerTest, PhantomErrorsNeverExceedInvocations) {
  auto r = Make();
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 9));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 4));
  auto got = r->Advance(kT0 + absl::Minutes(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].client_probes, 0u);
  EXPECT_EQ(got[0].phantom_errors, 4u);
}

TEST(ReconcilerTest, ModesAreSeparateKeys) {
  auto r = Make();
  r->AddOutcome(MakeOutcome(v1::BUFFERED, absl::Seconds(5), v1::HTTP_5XX));
  r->AddSample(MakeSample(v1::BUFFERED, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::BUFFERED, 0, "Invocations", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 1));
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 2u);
  for (const ReconciledPeriod& p : got) {
    // The buffered 502 explains the buffered error, not the streaming one.
    EXPECT_EQ(p.phantom_errors, p.mode == v1::BUFFERED ? 0u : 1u);
  }
}

TEST(ReconcilerTest, MissingPeriodIsGivenUpAndLaterOnesWaitBehindIt) {
  auto r = Make(absl::Minutes(2), absl::Minutes(5));
  // Minute 0 only ever gets Errors; minute 1 is complete.
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(10)));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Invocations", 5));
  // Minute 1 is settled at +4m but waits behind minute 0.
  EXPECT_TRUE(r->Advance(kT0 + absl::Minutes(4)).empty());
  EXPECT_EQ(r->stats().open_periods, 2u);
  // Minute 0 is given up at +1m + 5m; minute 1 follows at once.
  auto got = r->Advance(kT0 + absl::Minutes(6));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kT0 + absl::Minutes(1));
  EXPECT_EQ(got[0].phantom_errors, 1u);
  EXPECT_EQ(r->stats().periods_missing, 1u);
  EXPECT_EQ(r->stats().periods_reconciled, 1u);
  // Data for the given-up minute is late now.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 1));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(20)));
  EXPECT_EQ(r->stats().late_samples, 1u);
  EXPECT_EQ(r->stats().late_outcomes, 1u);
  EXPECT_TRUE(r->Advance(kT0 + absl::Minutes(20)).empty());
}

TEST(ReconcilerTest, PeriodWithoutClientProbesIsReconciledFromZeroFill) {
  auto r = Make();
  // The agents' reader zero-fills final periods: Errors 0, Invocations 0.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 0));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 0));
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].phantom_errors, 0u);
  EXPECT_EQ(got[0].platform_invocations, 0);
}

TEST(ReconcilerTest, LateDatapointBeforeSettleRevisesAfterIsIgnored) {
  auto r = Make();
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 10));
  // CloudWatch adds late datapoints; the re-read value replaces the first.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 3));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 12));
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].platform_errors, 3);
  EXPECT_EQ(got[0].platform_invocations, 12);
  EXPECT_EQ(got[0].phantom_errors, 3u);
  // After the period was decided a further revision is late, not used.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 4));
  EXPECT_EQ(r->stats().late_samples, 1u);
  EXPECT_TRUE(r->Advance(kT0 + absl::Minutes(30)).empty());
}

TEST(ReconcilerTest, DuplicateReadsFromSeveralAgentsAreNotAdded) {
  auto r = Make();
  // Two agents of the region read the same alias; one read is older.
  for (int agent = 0; agent < 2; ++agent) {
    r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 2));
    r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 50));
  }
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));  // Stale.
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].platform_errors, 2);
  EXPECT_EQ(got[0].platform_invocations, 50);
  EXPECT_EQ(got[0].phantom_errors, 2u);
}

TEST(ReconcilerTest, AdhocFailuresExplainPlatformErrorsButAreKeptApart) {
  auto r = Make();
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(1), v1::OK, 2));
  // An ad-hoc probe got a 502: the platform's error is not a phantom one.
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(2), v1::HTTP_5XX,
                            1 << 20, "adhoc-1"));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 2));
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].phantom_errors, 0u);
  EXPECT_EQ(got[0].client_probes, 2u);
  EXPECT_EQ(got[0].adhoc_probes, 1u);
  // Size attribution sees only the scheduled probe.
  ASSERT_EQ(got[0].scheduled_probes_by_size.size(), 1u);
  EXPECT_EQ(got[0].scheduled_probes_by_size.begin()->first, 2u);
}

TEST(ReconcilerTest, Url5xxResponsesAreNotPhantomEvenWithoutAnOutcome) {
  auto r = Make();
  // Minute 0: 4 stream probes recorded, one a 502. The platform counted 6
  // requests on the URL (2 no outcome of ours records), 5 errors, and 3 of
  // the URL's responses were 5xx: 3 errors were visible as 5xx, only 2 are
  // phantom (the client-only rule would say 4).
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(1)));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(2)));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(3)));
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(4), v1::HTTP_5XX));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 5));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 6));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "UrlRequestCount", 6));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Url4xxCount", 0));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Url5xxCount", 3));
  // A re-read with a lower (stale) value never lowers what is known.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Url5xxCount", 2));
  // Minute 1: the same without the URL metrics: the client-only rule.
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(61), v1::HTTP_5XX));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Errors", 5));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 1, "Invocations", 6));
  // Minute 2: fewer 5xx responses than the clients saw (a 5xx counted in
  // another period): client failures still bound what is visible.
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(121), v1::HTTP_5XX));
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(122), v1::HTTP_5XX));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 2, "Errors", 3));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 2, "Invocations", 3));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 2, "Url5xxCount", 1));

  auto got = r->Advance(kT0 + absl::Minutes(5));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].client_failures, 1u);
  EXPECT_EQ(got[0].platform_url_5xx, 3);
  EXPECT_EQ(got[0].platform_url_requests, 6);
  EXPECT_EQ(got[0].platform_url_4xx, 0);
  EXPECT_EQ(got[0].phantom_errors, 2u);
  EXPECT_EQ(got[0].unattributed_requests, 2u);
  EXPECT_EQ(got[1].platform_url_5xx, -1);
  EXPECT_EQ(got[1].phantom_errors, 4u);
  EXPECT_EQ(got[1].unattributed_requests, 0u);
  EXPECT_EQ(got[2].phantom_errors, 1u);
  EXPECT_EQ(r->stats().ignored_samples, 0u);
}

TEST(ReconcilerTest, AgentErrorsAreNotClientProbes) {
  auto r = Make();
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(1)));
  r->AddOutcome(
      MakeOutcome(v1::RESPONSE_STREAM, absl::Seconds(2), v1::AGENT_ERROR));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 1));
  auto got = r->Advance(kT0 + absl::Minutes(3));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].client_probes, 1u);
  EXPECT_EQ(got[0].client_failures, 0u);
  EXPECT_EQ(got[0].phantom_errors, 1u);
}

TEST(ReconcilerTest, IgnoresOtherMetricsStatsAndPeriods) {
  auto r = Make();
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Duration", 7));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "UrlRequestLatency", 7));
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 7, "Average"));
  v1::PlatformMetricSample wrong_period =
      MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 7);
  wrong_period.mutable_period()->set_seconds(300);
  r->AddSample(wrong_period);
  v1::PlatformMetricSample misaligned =
      MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 7);
  misaligned.mutable_period_start()->set_seconds(
      misaligned.period_start().seconds() + 1);
  r->AddSample(misaligned);
  v1::PlatformMetricSample negative =
      MakeSample(v1::RESPONSE_STREAM, 0, "Errors", -1);
  r->AddSample(negative);
  v1::PlatformMetricSample no_mode =
      MakeSample(v1::INVOKE_MODE_UNSPECIFIED, 0, "Errors", 1);
  r->AddSample(no_mode);
  EXPECT_EQ(r->stats().ignored_samples, 7u);
  EXPECT_EQ(r->stats().open_periods, 0u);
  EXPECT_TRUE(r->Advance(kT0 + absl::Hours(1)).empty());
}

TEST(ReconcilerTest, OpenPeriodsAreBounded) {
  ReconcilerOptions o;
  o.period = absl::Minutes(1);
  o.settle = absl::Minutes(1);
  o.max_wait = absl::Minutes(2);
  o.max_open_periods = 3;
  auto r = *Reconciler::Create(o);
  for (int m = 0; m < 10; ++m) {
    r->AddSample(MakeSample(v1::RESPONSE_STREAM, m, "Errors", 0));
  }
  EXPECT_EQ(r->stats().open_periods, 3u);
  EXPECT_EQ(r->stats().periods_missing, 7u);
  // The given-up minutes are late from now on.
  r->AddSample(MakeSample(v1::RESPONSE_STREAM, 0, "Invocations", 1));
  EXPECT_EQ(r->stats().late_samples, 1u);
}

TEST(ReconcilerTest, PeriodStartUsesTheConfiguredPeriod) {
  ReconcilerOptions o;
  o.period = absl::Seconds(1);
  o.settle = absl::Seconds(2);
  o.max_wait = absl::Seconds(5);
  auto r = *Reconciler::Create(o);
  EXPECT_EQ(r->PeriodStart(kT0 + absl::Milliseconds(1999)),
            kT0 + absl::Seconds(1));
  // A 1 s period: samples stamped per second are matched per second.
  v1::PlatformMetricSample s = MakeSample(v1::RESPONSE_STREAM, 0, "Errors", 1);
  s.mutable_period()->set_seconds(1);
  s.mutable_period_start()->set_seconds(s.period_start().seconds() + 1);
  r->AddSample(s);
  s.set_metric("Invocations");
  s.set_value(2);
  r->AddSample(s);
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Milliseconds(1500)));
  r->AddOutcome(MakeOutcome(v1::RESPONSE_STREAM, absl::Milliseconds(2500)));
  auto got = r->Advance(kT0 + absl::Seconds(4));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kT0 + absl::Seconds(1));
  EXPECT_EQ(got[0].client_probes, 1u);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
