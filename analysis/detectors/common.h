// Shared vocabulary of the verdict engine's detectors (verdict_engine.h):
// detector keys, the timed count bins an episode is dated over, and the
// conversions every detector needs. Internal to the engine; not a public API.
//
// Pure functions and value types; thread-compatible.
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_COMMON_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "analysis/intervals.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/verdict.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace fleetcanary::analysis::detectors {

// Bounds on the state one engine keeps: bins per episode (Recovery), bins of
// recent history per stream (RateMonitor) and keys per detector kind.
inline constexpr size_t kMaxEpisodeBins = 8192;
inline constexpr size_t kMaxHistoryBins = 2048;
inline constexpr size_t kMaxKeys = 200000;
// A stream whose baseline exceeds this is monitored as if p0 were this.
inline constexpr double kMaxP0 = 0.05;

// Map key for a StreamKey (ordered region, target, mode, size class).
using Key = std::tuple<std::string, std::string, int, std::string>;

Key MakeKey(const v1::StreamKey& k);
v1::StreamKey ToStreamKey(const Key& k);

// `t` as a Timestamp at nanosecond resolution (for finite times).
google::protobuf::Timestamp ToProto(absl::Time t);
// Whether `t` is neither InfinitePast nor InfiniteFuture.
bool IsFinite(absl::Time t);
// The start of the `d`-long period since the Unix epoch that holds `t`.
absl::Time FloorTo(absl::Time t, absl::Duration d);

// Lists in ev->classes the failure classes the evidence counts: platform-
// visible ones when `platform`, else the stream-health ones.
void SetClasses(v1::Evidence* ev, bool platform);

// Sets ev's trials, failures, rate (failures per trial, 0 without trials)
// and rate_interval (`interval`, computed by the caller at `confidence`).
void SetObservedRate(uint64_t trials, uint64_t failures,
                     const RateInterval& interval, double confidence,
                     v1::Evidence* ev);

// In-control rate from `k` failures in `n` clean probes: the posterior mean
// under a Beta prior of mean p0_prior and weight p0_prior_weight probes,
// floored at p0_floor.
double BaselineRate(const v1::DetectionConfig& cfg, uint64_t k, uint64_t n);

// A bin of counts with the time of its last observation.
struct TimedBin {
  absl::Time time;
  uint64_t trials = 0;
  uint64_t failures = 0;
};

// Appends to a bounded bin list; when full, adjacent pairs are merged (the
// resolution halves, the totals stay exact).
void AppendBin(std::vector<TimedBin>* bins, absl::Time t, uint64_t n,
               uint64_t k, size_t cap);

// Dates a change over `bins` into ev->change_time / change_interval (left
// unset with fewer than two bins or when no change can be dated).
void DateInto(const std::vector<TimedBin>& bins, double confidence,
              v1::Evidence* ev);

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_COMMON_H_
