// Per-stream probe aggregates: the identity of a probe stream (region x
// target x mode x size), its counts by outcome class, latency histograms and
// minute/hour indexes. The controller's store persists them; the incident
// report and the offline tools compute them from outcomes files.
//
// Plain value types; thread-compatible.
#ifndef FLEETCANARY_ANALYSIS_STREAM_STATS_H_
#define FLEETCANARY_ANALYSIS_STREAM_STATS_H_

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary::analysis {

// Number of OutcomeClass enum values (index = enum value).
inline constexpr int kNumOutcomeClasses = 14;

// Upper bounds, in seconds, of the latency histogram buckets; one more
// bucket (+Inf) follows. Shared by the store, ingest and /metrics.
inline constexpr std::array<double, 15> kLatencyBucketBounds = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120};
inline constexpr int kNumLatencyBuckets = kLatencyBucketBounds.size() + 1;

// Non-cumulative bucket counts plus the sum of observations.
struct LatencyHistogram {
  std::vector<uint64_t> buckets = std::vector<uint64_t>(kNumLatencyBuckets);
  double sum = 0;

  void Observe(double seconds);
  void Merge(const LatencyHistogram& other);
  uint64_t count() const;
  bool operator==(const LatencyHistogram& o) const {
    return buckets == o.buckets && sum == o.sum;
  }
};

// Identity of a probe stream. `adhoc` separates ad-hoc probes from scheduled
// ones (ad-hoc outcomes never feed stream verdicts).
struct StreamKey {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  uint64_t size_bytes = 0;
  bool adhoc = false;

  auto Tie() const { return std::tie(region, target, mode, size_bytes, adhoc); }
  bool operator<(const StreamKey& o) const { return Tie() < o.Tie(); }
  bool operator==(const StreamKey& o) const { return Tie() == o.Tie(); }
};

// Counts of a stream over some period.
struct StreamStats {
  std::array<uint64_t, kNumOutcomeClasses> counts{};  // By OutcomeClass.
  LatencyHistogram ttfb;      // Headers received, for outcomes that got them.
  LatencyHistogram duration;  // Total invocation time.
  uint64_t received_bytes = 0;

  // Adds one outcome.
  void Add(const v1::Outcome& outcome);
  void Merge(const StreamStats& other);
  uint64_t probes() const;
  bool operator==(const StreamStats& o) const {
    return counts == o.counts && ttfb == o.ttfb && duration == o.duration &&
           received_bytes == o.received_bytes;
  }
};

// Wall-clock minute index (Unix seconds / 60) of an outcome's start.
int64_t MinuteOf(absl::Time t);
// Hour index (floor(minute / 60)) of a minute index.
int64_t HourOfMinute(int64_t minute);

struct StreamMinute {
  StreamKey key;
  int64_t minute = 0;
  StreamStats stats;
};

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_STREAM_STATS_H_
