// Every vector of docs/statistics.md, at 1e-6 relative tolerance unless stated.
#include <cmath>
#include <vector>

#include "analysis/changepoint.h"
#include "analysis/cusum.h"
#include "analysis/fix_confirmation.h"
#include "analysis/intervals.h"
#include "analysis/tests.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

// |actual - expected| <= 1e-6 |expected|.
#define EXPECT_REL(actual, expected) \
  EXPECT_NEAR((actual), (expected), 1e-6 * std::fabs(expected))

// §1 --------------------------------------------------------------------
std::vector<bool> Section1Errors() {
  std::vector<bool> err(1501, false);
  for (int t : {150, 900, 1000, 1100, 1150}) err[t] = true;
  return err;
}

TEST(CusumVectorTest, Constants) {
  BernoulliCusum c(0.001, 0.01, 4.6);
  EXPECT_REL(c.a(), 2.302585093);
  EXPECT_REL(c.b(), 0.0090498355);
}

TEST(CusumVectorTest, StatisticAfterEachError) {
  const std::vector<bool> err = Section1Errors();
  BernoulliCusum c(0.001, 0.01, 1e9);  // Never alarms: trace S.
  std::vector<double> after;
  for (int t = 1; t <= 1500; ++t) {
    c.Observe(1, err[t] ? 1 : 0);
    if (err[t]) after.push_back(c.statistic());
  }
  const std::vector<double> want = {2.302585, 2.302585, 3.709236, 5.115888,
                                    6.975031};
  ASSERT_EQ(after.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    // The vector is printed to 7 significant digits.
    EXPECT_NEAR(after[i], want[i], 1e-6) << i;
  }
}

TEST(CusumVectorTest, AlarmAt1100WithThreshold4Point6) {
  const std::vector<bool> err = Section1Errors();
  BernoulliCusum c(0.001, 0.01, 4.6);
  int alarm_at = -1;
  for (int t = 1; t <= 1500; ++t) {
    if (c.Observe(1, err[t] ? 1 : 0) && alarm_at < 0) alarm_at = t;
  }
  EXPECT_EQ(alarm_at, 1100);
  EXPECT_NEAR(c.alarm_statistic(), 5.115888, 1e-6);
  // S was last 0 right before the error at t = 900: onset right after 899.
  EXPECT_EQ(c.alarm_onset_step(), 899u);
}

TEST(CusumVectorTest, NoAlarmWithThreshold7AndAlarmIsGreaterOrEqual) {
  const std::vector<bool> err = Section1Errors();
  BernoulliCusum seven(0.001, 0.01, 7);
  double max_s = 0;
  for (int t = 1; t <= 1500; ++t) {
    EXPECT_FALSE(seven.Observe(1, err[t] ? 1 : 0)) << t;
    max_s = std::max(max_s, seven.statistic());
  }
  EXPECT_NEAR(max_s, 6.975031, 1e-6);
  // h equal to the maximum alarms (>=, not >).
  BernoulliCusum equal(0.001, 0.01, max_s);
  int alarms = 0;
  for (int t = 1; t <= 1500; ++t) alarms += equal.Observe(1, err[t] ? 1 : 0);
  EXPECT_EQ(alarms, 1);
}

TEST(HardDownTest, ThreeConsecutiveOnTwoAgents) {
  HardDownRule rule(3, 2);
  EXPECT_FALSE(rule.Observe("a", true));
  EXPECT_FALSE(rule.Observe("a", true));
  EXPECT_FALSE(rule.Observe("a", true));  // One agent in a run of 3.
  EXPECT_EQ(rule.agents_in_run(), 1u);
  EXPECT_FALSE(rule.Observe("b", true));
  EXPECT_FALSE(rule.Observe("b", true));
  EXPECT_TRUE(rule.Observe("b", true));    // Second agent: down.
  EXPECT_FALSE(rule.Observe("a", false));  // A success ends a's run.
  EXPECT_EQ(rule.agents_in_run(), 1u);
  // Interleaved failures of one agent never count twice.
  HardDownRule single(3, 2);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(single.Observe("a", true));
}

// §2 --------------------------------------------------------------------
TEST(ErrorSplitVectorTest, ThirtyVersusEight) {
  const ErrorSplit r = ErrorSplitTest(30, 10000, 8, 10000, 0.95, 3.0);
  EXPECT_REL(r.pi0, 0.5);
  EXPECT_REL(r.p_value, 4.7198674e-4);
  EXPECT_REL(r.rate_ratio, 3.75);
  // The interval is printed to 5 significant digits.
  EXPECT_NEAR(r.rate_ratio_interval.lower, 1.6796, 5e-5);
  EXPECT_NEAR(r.rate_ratio_interval.upper, 9.4667, 5e-5);
  EXPECT_REL(r.pi1, 0.75);
  EXPECT_REL(r.sprt_llr, 6.6187758);
  EXPECT_GE(r.sprt_llr, std::log(99.0));
  EXPECT_REL(std::log(99.0), 4.5951199);
  EXPECT_REL(r.mixture_lr, 144.1237);
}

TEST(ErrorSplitVectorTest, BinomialTestDirect) {
  EXPECT_REL(BinomialTestTwoSided(30, 38, 0.5), 4.7198674e-4);
  EXPECT_REL(BinomialTestTwoSided(8, 38, 0.5), 4.7198674e-4);
  EXPECT_REL(BinomialTestTwoSided(19, 38, 0.5), 1.0);
}

TEST(FisherVectorTest, FiveOfThousandVersusNone) {
  EXPECT_REL(FisherExactTwoSided(5, 995, 0, 1000), 0.0621875785);
  // Symmetric in the rows.
  EXPECT_REL(FisherExactTwoSided(0, 1000, 5, 995), 0.0621875785);
}

