#include "agent/platform/metrics_reader.h"

#include <algorithm>

#include "common/log/log.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace platform {
namespace {

// Forgets reported values of periods starting before `t`.
void EraseBefore(std::map<std::pair<size_t, absl::Time>, double>* reported,
                 absl::Time t) {
  for (auto it = reported->begin(); it != reported->end();) {
    it = it->first.second < t ? reported->erase(it) : std::next(it);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PlatformMetricsReader>>
PlatformMetricsReader::Create(const PlatformMetricsReaderOptions& options,
                              PlatformMetricsClient* client, Clock* clock) {
  if (client == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "PlatformMetricsReader: client and clock are required");
  }
  if (options.period < absl::Seconds(1) ||
      absl::Trunc(options.period, absl::Seconds(1)) != options.period) {
    return absl::InvalidArgumentError(
        "PlatformMetricsReaderOptions.period must be whole seconds >= 1s");
  }
  if (options.ingestion_delay < absl::ZeroDuration() ||
      options.initial_lookback < absl::ZeroDuration() ||
      options.max_lookback < options.period) {
    return absl::InvalidArgumentError(
        "PlatformMetricsReaderOptions: ingestion_delay and initial_lookback "
        "must be >= 0 and max_lookback >= period");
  }
  if (options.metrics.empty()) {
    return absl::InvalidArgumentError(
        "PlatformMetricsReaderOptions.metrics is empty");
  }
  return std::unique_ptr<PlatformMetricsReader>(
      new PlatformMetricsReader(options, client, clock));
}

PlatformMetricsReader::PlatformMetricsReader(
    const PlatformMetricsReaderOptions& options, PlatformMetricsClient* client,
    Clock* clock)
    : options_(options), client_(client), clock_(clock) {
  for (const MetricSpec& m : options_.metrics) {
    zero_fill_.push_back(std::find(options_.zero_fill_metrics.begin(),
                                   options_.zero_fill_metrics.end(),
                                   m.name) != options_.zero_fill_metrics.end());
  }
}

absl::Time PlatformMetricsReader::PeriodStart(absl::Time t) const {
  const int64_t p = absl::ToInt64Seconds(options_.period);
  int64_t s = absl::ToUnixSeconds(t);  // Floors.
  int64_t r = s % p;
  if (r < 0) r += p;
  return absl::FromUnixSeconds(s - r);
}

absl::Time PlatformMetricsReader::NextPollTime() {
  return PeriodStart(clock_->Now()) + options_.period;
}

void PlatformMetricsReader::SetTargets(
    const std::vector<MetricsTarget>& targets) {
  const absl::Time start =
      PeriodStart(clock_->Now() - options_.initial_lookback);
  absl::MutexLock lock(&mu_);
  std::map<TargetKey, TargetState> next;
  for (const MetricsTarget& t : targets) {
    TargetKey key{t.region, t.target, static_cast<int>(t.mode)};
    auto old = targets_.find(key);
    if (old != targets_.end()) {
      TargetState state = std::move(old->second);
      state.target = t;
      next[key] = std::move(state);
    } else {
      next[key] = TargetState{t, start, {}};
    }
  }
  targets_ = std::move(next);
}

absl::StatusOr<std::vector<v1::PlatformMetricSample>>
PlatformMetricsReader::Poll() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::PlatformMetricSample> out;
  if (targets_.empty()) return out;
  const absl::Time now = clock_->Now();
  const absl::Time closed_end = PeriodStart(now);
  const absl::Time final_boundary =
      std::min(PeriodStart(now - options_.ingestion_delay), closed_end);
  const absl::Time floor = PeriodStart(now - options_.max_lookback);

  absl::Time window_start = absl::InfiniteFuture();
  std::vector<MetricsTarget> targets;
  for (auto& [key, state] : targets_) {
    if (state.final_until < floor) {
      LogWarning("platform_metrics_periods_skipped",
                 {{"region", state.target.region},
                  {"target", state.target.target},
                  {"from", absl::FormatTime(state.final_until)},
                  {"to", absl::FormatTime(floor)}});
      state.final_until = floor;
      EraseBefore(&state.reported, floor);
    }
    window_start = std::min(window_start, state.final_until);
    targets.push_back(state.target);
  }
  if (window_start >= closed_end) return out;

  absl::StatusOr<MetricDataResult> result = client_->GetMetricData(
      targets, options_.metrics, window_start, closed_end, options_.period);
  if (!result.ok()) return result.status();

  for (const v1::PlatformMetricSample& s : result->samples) {
    auto it = targets_.find(
        TargetKey{s.region(), s.target(), static_cast<int>(s.mode())});
    if (it == targets_.end()) continue;
    TargetState& state = it->second;
    size_t m = 0;
    while (m < options_.metrics.size() &&
           (options_.metrics[m].name != s.metric() ||
            options_.metrics[m].stat != s.stat())) {
      ++m;
    }
    if (m == options_.metrics.size()) continue;
    const absl::Time start = PeriodStart(TimeFromProto(s.period_start()));
    if (start < state.final_until || start >= closed_end) continue;
    auto [slot, inserted] =
        state.reported.emplace(std::make_pair(m, start), s.value());
    if (!inserted && slot->second == s.value()) continue;
    slot->second = s.value();
    out.push_back(s);
  }

  // Finalise periods past the ingestion delay, unless the read was partial.
  if (!result->complete) {
    LogWarning("platform_metrics_partial_read",
               {{"window_start", absl::FormatTime(window_start)},
                {"window_end", absl::FormatTime(closed_end)}});
    return out;
  }
  for (auto& [key, state] : targets_) {
    for (absl::Time t = state.final_until; t < final_boundary;
         t += options_.period) {
      for (size_t m = 0; m < options_.metrics.size(); ++m) {
        if (zero_fill_[m] && !state.reported.count({m, t})) {
          out.push_back(MakePlatformSample(state.target, options_.metrics[m], t,
                                           options_.period, 0));
        }
      }
    }
    if (final_boundary > state.final_until) {
      state.final_until = final_boundary;
      EraseBefore(&state.reported, final_boundary);
    }
  }
  return out;
}

}  // namespace platform
}  // namespace fleetcanary
