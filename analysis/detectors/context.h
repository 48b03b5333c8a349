// What every detector needs from the engine that runs it: the resolved
// config, the false-alarm budget's stream count, the declared fix, where
// transitions go, and the CUSUM threshold for a budget ("Budget" in
// verdict_engine.h). Internal to the verdict engine.
//
// Thread-compatible; Threshold() is thread-safe (its memo is shared by every
// engine in the process).
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_CONTEXT_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_CONTEXT_H_

#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis::detectors {

// h is budgeted at the baseline posterior's kIcQuantile quantile, at most
// kMaxIcRatio x the posterior mean (docs/statistics.md "Baselines").
inline constexpr double kIcQuantile = 0.9;
inline constexpr double kMaxIcRatio = 2.5;

// Shared services the detectors need from the engine.
struct Context {
  v1::DetectionConfig cfg;
  int expected_streams = 0;
  std::optional<absl::Time> declared_fix;
  std::vector<v1::Verdict>* out = nullptr;

  // Rounds x > 0 up to the grid of `steps` points per decade.
  static double CeilToGrid(double x, double steps);
  // Threshold h for ARL >= arl0 when the true in-control rate is
  // ic_ratio x p0 (ic_ratio >= 1: p0 is an estimate and the true rate may be
  // higher). Computing h is costly (a lattice ARL model inside a bisection),
  // so h is memoized per process on rounded arguments: p0, ic_ratio and arl0
  // are rounded up to a 1/16-decade grid (at most 15 % higher: a slightly
  // less sensitive, never more alarming CUSUM), so re-arming as the baseline
  // moves rarely needs a new h. *p0_used is the rounded p0 the CUSUM must use.
  static double Threshold(double p0, double p1_ratio, double ic_ratio,
                          double arl0, double* p0_used);
};

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_CONTEXT_H_
