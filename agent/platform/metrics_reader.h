// Decides which platform-metric periods to read (and read again) and what to
// report, so the controller ends up with CloudWatch's final value for every
// (target, metric, period) — including late datapoints and zero minutes.
//
// Policy. Periods are [T, T + period) with T a multiple of `period` since the
// Unix epoch; datapoints are stamped with T (the invocations' start time).
//  - A period is *closed* once now >= T + period, and *final* once
//    now >= T + period + ingestion_delay: CloudWatch may still add to a
//    closed period (datapoints arrive late), but not to a final one.
//  - Every Poll() reads, for every target, all closed periods that are not
//    yet final for it (one GetMetricData window [oldest unfinalised period,
//    latest closed period end)). A closed period is thus re-read on every
//    poll until it is final, and read once more after that.
//  - A sample is reported the first time a datapoint is seen and again
//    whenever its value changes. Samples for the same (region, target, mode,
//    metric, stat, period_start) therefore supersede earlier ones: consumers
//    keep the latest.
//  - When a period becomes final, every `zero_fill_metrics` metric
//    (Invocations and Errors by default) that never had a datapoint in it is
//    reported with value 0 (CloudWatch omits all-zero datapoints), and the
//    period is forgotten.
//  - A failed read changes nothing: the same periods are read on the next
//    poll. A target never looks back further than `max_lookback`; when
//    polls stop for longer, the periods skipped are neither read nor
//    zero-filled (and a warning is logged). A newly added target starts at
//    the period containing now − initial_lookback.
//
// Poll() is meant to be called about once per period (NextPollTime()).
//
// Thread-safety: thread-safe; Poll() calls are serialised (the network call
// runs under the reader's lock). The client and clock are not owned.
#ifndef FLEETCANARY_AGENT_PLATFORM_METRICS_READER_H_
#define FLEETCANARY_AGENT_PLATFORM_METRICS_READER_H_

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/platform/cloudwatch_client.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace platform {

struct PlatformMetricsReaderOptions {
  // CloudWatch aggregation period: 60 s on AWS, shorter in compressed-time
  // demos. Whole seconds.
  absl::Duration period = absl::Seconds(60);
  // How long after a period ends its datapoints may still change.
  absl::Duration ingestion_delay = absl::Minutes(5);
  // How far back a new target starts.
  absl::Duration initial_lookback = absl::Minutes(10);
  // Upper bound on how far back any read goes.
  absl::Duration max_lookback = absl::Hours(3);
  std::vector<MetricSpec> metrics = DefaultLambdaMetrics();
  // Metrics reported as 0 for final periods without a datapoint.
  std::vector<std::string> zero_fill_metrics = {"Invocations", "Errors"};
};

class PlatformMetricsReader {
 public:
  // INVALID_ARGUMENT for a non-positive or fractional-second period, a
  // negative delay, or a missing client/clock.
  static absl::StatusOr<std::unique_ptr<PlatformMetricsReader>> Create(
      const PlatformMetricsReaderOptions& options,
      PlatformMetricsClient* client, Clock* clock);

  // Replaces the set of targets. Targets are identified by (region, target,
  // mode); kept ones keep their progress, new ones start at
  // now − initial_lookback, removed ones are forgotten.
  void SetTargets(const std::vector<MetricsTarget>& targets);

  // Reads what is due at the clock's now and returns the samples to report
  // (see the policy above). Errors from the client are returned unchanged;
  // nothing is marked read or final then.
  absl::StatusOr<std::vector<v1::PlatformMetricSample>> Poll();

  // When the next period closes (a good time for the next Poll()).
  absl::Time NextPollTime();

  // Start of the period containing `t`.
  absl::Time PeriodStart(absl::Time t) const;

 private:
  using TargetKey = std::tuple<std::string, std::string, int>;
  // (metric index, period start) -> last value reported.
  using Reported = std::map<std::pair<size_t, absl::Time>, double>;

  struct TargetState {
    MetricsTarget target;
    // Periods starting before this are final and forgotten.
    absl::Time final_until;
    Reported reported;
  };

  PlatformMetricsReader(const PlatformMetricsReaderOptions& options,
                        PlatformMetricsClient* client, Clock* clock);

  const PlatformMetricsReaderOptions options_;
  PlatformMetricsClient* const client_;
  Clock* const clock_;
  std::vector<bool> zero_fill_;  // Per options_.metrics index.

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<TargetKey, TargetState> targets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace platform
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PLATFORM_METRICS_READER_H_
