#include "emulator/platform/metric_store.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace emulator {
namespace {

constexpr std::pair<LambdaMetric, const char*> kNames[] = {
    {LambdaMetric::kInvocations, "Invocations"},
    {LambdaMetric::kErrors, "Errors"},
    {LambdaMetric::kThrottles, "Throttles"},
    {LambdaMetric::kDuration, "Duration"},
    {LambdaMetric::kUrlRequestCount, "UrlRequestCount"},
    {LambdaMetric::kUrl4xxCount, "Url4xxCount"},
    {LambdaMetric::kUrl5xxCount, "Url5xxCount"},
    {LambdaMetric::kUrlRequestLatency, "UrlRequestLatency"},
};

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// A CloudWatch statistic the store can compute.
struct Statistic {
  enum Kind { kCount, kSum, kAvg, kMin, kMax, kPercentile } kind;
  double percentile = 0;  // For kPercentile, in [0, 100].
};

// Parses SampleCount, Sum, Average, Minimum, Maximum or pNN;
// InvalidArgument for anything else.
absl::StatusOr<Statistic> ParseStatistic(absl::string_view stat) {
  Statistic s;
  if (stat == "SampleCount") {
    s.kind = Statistic::kCount;
  } else if (stat == "Sum") {
    s.kind = Statistic::kSum;
  } else if (stat == "Average") {
    s.kind = Statistic::kAvg;
  } else if (stat == "Minimum") {
    s.kind = Statistic::kMin;
  } else if (stat == "Maximum") {
    s.kind = Statistic::kMax;
  } else if (absl::StartsWith(stat, "p") &&
             absl::SimpleAtod(stat.substr(1), &s.percentile) &&
             s.percentile >= 0 && s.percentile <= 100) {
    s.kind = Statistic::kPercentile;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("Stat: unsupported statistic '", std::string(stat),
                     "' (SampleCount, Sum, Average, Minimum, Maximum, pNN)"));
  }
  return s;
}

// The value of `stat` over one aggregated bucket (REQUIRES: count > 0).
// `samples` is sorted in place for percentiles (nearest rank).
double StatisticValue(const Statistic& stat, double count, double sum,
                      double min, double max, std::vector<double>* samples) {
  switch (stat.kind) {
    case Statistic::kCount:
      return count;
    case Statistic::kSum:
      return sum;
    case Statistic::kAvg:
      return sum / count;
    case Statistic::kMin:
      return min;
    case Statistic::kMax:
      return max;
    case Statistic::kPercentile: {
      std::sort(samples->begin(), samples->end());
      // Nearest rank.
      size_t rank = static_cast<size_t>(
          std::ceil(stat.percentile / 100.0 * samples->size()));
      rank = std::clamp<size_t>(rank, 1, samples->size());
      return (*samples)[rank - 1];
    }
  }
  return 0;
}

}  // namespace

const char* LambdaMetricName(LambdaMetric metric) {
  for (const auto& [m, name] : kNames) {
    if (m == metric) return name;
  }
  return "Unknown";
}

std::optional<LambdaMetric> LambdaMetricFromName(absl::string_view name) {
  for (const auto& [m, n] : kNames) {
    if (name == n) return m;
  }
  return std::nullopt;
}

MetricStore::MetricStore(const MetricStoreOptions& options)
    : options_(options) {}

void MetricStore::RecordLocked(const SeriesKey& key, int64_t bucket_index,
                               double value) {
  std::map<int64_t, Bucket>& buckets = series_[key];
  Bucket& b = buckets[bucket_index];
  if (b.count == 0) {
    b.min = b.max = value;
  } else {
    b.min = std::min(b.min, value);
    b.max = std::max(b.max, value);
  }
  b.count += 1;
  b.sum += value;
  if (b.samples.size() < options_.max_samples_per_bucket) {
    b.samples.push_back(value);
  } else {
    // Reservoir sampling keeps a uniform sample for percentiles.
    std::uniform_int_distribution<uint64_t> pick(
        0, static_cast<uint64_t>(b.count) - 1);
    uint64_t j = pick(reservoir_gen_);
    if (j < b.samples.size()) b.samples[j] = value;
  }
  while (buckets.size() > options_.max_buckets_per_series) {
    buckets.erase(buckets.begin());
  }
}

void MetricStore::Record(absl::string_view function, absl::string_view alias,
                         LambdaMetric metric, double value, absl::Time at) {
  const int64_t base_ns = absl::ToInt64Nanoseconds(options_.period);
  const int64_t index = FloorDiv(absl::ToUnixNanos(at), base_ns);
  absl::MutexLock lock(&mu_);
  RecordLocked({std::string(function), "", metric}, index, value);
  RecordLocked(
      {std::string(function), absl::StrCat(function, ":", alias), metric},
      index, value);
}

std::map<int64_t, MetricStore::Bucket> MetricStore::Aggregate(
    const std::map<int64_t, Bucket>& buckets, int64_t period_ns,
    absl::Time start, absl::Time end, absl::Time now, bool keep_samples) const {
  const int64_t base_ns = absl::ToInt64Nanoseconds(options_.period);
  const int64_t ratio = period_ns / base_ns;
  std::map<int64_t, Bucket> agg;
  for (const auto& [index, b] : buckets) {
    const absl::Time bucket_start = absl::FromUnixNanos(index * base_ns);
    if (now < bucket_start + options_.period + options_.ingestion_delay) {
      continue;
    }
    const int64_t q = FloorDiv(index, ratio);
    const absl::Time ts = absl::FromUnixNanos(q * period_ns);
    if (ts < start || ts >= end) continue;
    Bucket& a = agg[q];
    if (a.count == 0) {
      a.min = b.min;
      a.max = b.max;
    } else {
      a.min = std::min(a.min, b.min);
      a.max = std::max(a.max, b.max);
    }
    a.count += b.count;
    a.sum += b.sum;
    if (keep_samples) {
      a.samples.insert(a.samples.end(), b.samples.begin(), b.samples.end());
    }
  }
  return agg;
}

absl::StatusOr<std::vector<Datapoint>> MetricStore::Query(
    absl::string_view function, absl::string_view resource, LambdaMetric metric,
    absl::Time start, absl::Time end, absl::Duration period,
    absl::string_view stat, absl::Time now) const {
  const int64_t base_ns = absl::ToInt64Nanoseconds(options_.period);
  const int64_t period_ns = absl::ToInt64Nanoseconds(period);
  if (period_ns <= 0 || period_ns % base_ns != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Period: must be a positive multiple of the metrics period (",
        absl::FormatDuration(options_.period), ")"));
  }
  absl::StatusOr<Statistic> statistic = ParseStatistic(stat);
  if (!statistic.ok()) return statistic.status();

  std::vector<Datapoint> out;
  absl::MutexLock lock(&mu_);
  auto it =
      series_.find({std::string(function), std::string(resource), metric});
  if (it == series_.end()) return out;
  // Aggregate visible base buckets into query periods.
  std::map<int64_t, Bucket> agg =
      Aggregate(it->second, period_ns, start, end, now,
                statistic->kind == Statistic::kPercentile);
  for (auto& [q, a] : agg) {
    Datapoint d;
    d.timestamp = absl::FromUnixNanos(q * period_ns);
    d.value =
        StatisticValue(*statistic, a.count, a.sum, a.min, a.max, &a.samples);
    out.push_back(d);
  }
  return out;
}

}  // namespace emulator
}  // namespace fleetcanary
