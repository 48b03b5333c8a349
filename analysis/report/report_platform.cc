// Platform vs client reconciliation and the chart series of an incident
// report (report_build_steps.h).
#include <algorithm>
#include <array>

#include "analysis/report/report_build_steps.h"
#include "common/proto/time_convert.h"

namespace fleetcanary::report::internal {
namespace {

constexpr size_t kMaxPhantomPeriods = 500;

// Platform counts from one first minute up to end_minute.
struct Bucket {
  int64_t end_minute = 0;  // Exclusive.
  double errors = 0, invocations = 0;
};
using Buckets = std::map<ModeKey, std::map<int64_t, Bucket>>;

// Platform periods of the target, per region x mode, at the store's minute
// resolution: a period shorter than a minute joins the bucket of the minute
// it starts in, a longer one spans the minutes it covers.
Buckets PlatformBuckets(const ReportData& data, const Scope& scope) {
  Buckets platform;
  for (const v1::PlatformMetricSample& s : data.platform_samples) {
    if (s.target() != scope.options.target || !scope.RegionOk(s.region())) {
      continue;
    }
    if (!s.stat().empty() && s.stat() != "Sum") continue;
    const absl::Time start = TimeFromProto(s.period_start());
    if (!scope.InWindow(start)) continue;
    absl::Duration length = absl::Minutes(1);
    if (s.has_period() &&
        DurationFromProto(s.period()) > absl::ZeroDuration()) {
      length = DurationFromProto(s.period());
    }
    const int64_t first = analysis::MinuteOf(start);
    const int64_t end =
        std::max(first + 1,
                 analysis::MinuteOf(start + length - absl::Nanoseconds(1)) + 1);
    Bucket& p = platform[{s.region(), s.mode()}][first];
    p.end_minute = std::max(p.end_minute, end);
    if (s.metric() == "Errors") p.errors += s.value();
    if (s.metric() == "Invocations") p.invocations += s.value();
  }
  return platform;
}

// One bucket reconciled with the client minutes it covers.
struct Reconciled {
  absl::Time start, end;
  uint64_t visible = 0, probes = 0;
  double phantom = 0;
};

Reconciled Reconcile(int64_t first, const Bucket& p,
                     const std::map<int64_t, ClientMinute>& cm) {
  Reconciled out;
  out.start = absl::FromUnixSeconds(first * 60);
  out.end = absl::FromUnixSeconds(p.end_minute * 60);
  for (auto it = cm.lower_bound(first);
       it != cm.end() && it->first < p.end_minute; ++it) {
    out.visible += it->second.visible;
    out.probes += it->second.trials;
  }
  out.phantom = std::max(0.0, p.errors - static_cast<double>(out.visible));
  return out;
}

void AddTo(const Bucket& p, const Reconciled& c, v1::ReportPlatformCounts* s) {
  s->set_platform_errors(s->platform_errors() + p.errors);
  s->set_platform_invocations(s->platform_invocations() + p.invocations);
  s->set_client_visible_failures(s->client_visible_failures() + c.visible);
  s->set_client_probes(s->client_probes() + c.probes);
  s->set_phantom_errors(s->phantom_errors() + c.phantom);
}

void AddPhantomPeriod(const ModeKey& mk, const Bucket& p, const Reconciled& c,
                      v1::IncidentReport* r) {
  if (static_cast<size_t>(r->phantom_periods_size()) >= kMaxPhantomPeriods) {
    return;
  }
  v1::PhantomPeriod* pp = r->add_phantom_periods();
  pp->set_region(mk.first);
  pp->set_mode(static_cast<v1::InvokeMode>(mk.second));
  *pp->mutable_period_start() = TimeToProto(c.start);
  *pp->mutable_period() = DurationToProto(c.end - c.start);
  pp->set_platform_errors(p.errors);
  pp->set_client_visible_failures(c.visible);
  pp->set_phantom_errors(c.phantom);
}

void AddPlatformRow(const ModeKey& mk,
                    std::array<v1::ReportPlatformCounts, 4>& sums,
                    v1::IncidentReport* r) {
  v1::ReportPlatform* out = r->add_platform();
  out->set_region(mk.first);
  out->set_mode(static_cast<v1::InvokeMode>(mk.second));
  for (auto& s : sums) {
    s.set_phantom_rate(s.platform_invocations() > 0
                           ? s.phantom_errors() / s.platform_invocations()
                           : 0);
    *out->add_periods() = std::move(s);
  }
}

}  // namespace

PhantomSpans AddPlatform(const ReportData& data, const Scope& scope,
                         const Boundaries& b, ClientMinutes* client,
                         PlatformMinutes* per_minute, v1::IncidentReport* r) {
  PhantomSpans phantom_at;
  for (const auto& [mk, buckets] : PlatformBuckets(data, scope)) {
    std::array<v1::ReportPlatformCounts, 4> sums;
    for (v1::ReportPeriod p : kPeriods) sums[PeriodIndex(p)].set_period(p);
    const auto& cm = (*client)[mk];
    for (const auto& [first, p] : buckets) {
      const Reconciled c = Reconcile(first, p, cm);
      auto& pm = (*per_minute)[mk][first];
      pm.first += p.errors;
      pm.second += p.invocations;
      for (v1::ReportPeriod per :
           {v1::REPORT_PERIOD_WHOLE, b.OfSpan(c.start, c.end)}) {
        AddTo(p, c, &sums[PeriodIndex(per)]);
      }
      if (c.phantom > 0) {
        phantom_at[mk].emplace_back(c.start, c.end);
        AddPhantomPeriod(mk, p, c, r);
      }
    }
    AddPlatformRow(mk, sums, r);
  }
  return phantom_at;
}

void AddSeries(const ClientMinutes& client, const PlatformMinutes& per_minute,
               v1::IncidentReport* r) {
  for (const auto& [mk, minutes] : client) {
    v1::ReportSeries* s = r->add_series();
    s->set_region(mk.first);
    s->set_mode(static_cast<v1::InvokeMode>(mk.second));
    auto found = per_minute.find(mk);
    const auto* pm = found != per_minute.end() ? &found->second : nullptr;
    for (const auto& [minute, c] : minutes) {
      v1::ReportSeries::Point* p = s->add_points();
      *p->mutable_minute() = TimeToProto(absl::FromUnixSeconds(minute * 60));
      p->set_trials(c.trials);
      p->set_failures(c.failures);
      p->set_visible_failures(c.visible);
      if (pm == nullptr) continue;
      auto it = pm->find(minute);
      if (it != pm->end()) {
        p->set_platform_errors(it->second.first);
        p->set_platform_invocations(it->second.second);
      }
    }
  }
}

}  // namespace fleetcanary::report::internal
