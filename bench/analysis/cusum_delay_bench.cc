// Prints the CUSUM's detection delay and false-alarm table: for several
// per-stream ARL0 budgets and change scenarios, the threshold h, the model
// (Markov-chain) and simulated ARL0 and delay, and the ratio of the delay to
// the SPRT limit of docs/statistics.md ("Limits to measure against"), which is
// the in-process reference. Seeded; no wall time.
#include <cmath>
#include <cstdio>
#include <random>

#include "analysis/cusum.h"
#include "analysis/simulate.h"

using fleetcanary::analysis::CusumAverageRunLength;
using fleetcanary::analysis::CusumThresholdForArl0;
using fleetcanary::analysis::SimulateCusumAlarms;
using fleetcanary::analysis::SimulateCusumRunLength;

int main() {
  struct Case {
    const char* name;
    double p0_true;  // 0 -> floor 1e-4 for the design.
    double p_true;
    double sprt;
  };
  const Case cases[] = {{"0.001->0.01", 0.001, 0.01, 386},
                        {"0->0.01", 0, 0.01, 99},
                        {"0->0.001", 0, 0.001, 990}};
  std::mt19937_64 rng(2024);
  std::printf("%-12s %9s %6s %7s %10s %12s %10s %10s %6s %7s\n", "change",
              "ARL0 goal", "p1/p0", "h", "ARL0 model", "FA/1e6 sim",
              "delay mod", "delay sim", "SPRT", "ratio");
  for (double arl0 : {1e5, 864000.0, 8.64e6}) {
    for (const Case& c : cases) {
      const double p0 = c.p0_true > 0 ? c.p0_true : 1e-4;
      for (double ratio : {3.0, 10.0, 30.0, 100.0}) {
        if (c.p0_true > 0 && ratio != 10.0) continue;
        const double p1 = ratio * p0;
        if (p1 >= 1) continue;
        const double h = *CusumThresholdForArl0(p0, p1, arl0);
        const double model0 = *CusumAverageRunLength(p0, p1, h, p0);
        const uint64_t probes = 100'000'000;
        const double fa = static_cast<double>(SimulateCusumAlarms(
                              p0, p1, h, p0, probes, &rng)) /
                          (probes / 1e6);
        const double model1 = *CusumAverageRunLength(p0, p1, h, c.p_true);
        const double sim1 = SimulateCusumRunLength(
            p0, p1, h, c.p_true, c.p_true >= 0.01 ? 4000 : 1500, &rng);
        std::printf(
            "%-12s %9.3g %6.0f %7.3f %10.4g %12.3f %10.1f %10.1f %6.0f "
            "%6.2fx\n",
            c.name, arl0, ratio, h, model0, fa, model1, sim1, c.sprt,
            sim1 / c.sprt);
      }
    }
  }
  return 0;
}
