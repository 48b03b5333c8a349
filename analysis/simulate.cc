#include "analysis/simulate.h"

#include <algorithm>
#include <cmath>

namespace fleetcanary::analysis {

uint64_t SimulateCusumAlarms(double p0, double p1, double h, double p,
                             uint64_t probes, std::mt19937_64* rng) {
  const double a = std::log(p1 / p0);
  const double b = std::log1p(-p0) - std::log1p(-p1);
  std::geometric_distribution<uint64_t> gap(p);
  double s = 0;
  uint64_t t = 0, alarms = 0;
  for (;;) {
    const uint64_t g = gap(*rng);
    t += g + 1;  // g clean probes, then a failure.
    if (t > probes) break;
    s = std::max(0.0, s - static_cast<double>(g) * b) + a;
    if (s >= h) {
      ++alarms;
      s = 0;
    }
  }
  return alarms;
}

double SimulateCusumRunLength(double p0, double p1, double h, double p,
                              int runs, std::mt19937_64* rng) {
  const double a = std::log(p1 / p0);
  const double b = std::log1p(-p0) - std::log1p(-p1);
  std::geometric_distribution<uint64_t> gap(p);
  double total = 0;
  for (int r = 0; r < runs; ++r) {
    double s = 0;
    uint64_t t = 0;
    for (;;) {
      const uint64_t g = gap(*rng);
      t += g + 1;
      s = std::max(0.0, s - static_cast<double>(g) * b) + a;
      if (s >= h) break;
    }
    total += static_cast<double>(t);
  }
  return total / runs;
}

}  // namespace fleetcanary::analysis
