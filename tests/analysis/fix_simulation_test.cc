// Seeded simulations of whole episodes through the verdict engine: detection
// delay from a clean history at the fleet false-alarm budget, and that fix
// confirmation never fires while a fault continues or after a partial fix.
// Counts are drawn in-process (binomial batches); every seed is fixed.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"
#include "tests/analysis/sim_stream.h"

namespace fleetcanary::analysis {
namespace {

using testing::FromProto;
using testing::SimStream;

constexpr double kBaseline = 1e-4;  // True in-control rate of the stream.

// Probes from the change to the REGRESSION alarm, median over `runs`.
double MedianDelay(double rate, int runs, uint64_t seed0, int* missed,
                   int* early_alarms) {
  std::vector<double> delays;
  *missed = 0;
  *early_alarms = 0;
  for (int r = 0; r < runs; ++r) {
    SimStream s(seed0 + r);
    // Clean history: 20,000 probes (two weeks at one a minute).
    if (s.Feed(20000, 20, kBaseline, v1::REGRESSION)) ++*early_alarms;
    const uint64_t before = s.probes();
    // One probe per step so the delay is exact.
    if (s.Feed(50000, 1, rate, v1::REGRESSION)) {
      delays.push_back(static_cast<double>(s.probes() - before));
    } else {
      ++*missed;
      delays.push_back(1e9);
    }
  }
  std::sort(delays.begin(), delays.end());
  return delays[delays.size() / 2];
}

TEST(FixSimulationTest, DetectsHalfPercentAndTwoPercentFromCleanHistory) {
  int missed = 0, early = 0;
  const double half = MedianDelay(0.005, 200, 1000, &missed, &early);
  std::printf("0.5%%: median delay %.0f probes (missed %d, early alarms %d)\n",
              half, missed, early);
  EXPECT_LE(half, 3000);
  EXPECT_LE(early, 2);
  const double two = MedianDelay(0.02, 200, 2000, &missed, &early);
  std::printf("2%%: median delay %.0f probes (missed %d, early alarms %d)\n",
              two, missed, early);
  EXPECT_LE(two, 600);
  EXPECT_LE(early, 2);
}

struct Episode {
  uint64_t history = 0;  // Clean probes before the fault.
  double fault = 0.05;   // Rate while the fault runs.
  double after = 0;      // Rate after the (possibly partial or no) fix.
  bool declare_fix = false;
};

// Runs one episode; returns the number of FIX_CONFIRMED transitions after
// the switch from `fault` to `after` (and whether the fault was detected).
int RunEpisode(const Episode& ep, uint64_t seed, bool* detected,
               uint64_t after_probes) {
  SimStream s(seed);
  s.Feed(ep.history, 20, kBaseline, v1::VERDICT_STATE_UNSPECIFIED);
  *detected = s.Feed(20000, 5, ep.fault, v1::REGRESSION).has_value();
  if (!*detected) return 0;
  if (ep.declare_fix) s.engine().DeclareFix(s.now());
  int confirmations = 0;
  for (uint64_t done = 0; done < after_probes; done += 1000) {
    if (s.Feed(1000, 100, ep.after, v1::FIX_CONFIRMED)) ++confirmations;
  }
  return confirmations;
}

void ExpectNoFalseFix(double fault, std::vector<double> afters,
                      uint64_t seed0) {
  const std::vector<uint64_t> histories = {200, 2000, 20000};
  int runs = 0, detected_runs = 0, false_fixes = 0;
  for (int r = 0; r < 1000; ++r) {
    Episode ep;
    ep.history = histories[r % histories.size()];
    ep.fault = fault;
    ep.after = afters[r % afters.size()];
    ep.declare_fix = (r / 3) % 2 == 0;
    bool detected = false;
    const int fixes = RunEpisode(ep, seed0 + r, &detected, 20000);
    ++runs;
    if (detected) ++detected_runs;
    false_fixes += fixes;
    EXPECT_EQ(fixes, 0) << "run " << r << " history " << ep.history << " fault "
                        << ep.fault << " after " << ep.after << " declared "
                        << ep.declare_fix;
  }
  std::printf("fault %.3g -> %.3g: %d runs, %d detected, %d false fixes\n",
              fault, afters[0], runs, detected_runs, false_fixes);
  EXPECT_EQ(false_fixes, 0);
  EXPECT_GE(detected_runs, 990);
}

// The case: 5 % client-visible truncation that keeps running, with
// and without a declared (ineffective) fix, after short and long histories.
TEST(FixSimulationTest, NoFixConfirmedWhileTheFaultContinues) {
  ExpectNoFalseFix(0.05, {0.05, 0.02}, 10000);
}

// A partial fix: the rate falls to a tenth (0.5 %) or less but stays far
// above the baseline.
TEST(FixSimulationTest, NoFixConfirmedAfterAPartialFix) {
  ExpectNoFalseFix(0.05, {0.005, 0.0025}, 20000);
}

// The other side: a real fix is confirmed, against a p_bad tied to the
// pre-incident baseline, and the confirmed bound is near that baseline.
TEST(FixSimulationTest, RealFixIsConfirmedNearTheBaseline) {
  int confirmed = 0;
  for (int r = 0; r < 50; ++r) {
    SimStream s(30000 + r);
    s.Feed(20000, 20, kBaseline, v1::VERDICT_STATE_UNSPECIFIED);
    ASSERT_TRUE(s.Feed(20000, 5, 0.05, v1::REGRESSION).has_value());
    if (r % 2 == 0) s.engine().DeclareFix(s.now());
    // Back at the baseline (odd runs) or clean (even runs).
    auto fix = s.Feed(300000, 20, r % 2 ? kBaseline : 0.0, v1::FIX_CONFIRMED);
    if (!fix) continue;
    ++confirmed;
    const v1::Evidence& ev = fix->evidence();
    // p_bad = max(floor, 2 x pre-incident p0): with 20,000 clean probes the
    // Beta-prior p0 is ~1.5e-4, so p_bad is ~3e-4, far below the fault.
    EXPECT_LE(ev.null_rate(), 1e-3) << ev.summary();
    EXPECT_GE(ev.null_rate(), 1e-4);
    EXPECT_NEAR(ev.alternative_rate(), ev.null_rate() / 100, 1e-12);
    EXPECT_LT(ev.proven_upper_bound(), 0.002);
    EXPECT_TRUE(ev.has_confirmation_start());
  }
  EXPECT_GE(confirmed, 48);
}

}  // namespace
}  // namespace fleetcanary::analysis
