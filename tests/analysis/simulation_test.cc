// Seeded simulations: the ARL model against Monte-Carlo, false alarms under
// the null within the fleet budget, and detection delays against the SPRT
// limits of docs/statistics.md ("Limits to measure against").
#include <cmath>
#include <random>

#include "absl/time/time.h"
#include "analysis/cusum.h"
#include "analysis/simulate.h"
#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

// Reference fleet: 10 streams probed once a minute, 1 false alarm a month,
// half of it for the stream-health CUSUMs -> per-stream ARL0 = 864,000.
const double kRefArl0 = TargetArl0(2 * 10, 43200, 1);

TEST(SimulationTest, ArlModelMatchesMonteCarlo) {
  std::mt19937_64 rng(101);
  const double h = *CusumThresholdForArl0(0.001, 0.01, 1e5);
  const double model0 = *CusumAverageRunLength(0.001, 0.01, h, 0.001);
  EXPECT_GE(model0, 1e5);
  EXPECT_LT(model0, 1.01e5);
  const uint64_t probes = 200'000'000;
  const double alarms = static_cast<double>(
      SimulateCusumAlarms(0.001, 0.01, h, 0.001, probes, &rng));
  // ~2000 alarms: the Monte-Carlo ARL0 has ~2 % noise.
  EXPECT_NEAR(probes / alarms, model0, 0.08 * model0);
  const double model1 = *CusumAverageRunLength(0.001, 0.01, h, 0.01);
  EXPECT_NEAR(SimulateCusumRunLength(0.001, 0.01, h, 0.01, 4000, &rng), model1,
              0.05 * model1);
}

// h budgeted at a true in-control rate above the design p0 (an estimated
// baseline): the ARL at that rate meets the target, and at p_in_control = p0
// it is the plain threshold.
TEST(SimulationTest, ThresholdAtAHigherInControlRate) {
  const double h = *CusumThresholdForArl0(0.001, 0.01, 1e5);
  EXPECT_DOUBLE_EQ(*CusumThresholdForArl0At(0.001, 0.01, 0.001, 1e5), h);
  const double h2 = *CusumThresholdForArl0At(0.001, 0.01, 0.002, 1e5);
  EXPECT_GT(h2, h);
  const double arl = *CusumAverageRunLength(0.001, 0.01, h2, 0.002);
  EXPECT_GE(arl, 1e5);
  EXPECT_LT(arl, 1.01e5);
  // A rate the CUSUM drifts up at has no threshold.
  EXPECT_FALSE(CusumThresholdForArl0At(0.001, 0.01, 0.005, 1e5).ok());
}

TEST(SimulationTest, NullFalseAlarmsWithinBudget) {
  std::mt19937_64 rng(102);
  for (double p0 : {0.001, 1e-4}) {
    const double h = *CusumThresholdForArl0(p0, 10 * p0, kRefArl0);
    uint64_t alarms = 0;
    const int streams = 100;
    for (int s = 0; s < streams; ++s) {
      alarms += SimulateCusumAlarms(p0, 10 * p0, h, p0, 1'000'000, &rng);
    }
    const double budget = streams * 1e6 / kRefArl0;  // 115.7 allowed.
    EXPECT_LE(alarms, budget + 3 * std::sqrt(budget)) << "p0=" << p0;
  }
}

TEST(SimulationTest, EngineFalseAlarmsWithinBudget) {
  // The live path: per-minute batches, p0 learnt from the baseline.
  v1::DetectionConfig cfg;
  cfg.set_false_alarms_per_month(100);
  cfg.set_probes_per_stream_per_month(2.592e6);  // One a second.
  const int streams = 5;
  auto engine = VerdictEngine::Create(cfg, streams);
  ASSERT_TRUE(engine.ok());
  std::mt19937_64 rng(103);
  std::binomial_distribution<int> batch(60, 0.001);
  absl::Time t = absl::FromUnixSeconds(1706745600);
  for (int minute = 0; minute < 1'000'000 / 60; ++minute) {
    for (int s = 0; s < streams; ++s) {
      v1::StreamKey key;
      key.set_region("r");
      key.set_target("t");
      key.set_mode(s % 2 ? v1::BUFFERED : v1::RESPONSE_STREAM);
      key.set_size_class(std::to_string(s + 1) + "KiB");
      ClassCounts c;
      const int f = batch(rng);
      c.Add(v1::RESET, f);
      c.Add(v1::OK, 60 - f);
      ASSERT_TRUE((*engine)->Observe(key, t, c).ok());
    }
    t += absl::Minutes(1);
  }
  int regressions = 0;
  for (const auto& v : (*engine)->TakeTransitions()) {
    if (v.kind() == v1::STREAM_HEALTH && v.state() == v1::REGRESSION) {
      ++regressions;
    }
  }
  // ARL0 = 2 * 5 * 2.592e6 / 100 = 259,200 -> 19.3 allowed in 5e6 probes.
  const double budget = streams * 1e6 / TargetArl0(2 * streams, 2.592e6, 100);
  EXPECT_LE(regressions, budget + 3 * std::sqrt(budget));
}

struct DelayCase {
  double p0_true;  // 0 means "use the floor".
  double p_true;
  double sprt_limit;  // docs/statistics.md, probes.
};

double MeasureDelay(const DelayCase& c, std::mt19937_64* rng, double* model,
                    double* h_out) {
  const double p0 = c.p0_true > 0 ? c.p0_true : 1e-4;  // Floor.
  const double p1 = 10 * p0;
  const double h = *CusumThresholdForArl0(p0, p1, kRefArl0);
  *h_out = h;
  *model = *CusumAverageRunLength(p0, p1, h, c.p_true);
  return SimulateCusumRunLength(p0, p1, h, c.p_true,
                                c.p_true >= 0.01 ? 4000 : 1500, rng);
}

TEST(SimulationTest, DelayFromOneInAThousandToOnePercent) {
  std::mt19937_64 rng(104);
  double model = 0, h = 0;
  const double delay = MeasureDelay({0.001, 0.01, 386}, &rng, &model, &h);
  EXPECT_NEAR(delay, model, 0.06 * model);
  EXPECT_LE(delay, 1.5 * 386) << "h=" << h;
}

// With p0 = 0 the floor forbids paging on one failure (ARL0 would be 1/1e-4 =
// 10^4 probes), so the SPRT figures 99 and 990 (one failure decides) are out
// of reach by design: the CUSUM needs k = ceil(h/a) failures. It must still be
// within 1.5x of that k-failure limit.
TEST(SimulationTest, DelayFromZeroUsesTheFloor) {
  std::mt19937_64 rng(105);
  for (const DelayCase& c :
       {DelayCase{0, 0.01, 99}, DelayCase{0, 0.001, 990}}) {
    double model = 0, h = 0;
    const double delay = MeasureDelay(c, &rng, &model, &h);
    EXPECT_NEAR(delay, model, 0.07 * model) << c.p_true;
    const double k = std::ceil(h / std::log(10.0));
    EXPECT_GE(k, 2);
    EXPECT_LE(delay, 1.5 * k / c.p_true) << c.p_true;
  }
}

}  // namespace
}  // namespace fleetcanary::analysis
