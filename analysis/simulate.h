// Seeded Monte-Carlo helpers for the Bernoulli CUSUM, used by the simulation
// tests and bench/analysis. Failures are drawn as geometric gaps (exact for a
// Bernoulli stream: S only falls between failures), so 10^8 probes cost as
// much as their failures.
//
// Pure functions of their arguments and the generator; thread-compatible.
#ifndef FLEETCANARY_ANALYSIS_SIMULATE_H_
#define FLEETCANARY_ANALYSIS_SIMULATE_H_

#include <cstdint>
#include <random>

namespace fleetcanary::analysis {

// Alarms raised by BernoulliCusum(p0, p1, h) (reset after each) over `probes`
// probes at true rate p. REQUIRES: 0 < p < 1.
uint64_t SimulateCusumAlarms(double p0, double p1, double h, double p,
                             uint64_t probes, std::mt19937_64* rng);

// Mean zero-state run length (probes to the first alarm, inclusive) over
// `runs` runs at true rate p. REQUIRES: 0 < p < 1.
double SimulateCusumRunLength(double p0, double p1, double h, double p,
                              int runs, std::mt19937_64* rng);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_SIMULATE_H_
