#include <algorithm>
#include <tuple>

#include "absl/time/time.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
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

absl::StatusOr<std::vector<StreamMinute>> QueryStreamCounts(Store* store,
                                                            int64_t from_minute,
                                                            int64_t to_minute) {
  absl::StatusOr<std::vector<StreamMinute>> minutes =
      store->QueryStreamMinutes(from_minute, to_minute);
  if (!minutes.ok() || from_minute >= to_minute) return minutes;
  absl::StatusOr<std::vector<StreamHour>> hours = store->QueryStreamHours(
      HourOfMinute(from_minute), HourOfMinute(to_minute - 1) + 1);
  if (!hours.ok()) return hours.status();
  if (hours->empty()) return minutes;
  std::vector<StreamMinute> out = *std::move(minutes);
  out.reserve(out.size() + hours->size());
  for (StreamHour& h : *hours) {
    out.push_back(
        StreamMinute{std::move(h.key), h.hour * 60, std::move(h.stats)});
  }
  std::stable_sort(
      out.begin(), out.end(), [](const StreamMinute& a, const StreamMinute& b) {
        return std::tie(a.key, a.minute) < std::tie(b.key, b.minute);
      });
  return out;
}

PruneCutoffs PruneCutoffs::At(absl::Time now,
                              const RetentionOptions& retention) {
  PruneCutoffs c;
  c.raw_us = absl::ToUnixMicros(now - retention.raw_retention);
  c.minute = HourOfMinute(MinuteOf(now - retention.aggregate_retention)) * 60;
  c.platform_us = absl::ToUnixMicros(now - retention.aggregate_retention);
  c.hour = HourOfMinute(MinuteOf(now - retention.hourly_retention));
  return c;
}

}  // namespace controller
}  // namespace fleetcanary
