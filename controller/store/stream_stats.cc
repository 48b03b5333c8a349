#include <algorithm>
#include <tuple>

#include "absl/time/time.h"
#include "controller/store/store.h"

namespace fleetcanary {
namespace controller {
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
