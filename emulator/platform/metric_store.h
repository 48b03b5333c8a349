// The emulator's platform metrics: what CloudWatch would hold for the
// canary function in one region (namespace AWS/Lambda).
//
// Samples are stamped with the invocation's start time and bucketed by the
// store's base period (60 s on AWS; configurable, e.g. 1 s in demos). Every
// sample is recorded under both dimension sets CloudWatch offers for a
// Function URL: {FunctionName} and {FunctionName, Resource="fn:alias"}.
// A bucket [T, T+period) becomes visible to queries once the clock has
// reached T + period + ingestion_delay, so readers only ever see complete
// datapoints (and a test can compare them with ground truth exactly).
//
// Memory is bounded: at most `max_buckets_per_series` buckets per series
// (oldest dropped) and at most `max_samples_per_bucket` raw samples kept per
// bucket for percentiles (reservoir sampling beyond that; Sum, SampleCount,
// Average, Minimum and Maximum stay exact).
//
// Thread-safety: thread-safe.
#ifndef FLEETCANARY_EMULATOR_PLATFORM_METRIC_STORE_H_
#define FLEETCANARY_EMULATOR_PLATFORM_METRIC_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace emulator {

enum class LambdaMetric {
  kInvocations,
  kErrors,
  kThrottles,
  kDuration,  // Milliseconds.
  kUrlRequestCount,
  kUrl4xxCount,
  kUrl5xxCount,
  kUrlRequestLatency,  // Milliseconds.
};

// "Invocations", "UrlRequestLatency", ...
const char* LambdaMetricName(LambdaMetric metric);
std::optional<LambdaMetric> LambdaMetricFromName(absl::string_view name);

struct MetricStoreOptions {
  absl::Duration period = absl::Seconds(60);
  absl::Duration ingestion_delay = absl::ZeroDuration();
  size_t max_buckets_per_series = 20000;
  size_t max_samples_per_bucket = 10000;
};

struct Datapoint {
  absl::Time timestamp;
  double value = 0;
};

class MetricStore {
 public:
  // REQUIRES: options.period > 0.
  explicit MetricStore(const MetricStoreOptions& options);

  // Adds one sample of `metric` for `function` behind `alias`, stamped `at`.
  void Record(absl::string_view function, absl::string_view alias,
              LambdaMetric metric, double value, absl::Time at);

  // Datapoints of one series with timestamps in [start, end), ascending,
  // aggregated to `period` (a positive multiple of the base period) with
  // `stat` (SampleCount, Sum, Average, Minimum, Maximum, pNN[.N]); only
  // buckets visible at `now`. `resource` empty = the {FunctionName} series.
  // INVALID_ARGUMENT for a bad period or stat.
  absl::StatusOr<std::vector<Datapoint>> Query(
      absl::string_view function, absl::string_view resource,
      LambdaMetric metric, absl::Time start, absl::Time end,
      absl::Duration period, absl::string_view stat, absl::Time now) const;

  absl::Duration period() const { return options_.period; }
  absl::Duration ingestion_delay() const { return options_.ingestion_delay; }

 private:
  struct Bucket {
    double count = 0;
    double sum = 0;
    double min = 0;
    double max = 0;
    std::vector<double> samples;
  };
  using SeriesKey = std::tuple<std::string, std::string, LambdaMetric>;
  void RecordLocked(const SeriesKey& key, int64_t bucket, double value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Merges the base `buckets` of one series that are visible at `now`
  // (period and ingestion delay over) into query periods of `period_ns`
  // (REQUIRES: a multiple of the base period), keyed by period index; only
  // periods starting in [start, end). Samples are merged when `keep_samples`.
  std::map<int64_t, Bucket> Aggregate(const std::map<int64_t, Bucket>& buckets,
                                      int64_t period_ns, absl::Time start,
                                      absl::Time end, absl::Time now,
                                      bool keep_samples) const;

  const MetricStoreOptions options_;
  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  // Series → base-bucket index (unix time / period) → bucket.
  std::map<SeriesKey, std::map<int64_t, Bucket>> series_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 reservoir_gen_ ABSL_GUARDED_BY(mu_){0x5eed};
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_PLATFORM_METRIC_STORE_H_
