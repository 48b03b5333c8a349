#include "analysis/detectors/common.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/statusor.h"
#include "analysis/changepoint.h"
#include "analysis/verdict_engine.h"

namespace fleetcanary::analysis::detectors {

Key MakeKey(const v1::StreamKey& k) {
  return {k.region(), k.target(), static_cast<int>(k.mode()), k.size_class()};
}

v1::StreamKey ToStreamKey(const Key& k) {
  v1::StreamKey out;
  out.set_region(std::get<0>(k));
  out.set_target(std::get<1>(k));
  out.set_mode(static_cast<v1::InvokeMode>(std::get<2>(k)));
  out.set_size_class(std::get<3>(k));
  return out;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t ns = absl::ToUnixNanos(t);
  int64_t secs = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --secs;
  }
  out.set_seconds(secs);
  out.set_nanos(static_cast<int32_t>(nanos));
  return out;
}

bool IsFinite(absl::Time t) {
  return t != absl::InfinitePast() && t != absl::InfiniteFuture();
}

absl::Time FloorTo(absl::Time t, absl::Duration d) {
  return absl::UnixEpoch() + absl::Floor(t - absl::UnixEpoch(), d);
}

void SetClasses(v1::Evidence* ev, bool platform) {
  for (int c = 0; c < v1::OutcomeClass_ARRAYSIZE; ++c) {
    const auto oc = static_cast<v1::OutcomeClass>(c);
    if (platform ? IsPlatformVisibleFailure(oc) : IsStreamHealthFailure(oc)) {
      ev->add_classes(oc);
    }
  }
}

void SetObservedRate(uint64_t trials, uint64_t failures,
                     const RateInterval& interval, double confidence,
                     v1::Evidence* ev) {
  ev->set_trials(trials);
  ev->set_failures(failures);
  ev->set_rate(trials > 0
                   ? static_cast<double>(failures) / static_cast<double>(trials)
                   : 0);
  ev->mutable_rate_interval()->set_lower(interval.lower);
  ev->mutable_rate_interval()->set_upper(interval.upper);
  ev->mutable_rate_interval()->set_confidence(confidence);
}

double BaselineRate(const v1::DetectionConfig& cfg, uint64_t k, uint64_t n) {
  const double w = cfg.p0_prior_weight();
  const double mean = (cfg.p0_prior() * w + static_cast<double>(k)) /
                      (w + static_cast<double>(n));
  return std::max(cfg.p0_floor(), std::isfinite(mean) ? mean : 0.0);
}

void AppendBin(std::vector<TimedBin>* bins, absl::Time t, uint64_t n,
               uint64_t k, size_t cap) {
  bins->push_back({t, n, k});
  if (bins->size() < cap) return;
  std::vector<TimedBin> merged;
  merged.reserve(cap / 2 + 1);
  for (size_t i = 0; i + 1 < bins->size(); i += 2) {
    merged.push_back({(*bins)[i + 1].time,
                      (*bins)[i].trials + (*bins)[i + 1].trials,
                      (*bins)[i].failures + (*bins)[i + 1].failures});
  }
  if (bins->size() % 2 == 1) merged.push_back(bins->back());
  *bins = std::move(merged);
}

void DateInto(const std::vector<TimedBin>& bins, double confidence,
              v1::Evidence* ev) {
  if (bins.size() < 2) return;
  std::vector<CountBin> counts;
  counts.reserve(bins.size());
  for (const TimedBin& b : bins) counts.push_back({b.trials, b.failures});
  absl::StatusOr<ChangePointEstimate> cp =
      DateSingleChangePoint(counts, confidence);
  if (!cp.ok()) return;
  // Split s puts the change after bin s-1 and at or before bin s. A bin
  // covers (previous bin's time, its time] and may hold several probes (one
  // batch, or merged bins), so the change may lie anywhere inside bin s-1 as
  // well: the split set [lo, hi] spans from the start of bin lo-1 to the end
  // of bin hi in time - never zero width, and exactly the bins' periods when
  // the data pin the change to one split.
  *ev->mutable_change_time() = ToProto(bins[cp->split - 1].time);
  v1::TimeInterval* iv = ev->mutable_change_interval();
  const size_t lo = cp->interval_lower - 1;
  *iv->mutable_lower() = ToProto(bins[lo > 0 ? lo - 1 : 0].time);
  *iv->mutable_upper() = ToProto(bins[cp->interval_upper].time);
  iv->set_confidence(confidence);
}

}  // namespace fleetcanary::analysis::detectors
