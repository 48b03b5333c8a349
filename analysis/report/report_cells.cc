// The region x mode x size cells of an incident report (report_build_steps.h)
// and HistogramQuantile (report_builder.h).
#include <cmath>
#include <tuple>

#include "analysis/intervals.h"
#include "analysis/report/report_build_steps.h"
#include "analysis/verdict_engine.h"
#include "common/units/units.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary::report {
namespace internal {
namespace {

using analysis::kNumOutcomeClasses;
using analysis::StreamMinute;
using analysis::StreamStats;
using google::protobuf::util::TimeUtil;

google::protobuf::Duration SecondsToProto(double s) {
  return TimeUtil::NanosecondsToDuration(
      static_cast<int64_t>(std::llround(s * 1e9)));
}

void FillCounts(const StreamStats& s, v1::ReportCounts* out) {
  out->set_probes(s.probes());
  uint64_t trials = 0, failures = 0;
  for (int c = 0; c < kNumOutcomeClasses; ++c) {
    const uint64_t n = s.counts[c];
    if (n == 0) continue;
    const auto cls = static_cast<v1::OutcomeClass>(c);
    (*out->mutable_by_class())[v1::OutcomeClass_Name(cls)] = n;
    if (analysis::IsTrial(cls)) trials += n;
    if (analysis::IsStreamHealthFailure(cls)) failures += n;
  }
  out->set_trials(trials);
  out->set_failures(failures);
  out->set_error_rate(trials > 0 ? static_cast<double>(failures) / trials : 0);
  const analysis::RateInterval ci =
      analysis::WilsonInterval(failures, trials, kConfidence);
  // Wilson's lower limit is 0 exactly without failures (not rounding noise).
  out->mutable_error_rate_interval()->set_lower(failures == 0 ? 0 : ci.lower);
  out->mutable_error_rate_interval()->set_upper(ci.upper);
  out->mutable_error_rate_interval()->set_confidence(kConfidence);
  const uint64_t n = s.ttfb.count();
  out->set_ttfb_count(n);
  if (n > 0) {
    *out->mutable_ttfb_p50() = SecondsToProto(HistogramQuantile(s.ttfb, 0.5));
    *out->mutable_ttfb_p99() = SecondsToProto(HistogramQuantile(s.ttfb, 0.99));
  }
}

// (region, mode, size bytes).
using CellKey = std::tuple<std::string, int, uint64_t>;
using CellStats = std::map<CellKey, std::array<StreamStats, 4>>;

void AddToClient(const StreamStats& stats, ClientMinute* c) {
  for (int cls = 0; cls < kNumOutcomeClasses; ++cls) {
    const uint64_t n = stats.counts[cls];
    const auto oc = static_cast<v1::OutcomeClass>(cls);
    if (analysis::IsTrial(oc)) c->trials += n;
    if (analysis::IsStreamHealthFailure(oc)) c->failures += n;
    if (analysis::IsPlatformVisibleFailure(oc)) c->visible += n;
  }
}

void AddCell(const CellKey& key, const std::array<StreamStats, 4>& stats,
             const std::map<Identity, v1::VerdictState>& stream_state,
             const std::string& target, v1::IncidentReport* r) {
  v1::ReportCell* cell = r->add_cells();
  cell->set_region(std::get<0>(key));
  cell->set_mode(static_cast<v1::InvokeMode>(std::get<1>(key)));
  cell->set_size_bytes(std::get<2>(key));
  cell->set_size_class(FormatBytes(std::get<2>(key)));
  auto st =
      stream_state.find(Identity{v1::STREAM_HEALTH, cell->region(), target,
                                 cell->mode(), cell->size_class()});
  if (st != stream_state.end()) cell->set_state(st->second);
  for (v1::ReportPeriod p : kPeriods) {
    v1::ReportCounts* c = cell->add_periods();
    c->set_period(p);
    FillCounts(stats[PeriodIndex(p)], c);
    if (p == v1::REPORT_PERIOD_WHOLE)
      r->set_failures(r->failures() + c->failures());
  }
}

}  // namespace

ClientMinutes AddCells(const std::vector<const StreamMinute*>& minutes,
                       const Boundaries& b, const std::string& target,
                       v1::IncidentReport* r) {
  CellStats cells;
  ClientMinutes client;
  for (const StreamMinute* m : minutes) {
    const absl::Time start = absl::FromUnixSeconds(m->minute * 60);
    const v1::ReportPeriod p = b.OfSpan(start, start + absl::Minutes(1));
    auto& stats = cells[CellKey{m->key.region, m->key.mode, m->key.size_bytes}];
    stats[PeriodIndex(v1::REPORT_PERIOD_WHOLE)].Merge(m->stats);
    stats[PeriodIndex(p)].Merge(m->stats);
    AddToClient(m->stats, &client[{m->key.region, m->key.mode}][m->minute]);
    r->set_probes(r->probes() + m->stats.probes());
  }
  std::map<Identity, v1::VerdictState> stream_state;
  for (const v1::Verdict& v : r->analysis().verdicts()) {
    if (v.kind() == v1::STREAM_HEALTH) stream_state[IdentityOf(v)] = v.state();
  }
  for (const auto& [key, stats] : cells) {
    AddCell(key, stats, stream_state, target, r);
  }
  return client;
}

}  // namespace internal

double HistogramQuantile(const analysis::LatencyHistogram& h, double q) {
  const uint64_t n = h.count();
  if (n == 0) return 0;
  const double rank = q * static_cast<double>(n);
  double seen = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    const double in_bucket = static_cast<double>(h.buckets[i]);
    if (in_bucket > 0 && seen + in_bucket >= rank) {
      const double lower = i == 0 ? 0 : analysis::kLatencyBucketBounds[i - 1];
      if (i >= analysis::kLatencyBucketBounds.size()) return lower;
      const double upper = analysis::kLatencyBucketBounds[i];
      return lower + (upper - lower) * (rank - seen) / in_bucket;
    }
    seen += in_bucket;
  }
  return analysis::kLatencyBucketBounds.back();
}

}  // namespace fleetcanary::report
