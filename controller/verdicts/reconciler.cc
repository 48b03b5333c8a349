#include "controller/verdicts/reconciler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "analysis/replay.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace controller {
namespace {

bool ValidMode(v1::InvokeMode m) {
  return m == v1::BUFFERED || m == v1::RESPONSE_STREAM;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reconciler>> Reconciler::Create(
    const ReconcilerOptions& options) {
  if (options.period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("metrics_period: must be > 0");
  }
  if (options.settle < absl::ZeroDuration() ||
      options.max_wait < options.settle) {
    return absl::InvalidArgumentError(
        "reconciliation: settle must be >= 0 and max_wait >= settle");
  }
  return std::unique_ptr<Reconciler>(new Reconciler(options));
}

absl::Time Reconciler::PeriodStart(absl::Time t) const {
  return absl::UnixEpoch() +
         absl::Floor(t - absl::UnixEpoch(), options_.period);
}

Reconciler::Open* Reconciler::Find(const ModeKey& key,
                                   absl::Time period_start) {
  KeyState& ks = keys_[key];
  if (period_start < ks.decided_until) return nullptr;
  auto [it, inserted] = ks.open.try_emplace(period_start);
  if (inserted) {
    ++open_count_;
    EnforceBound();
    // EnforceBound may have decided (given up) this very period.
    auto again = keys_[key].open.find(period_start);
    return again == keys_[key].open.end() ? nullptr : &again->second;
  }
  return &it->second;
}

void Reconciler::EnforceBound() {
  while (open_count_ > options_.max_open_periods) {
    // Give up the oldest open period of any key.
    KeyState* oldest = nullptr;
    for (auto& [k, ks] : keys_) {
      if (ks.open.empty()) continue;
      if (oldest == nullptr ||
          ks.open.begin()->first < oldest->open.begin()->first) {
        oldest = &ks;
      }
    }
    if (oldest == nullptr) return;
    auto first = oldest->open.begin();
    oldest->decided_until = first->first + options_.period;
    oldest->open.erase(first);
    --open_count_;
    ++stats_.periods_missing;
  }
}

void Reconciler::AddOutcome(const v1::Outcome& o) {
  if (o.region().empty() || o.target().empty() || !ValidMode(o.mode()) ||
      !o.has_start_time()) {
    return;
  }
  if (!analysis::IsTrial(o.outcome_class())) return;
  const absl::Time start = PeriodStart(TimeFromProto(o.start_time()));
  if (start < options_.not_before) {
    ++stats_.before_start;
    return;
  }
  Open* p = Find({o.region(), o.target(), o.mode()}, start);
  if (p == nullptr) {
    ++stats_.late_outcomes;
    return;
  }
  ++p->platform.client_probes;
  if (analysis::IsPlatformVisibleFailure(o.outcome_class())) {
    ++p->platform.client_failures;
  }
  if (o.adhoc_id().empty()) {
    ++p->by_size[o.requested_bytes()];
  } else {
    ++p->adhoc_probes;
  }
}

void Reconciler::AddSample(const v1::PlatformMetricSample& s) {
  const analysis::PlatformMetric metric = analysis::ClassifyPlatformSample(s);
  if (metric == analysis::PlatformMetric::kOther || s.region().empty() ||
      s.target().empty() || !ValidMode(s.mode()) || !s.has_period_start() ||
      !std::isfinite(s.value()) || s.value() < 0 ||
      (s.has_period() && DurationFromProto(s.period()) != options_.period)) {
    ++stats_.ignored_samples;
    return;
  }
  const absl::Time t = TimeFromProto(s.period_start());
  if (PeriodStart(t) != t) {  // Not aligned to our period.
    ++stats_.ignored_samples;
    return;
  }
  if (t < options_.not_before) {
    ++stats_.before_start;
    return;
  }
  Open* p = Find({s.region(), s.target(), s.mode()}, t);
  if (p == nullptr) {
    ++stats_.late_samples;
    return;
  }
  analysis::RecordReading(&p->platform, metric, s.value());
}

std::vector<ReconciledPeriod> Reconciler::Advance(absl::Time watermark) {
  std::vector<ReconciledPeriod> out;
  for (auto& [key, ks] : keys_) {
    while (!ks.open.empty()) {
      auto it = ks.open.begin();
      const absl::Time end = it->first + options_.period;
      const Open& open = it->second;
      const analysis::PlatformPeriod& p = open.platform;
      if (p.complete() && watermark >= end + options_.settle) {
        ReconciledPeriod r;
        r.region = std::get<0>(key);
        r.target = std::get<1>(key);
        r.mode = static_cast<v1::InvokeMode>(std::get<2>(key));
        r.period_start = it->first;
        r.platform_errors = p.errors;
        r.platform_invocations = p.invocations;
        r.platform_url_requests = p.url_requests;
        r.platform_url_4xx = p.url_4xx;
        r.platform_url_5xx = p.url_5xx;
        r.client_probes = p.client_probes;
        r.client_failures = p.client_failures;
        r.adhoc_probes = open.adhoc_probes;
        r.scheduled_probes_by_size = open.by_size;
        r.phantom_errors = p.phantom();
        if (p.url_requests >= 0) {
          const uint64_t requests =
              static_cast<uint64_t>(std::llround(p.url_requests));
          r.unattributed_requests =
              requests > p.client_probes ? requests - p.client_probes : 0;
        }
        out.push_back(std::move(r));
        ++stats_.periods_reconciled;
      } else if (watermark >= end + options_.max_wait) {
        ++stats_.periods_missing;
      } else {
        break;  // Later periods of this key wait behind this one.
      }
      ks.decided_until = end;
      ks.open.erase(it);
      --open_count_;
    }
  }
  return out;
}

ReconcilerStats Reconciler::stats() const {
  ReconcilerStats s = stats_;
  s.open_periods = open_count_;
  return s;
}

}  // namespace controller
}  // namespace fleetcanary