// §3 --------------------------------------------------------------------
TEST(TrendVectorTest, CochranArmitage) {
  absl::StatusOr<TrendTest> r =
      CochranArmitage({83, 90, 129, 70}, {86, 93, 136, 82}, {1, 2, 3, 4});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_REL(r->z, -2.8679125);
  EXPECT_REL(r->chi2, 8.2249223);
  // The vector's p is two-sided (chi-square, 1 df).
  EXPECT_REL(r->p_two_sided, 0.004131897);
  // Decisions use one-sided "increasing": a falling trend is not significant.
  EXPECT_GT(r->p_increasing, 0.99);
  EXPECT_FALSE(r->exact);
}

TEST(BhVectorTest, RejectionsAndAdjusted) {
  const BhResult r =
      BenjaminiHochberg({0.50, 0.01, 0.001, 0.69, 0.02, 0.05, 0.0025}, 0.05);
  const std::vector<bool> want_reject = {false, true,  true, false,
                                         true,  false, true};
  const std::vector<double> want_adj = {0.58333333, 0.02333333, 0.007,  0.69,
                                        0.035,      0.07,       0.00875};
  EXPECT_EQ(r.reject, want_reject);
  for (size_t i = 0; i < want_adj.size(); ++i) {
    EXPECT_NEAR(r.adjusted[i], want_adj[i], 1e-6 * want_adj[i] + 5e-9) << i;
  }
}

// §4 --------------------------------------------------------------------
TEST(ChangePointVectorTest, TwentyErrorsThenClean) {
  std::vector<CountBin> bins(10000, CountBin{1, 0});
  for (int t = 200; t <= 4000; t += 200) bins[t - 1].failures = 1;
  absl::StatusOr<ChangePointEstimate> r = DateSingleChangePoint(bins, 0.95);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->split, 4000u);
  EXPECT_REL(r->lr_statistic, 36.71177);
  EXPECT_REL(r->rate_before, 20.0 / 4000);
  EXPECT_EQ(r->rate_after, 0.0);
  // The interval holds the estimate and extends after it about as far as the
  // ln 20 / p1 rule says (4000 + 599).
  EXPECT_LE(r->interval_lower, 4000u);
  EXPECT_GE(r->interval_upper, 4000u);
  EXPECT_NEAR(r->rule_upper_trials, 4000 + std::log(20.0) / 0.005, 1e-6);
  EXPECT_GT(static_cast<double>(r->interval_upper), 4300.0);
  EXPECT_LT(static_cast<double>(r->interval_upper), 5000.0);
}

TEST(FixConfirmationVectorTest, CleanProbesAndFailureCost) {
  EXPECT_EQ(FixConfirmation::CleanProbesNeeded(0.001, 1e-5, 0.05, 0), 3025u);
  EXPECT_EQ(FixConfirmation::CleanProbesNeeded(0.001, 1e-5, 0.05, 1),
            3025u + 4649u);
  EXPECT_EQ(std::floor(FixConfirmation::FailureCostInCleanProbes(0.001, 1e-5)),
            4649.0);
  FixConfirmation fix(0.001, 1e-5, 0.05);
  fix.Observe(3024, 0);
  EXPECT_FALSE(fix.Confirmed());
  EXPECT_EQ(fix.RemainingCleanProbes(), 1u);
  fix.Observe(1, 0);
  EXPECT_TRUE(fix.Confirmed());
  EXPECT_GE(fix.log_lr(), std::log(20.0));
  // Post-start Clopper-Pearson bound at 95 %: 0 in 3025 -> below p_bad.
  EXPECT_LT(fix.UpperBound(), 0.001);

  FixConfirmation one_error(0.001, 1e-5, 0.05);
  one_error.Observe(1, 1);
  one_error.Observe(3025 + 4649 - 1, 0);
  EXPECT_FALSE(one_error.Confirmed());
  one_error.Observe(1, 0);
  EXPECT_TRUE(one_error.Confirmed());
}

// §5 --------------------------------------------------------------------
TEST(IntervalVectorTest, WilsonAndClopperPearson) {
  const RateInterval w = WilsonInterval(3, 1000, 0.95);
  EXPECT_REL(w.lower, 0.0010207839);
  EXPECT_REL(w.upper, 0.0087830141);
  const RateInterval cp = ClopperPearsonInterval(3, 1000, 0.95);
  EXPECT_REL(cp.lower, 0.00061909993);
  EXPECT_REL(cp.upper, 0.0087420232);
  EXPECT_EQ(ClopperPearsonInterval(0, 10, 0.95).lower, 0.0);
  EXPECT_EQ(ClopperPearsonInterval(10, 10, 0.95).upper, 1.0);
}

TEST(IntervalVectorTest, ZeroFailureSampleSize) {
  EXPECT_EQ(ZeroFailureSampleSize(0.001, 0.05), 2995u);
  EXPECT_LT(ClopperPearsonUpperBound(0, 2995, 0.95), 0.001);
  EXPECT_GT(ClopperPearsonUpperBound(0, 2994, 0.95), 0.001);
}

TEST(WaldVectorTest, ConstantsAndDecisions) {
  WaldSprt sprt(0.001, 0.01, 0.01, 0.01);
  EXPECT_REL(sprt.log_a(), 4.5951199);
  EXPECT_REL(sprt.log_b(), -4.5951199);
  using D = WaldSprt::Decision;
  EXPECT_EQ(sprt.Decide(3, 2), D::kRejectH0);
  EXPECT_EQ(sprt.Decide(4, 2), D::kContinue);
  EXPECT_EQ(sprt.Decide(508, 0), D::kAcceptH0);
  EXPECT_EQ(sprt.Decide(507, 0), D::kContinue);
}

}  // namespace
}  // namespace fleetcanary::analysis
