#include "analysis/stream_stats.h"

#include <algorithm>

#include "absl/time/time.h"

namespace fleetcanary::analysis {
namespace {

double Seconds(const google::protobuf::Duration& d) {
  return static_cast<double>(d.seconds()) + d.nanos() * 1e-9;
}

}  // namespace

void LatencyHistogram::Observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // Also maps NaN to 0.
  const auto it = std::lower_bound(kLatencyBucketBounds.begin(),
                                   kLatencyBucketBounds.end(), seconds);
  ++buckets[it - kLatencyBucketBounds.begin()];
  sum += seconds;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (buckets.size() < other.buckets.size()) {
    buckets.resize(other.buckets.size());
  }
  for (size_t i = 0; i < other.buckets.size(); ++i) {
    buckets[i] += other.buckets[i];
  }
  sum += other.sum;
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (uint64_t b : buckets) n += b;
  return n;
}

void StreamStats::Add(const v1::Outcome& outcome) {
  int cls = outcome.outcome_class();
  if (cls < 0 || cls >= kNumOutcomeClasses) cls = 0;
  ++counts[cls];
  if (outcome.has_timings()) {
    const v1::Timings& t = outcome.timings();
    if (t.has_headers_received()) ttfb.Observe(Seconds(t.headers_received()));
    if (t.has_total()) duration.Observe(Seconds(t.total()));
  }
  received_bytes += outcome.received_bytes();
}

void StreamStats::Merge(const StreamStats& other) {
  for (int i = 0; i < kNumOutcomeClasses; ++i) counts[i] += other.counts[i];
  ttfb.Merge(other.ttfb);
  duration.Merge(other.duration);
  received_bytes += other.received_bytes;
}

uint64_t StreamStats::probes() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

int64_t MinuteOf(absl::Time t) {
  return absl::ToUnixSeconds(t) >= 0 ? absl::ToUnixSeconds(t) / 60
                                     : (absl::ToUnixSeconds(t) - 59) / 60;
}

int64_t HourOfMinute(int64_t minute) {
  return minute >= 0 ? minute / 60 : (minute - 59) / 60;
}

}  // namespace fleetcanary::analysis
