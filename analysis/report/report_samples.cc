// The sample probes of an incident report (report_build_steps.h).
#include <algorithm>
#include <array>
#include <vector>

#include "analysis/report/report_build_steps.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"

namespace fleetcanary::report::internal {
namespace {

bool InPhantom(const PhantomSpans& phantom_at, const v1::Outcome& o,
               absl::Time t) {
  auto it = phantom_at.find({o.region(), o.mode()});
  if (it == phantom_at.end()) return false;
  for (const auto& [s, e] : it->second) {
    if (t >= s && t < e) return true;
  }
  return false;
}

v1::SampleProbe SampleOf(const v1::Outcome& o, v1::ReportPeriod period,
                         bool phantom) {
  v1::SampleProbe s;
  s.set_platform_request_id(o.platform_request_id());
  s.set_trace_id(o.trace_id());
  s.set_region(o.region());
  s.set_mode(o.mode());
  s.set_size_bytes(o.requested_bytes());
  *s.mutable_start_time() = o.start_time();
  s.set_outcome_class(o.outcome_class());
  s.set_status(o.status());
  s.set_detail(o.detail());
  s.set_seed(o.seed());
  s.set_agent_id(o.agent_id());
  s.set_period(period);
  s.set_in_phantom_period(phantom);
  return s;
}

// Evenly spaced picks, in time order, so samples cover the whole episode.
// Returns how many were taken.
size_t Pick(std::vector<v1::SampleProbe>* from, size_t quota,
            google::protobuf::RepeatedPtrField<v1::SampleProbe>* to) {
  std::stable_sort(
      from->begin(), from->end(), [](const auto& a, const auto& b) {
        return TimeFromProto(a.start_time()) < TimeFromProto(b.start_time());
      });
  const size_t n = from->size();
  const size_t take = std::min(n, quota);
  for (size_t i = 0; i < take; ++i) {
    *to->Add() = (*from)[take == n ? i : i * n / take];
  }
  return take;
}

}  // namespace

void AddSamples(const ReportData& data, const Scope& scope, const Boundaries& b,
                const PhantomSpans& phantom_at, v1::IncidentReport* r) {
  // Failures in phantom periods, DURING, and the rest.
  std::array<std::vector<v1::SampleProbe>, 3> failing;
  std::vector<v1::SampleProbe> phantom_samples;
  uint64_t stored = 0;
  for (const v1::Outcome& o : data.outcomes) {
    if (!o.adhoc_id().empty() || o.target() != scope.options.target ||
        !scope.RegionOk(o.region())) {
      continue;
    }
    const absl::Time t = TimeFromProto(o.start_time());
    if (!scope.InWindow(t)) continue;
    const bool failed = analysis::IsStreamHealthFailure(o.outcome_class());
    const bool phantom = InPhantom(phantom_at, o, t);
    if (!failed && !phantom) continue;
    v1::SampleProbe s = SampleOf(o, b.Of(t), phantom);
    if (phantom) phantom_samples.push_back(s);
    if (failed) {
      ++stored;
      const int group = phantom                                  ? 0
                        : s.period() == v1::REPORT_PERIOD_DURING ? 1
                                                                 : 2;
      failing[group].push_back(std::move(s));
    }
  }
  r->set_failures_stored(stored);
  size_t quota = scope.options.max_samples;
  for (auto& group : failing)
    quota -= Pick(&group, quota, r->mutable_failing_samples());
  Pick(&phantom_samples, scope.options.max_samples,
       r->mutable_phantom_samples());
}

}  // namespace fleetcanary::report::internal
