// Coverage of the change-time intervals, measured by seeded simulation
// through the verdict engine: the onset interval of a REGRESSION and the
// change interval of a FIX_CONFIRMED must contain the true change in >= 90 %
// of runs, hold their own point estimate, and never have zero width.
#include <cstdio>

#include "analysis/changepoint.h"
#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"
#include "tests/analysis/sim_stream.h"

namespace fleetcanary::analysis {
namespace {

using testing::FromProto;
using testing::SimStream;

struct Coverage {
  int runs = 0, dated = 0, covered = 0;
};

// Checks the interval's shape and returns whether it holds `truth`.
bool CheckInterval(const v1::Evidence& ev, absl::Time truth) {
  EXPECT_TRUE(ev.has_change_time());
  EXPECT_TRUE(ev.has_change_interval());
  const absl::Time point = FromProto(ev.change_time());
  const absl::Time lo = FromProto(ev.change_interval().lower());
  const absl::Time hi = FromProto(ev.change_interval().upper());
  EXPECT_LE(lo, point);
  EXPECT_GE(hi, point);
  EXPECT_LT(lo, hi) << "zero-width interval";
  EXPECT_EQ(ev.change_interval().confidence(), 0.95);
  return lo <= truth && truth <= hi;
}

// Onset: a clean history, then a fault at `rate`; the REGRESSION's interval
// must hold the time of the first faulty batch.
Coverage OnsetCoverage(double rate, int runs, uint64_t seed0) {
  Coverage c;
  for (int r = 0; r < runs; ++r) {
    SimStream s(seed0 + r);
    s.Feed(5000 + 100 * (r % 50), 10, 1e-4, v1::VERDICT_STATE_UNSPECIFIED);
    const absl::Time truth = s.now();
    auto reg = s.Feed(50000, 10, rate, v1::REGRESSION);
    ++c.runs;
    if (!reg) continue;
    ++c.dated;
    if (CheckInterval(reg->evidence(), truth)) ++c.covered;
  }
  return c;
}

// Fix: the fault runs for a while past the alarm, then is fixed at a known
// time; FIX_CONFIRMED's dated change must hold it.
Coverage FixCoverage(double rate, int runs, uint64_t seed0) {
  Coverage c;
  for (int r = 0; r < runs; ++r) {
    SimStream s(seed0 + r);
    s.Feed(20000, 20, 1e-4, v1::VERDICT_STATE_UNSPECIFIED);
    if (!s.Feed(50000, 10, rate, v1::REGRESSION)) {
      ++c.runs;
      continue;
    }
    s.Feed(200 * (r % 10), 10, rate, v1::VERDICT_STATE_UNSPECIFIED);
    const absl::Time truth = s.now();
    if (r % 2 == 0) s.engine().DeclareFix(truth);
    // Back at the true baseline: proving "<= 2 x baseline" while the rate
    // is the baseline is slow (tens of thousands of probes, a long tail).
    auto fix = s.Feed(400000, 50, 1e-4, v1::FIX_CONFIRMED);
    ++c.runs;
    if (!fix) continue;
    ++c.dated;
    if (CheckInterval(fix->evidence(), truth)) ++c.covered;
  }
  return c;
}

void Report(const char* what, double rate, const Coverage& c) {
  std::printf("%s at %.3g: %d runs, %d dated, %d covered (%.1f%%)\n", what,
              rate, c.runs, c.dated, c.covered,
              c.dated ? 100.0 * c.covered / c.dated : 0.0);
  EXPECT_GE(c.dated, c.runs * 95 / 100) << what;
  EXPECT_GE(c.covered, c.dated * 9 / 10) << what << " coverage below 90 %";
}

TEST(DatingCoverageTest, OnsetIntervalsCoverTheTrueOnset) {
  for (double rate : {0.02, 0.005}) {
    Report("onset", rate, OnsetCoverage(rate, 500, rate > 0.01 ? 100 : 200));
  }
}

TEST(DatingCoverageTest, FixIntervalsCoverTheTrueFix) {
  for (double rate : {0.05, 0.01}) {
    Report("fix", rate, FixCoverage(rate, 500, rate > 0.02 ? 300 : 400));
  }
}

// When the data pin the change to one split the interval is that period:
// all failures in the first bin, none after.
TEST(DatingCoverageTest, PinnedChangeIsOnePeriod) {
  std::vector<CountBin> bins = {{100, 100}, {100, 0}, {100, 0}};
  auto cp = DateSingleChangePoint(bins, 0.95);
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->split, 1u);
  EXPECT_EQ(cp->interval_lower, 1u);
  EXPECT_EQ(cp->interval_upper, 1u);
}

}  // namespace
}  // namespace fleetcanary::analysis
