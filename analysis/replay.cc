#include "analysis/replay.h"

#include <algorithm>
#include <cmath>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"

namespace fleetcanary::analysis {

uint64_t VisibleFailures(uint64_t client_failures, double url_5xx) {
  if (!(url_5xx >= 0)) return client_failures;
  return std::max<uint64_t>(client_failures,
                            static_cast<uint64_t>(std::llround(url_5xx)));
}

uint64_t PhantomErrors(double platform_errors, double platform_invocations,
                       uint64_t visible_failures) {
  if (!(platform_errors > 0) || !(platform_invocations > 0)) return 0;
  const uint64_t inv =
      static_cast<uint64_t>(std::llround(platform_invocations));
  const uint64_t err = static_cast<uint64_t>(std::llround(platform_errors));
  return std::min(inv, err > visible_failures ? err - visible_failures : 0);
}

PlatformMetric ClassifyPlatformSample(const v1::PlatformMetricSample& s) {
  if (!s.stat().empty() && s.stat() != "Sum") return PlatformMetric::kOther;
  if (s.metric() == "Errors") return PlatformMetric::kErrors;
  if (s.metric() == "Invocations") return PlatformMetric::kInvocations;
  if (s.metric() == "UrlRequestCount") return PlatformMetric::kUrlRequests;
  if (s.metric() == "Url4xxCount") return PlatformMetric::kUrl4xx;
  if (s.metric() == "Url5xxCount") return PlatformMetric::kUrl5xx;
  return PlatformMetric::kOther;
}

void RecordReading(PlatformPeriod* p, PlatformMetric metric, double value) {
  double* slot = nullptr;
  switch (metric) {
    case PlatformMetric::kErrors:
      slot = &p->errors;
      break;
    case PlatformMetric::kInvocations:
      slot = &p->invocations;
      break;
    case PlatformMetric::kUrlRequests:
      slot = &p->url_requests;
      break;
    case PlatformMetric::kUrl4xx:
      slot = &p->url_4xx;
      break;
    case PlatformMetric::kUrl5xx:
      slot = &p->url_5xx;
      break;
    case PlatformMetric::kOther:
      return;
  }
  *slot = std::max(*slot, value);
}

absl::Status ValidatePlatformSample(const v1::PlatformMetricSample& s) {
  if (s.mode() != v1::BUFFERED && s.mode() != v1::RESPONSE_STREAM) {
    return absl::InvalidArgumentError(
        "platform_sample.mode must be BUFFERED or RESPONSE_STREAM");
  }
  if (s.region().empty()) {
    return absl::InvalidArgumentError("platform_sample.region is empty");
  }
  if (s.target().empty()) {
    return absl::InvalidArgumentError("platform_sample.target is empty");
  }
  if (!s.has_period_start()) {
    return absl::InvalidArgumentError(
        "platform_sample.period_start is missing");
  }
  if (!std::isfinite(s.value()) || s.value() < 0) {
    return absl::InvalidArgumentError(
        "platform_sample.value must be a finite value >= 0");
  }
  if (DurationFromProto(s.period()) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("platform_sample.period must be > 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PlatformPeriodTable::AddSample(
    const v1::PlatformMetricSample& s) {
  if (absl::Status st = ValidatePlatformSample(s); !st.ok()) return st;
  const PlatformMetric metric = ClassifyPlatformSample(s);
  if (metric == PlatformMetric::kOther) return false;
  const absl::Time start = TimeFromProto(s.period_start());
  const absl::Duration length = DurationFromProto(s.period());
  auto& by_start = periods_[Key{s.region(), s.target(), s.mode()}];
  auto [it, inserted] = by_start.try_emplace(start);
  PlatformPeriod& p = it->second;
  if (inserted) {
    p.region = s.region();
    p.target = s.target();
    p.mode = s.mode();
    p.start = start;
    p.length = length;
  } else if (p.length != length) {
    return absl::InvalidArgumentError(
        absl::StrCat("platform_sample.period ", absl::FormatDuration(length),
                     " differs from an earlier datapoint of the same period (",
                     absl::FormatDuration(p.length), ")"));
  }
  RecordReading(&p, metric, s.value());  // Never summed.
  return true;
}

void PlatformPeriodTable::AddOutcome(const std::string& region,
                                     const std::string& target,
                                     v1::InvokeMode mode, absl::Time start,
                                     v1::OutcomeClass cls) {
  if (!IsTrial(cls)) return;
  AddClientCounts(region, target, mode, start, 1,
                  IsPlatformVisibleFailure(cls) ? 1 : 0);
}

void PlatformPeriodTable::AddClientCounts(const std::string& region,
                                          const std::string& target,
                                          v1::InvokeMode mode, absl::Time time,
                                          uint64_t trials, uint64_t failures) {
  auto k = periods_.find(Key{region, target, mode});
  if (k == periods_.end()) return;
  auto it = k->second.upper_bound(time);
  if (it == k->second.begin()) return;
  --it;
  PlatformPeriod& p = it->second;
  if (time >= p.start + p.length) return;
  p.client_probes += trials;
  p.client_failures += std::min(failures, trials);
}

std::vector<PlatformPeriod> PlatformPeriodTable::CompletePeriods() const {
  std::vector<PlatformPeriod> out;
  for (const auto& [key, by_start] : periods_) {
    for (const auto& [start, p] : by_start) {
      if (p.complete()) out.push_back(p);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PlatformPeriod& a, const PlatformPeriod& b) {
                     return std::make_tuple(a.start + a.length, a.region,
                                            a.target,
                                            static_cast<int>(a.mode)) <
                            std::make_tuple(b.start + b.length, b.region,
                                            b.target, static_cast<int>(b.mode));
                   });
  return out;
}

uint64_t PlatformPeriodTable::incomplete_periods() const {
  uint64_t n = 0;
  for (const auto& [key, by_start] : periods_) {
    for (const auto& [start, p] : by_start) {
      if (!p.complete()) ++n;
    }
  }
  return n;
}

}  // namespace fleetcanary::analysis
