#include "analysis/report/report_builder.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "analysis/intervals.h"
#include "analysis/offline.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary::report {
namespace {

using analysis::kNumOutcomeClasses;
using analysis::LatencyHistogram;
using analysis::StreamMinute;
using analysis::StreamStats;
using google::protobuf::util::TimeUtil;

constexpr double kConfidence = 0.95;
constexpr size_t kMaxPhantomPeriods = 500;

google::protobuf::Duration SecondsToProto(double s) {
  return TimeUtil::NanosecondsToDuration(
      static_cast<int64_t>(std::llround(s * 1e9)));
}

constexpr std::array<v1::ReportPeriod, 4> kPeriods = {
    v1::REPORT_PERIOD_WHOLE, v1::REPORT_PERIOD_BEFORE, v1::REPORT_PERIOD_DURING,
    v1::REPORT_PERIOD_AFTER};
int PeriodIndex(v1::ReportPeriod p) { return static_cast<int>(p) - 1; }

// Where the window's periods start and end.
struct Boundaries {
  absl::Time onset = absl::InfiniteFuture();
  absl::Time fix = absl::InfiniteFuture();
  v1::ReportPeriod Of(absl::Time t) const {
    if (t < onset) return v1::REPORT_PERIOD_BEFORE;
    if (t < fix) return v1::REPORT_PERIOD_DURING;
    return v1::REPORT_PERIOD_AFTER;
  }
  // A span [start, end) is BEFORE when it ends by the onset, AFTER when it
  // starts at or after the fix, DURING otherwise.
  v1::ReportPeriod OfSpan(absl::Time start, absl::Time end) const {
    if (end <= onset) return v1::REPORT_PERIOD_BEFORE;
    if (start >= fix) return v1::REPORT_PERIOD_AFTER;
    return v1::REPORT_PERIOD_DURING;
  }
};

int Severity(v1::VerdictState s) {
  switch (s) {
    case v1::REGRESSION:
      return 4;
    case v1::RECOVERING:
      return 3;
    case v1::FIX_CONFIRMED:
      return 2;
    case v1::SUSPECT:
      return 1;
    default:
      return 0;
  }
}

// Whether a verdict time is a real instant (an unset or overflowed estimate
// is not): after 1970 and inside the Timestamp range.
bool IsRealTime(const google::protobuf::Timestamp& t) {
  return t.seconds() > 0 && t.seconds() <= TimeUtil::kTimestampMaxSeconds;
}
bool IsRealInterval(const v1::TimeInterval& i) {
  return IsRealTime(i.lower()) && IsRealTime(i.upper());
}

using Identity = std::tuple<int, std::string, std::string, int, std::string>;
Identity IdentityOf(const v1::Verdict& v) {
  return {v.kind(), v.key().region(), v.key().target(), v.key().mode(),
          v.key().size_class()};
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

// The findings (verdict keys that left HEALTHY) of the filtered transitions.
std::vector<v1::ReportFinding> Findings(const v1::AnalysisReport& analysis,
                                        double fix_alpha) {
  std::map<Identity, v1::VerdictState> current;
  for (const v1::Verdict& v : analysis.verdicts()) {
    current[IdentityOf(v)] = v.state();
  }
  std::map<Identity, v1::ReportFinding> by_id;
  std::vector<Identity> order;
  for (const v1::Verdict& t : analysis.transitions()) {
    if (t.state() == v1::HEALTHY) continue;
    const Identity id = IdentityOf(t);
    auto [it, inserted] = by_id.try_emplace(id);
    v1::ReportFinding& f = it->second;
    if (inserted) {
      order.push_back(id);
      f.set_kind(t.kind());
      *f.mutable_key() = t.key();
      *f.mutable_first_seen() = t.since();
    }
    if (Severity(t.state()) > Severity(f.worst_state()) &&
        !(t.state() != v1::REGRESSION && f.worst_state() == v1::REGRESSION)) {
      f.set_worst_state(t.state());
    }
    if (t.state() == v1::REGRESSION) {
      // The first REGRESSION of the episode carries the onset estimate.
      if (!f.has_change_time()) {
        *f.mutable_evidence() = t.evidence();
        if (IsRealTime(t.evidence().change_time())) {
          *f.mutable_change_time() = t.evidence().change_time();
        } else {
          *f.mutable_change_time() = t.since();
        }
        if (IsRealInterval(t.evidence().change_interval())) {
          *f.mutable_change_interval() = t.evidence().change_interval();
        }
      }
    } else if (t.state() == v1::SUSPECT && f.worst_state() == v1::SUSPECT) {
      *f.mutable_evidence() = t.evidence();
    } else if (t.state() == v1::FIX_CONFIRMED) {
      v1::FixCertificate* c = f.mutable_fix();
      const v1::Evidence& e = t.evidence();
      if (IsRealTime(e.change_time())) {
        *c->mutable_change_time() = e.change_time();
      }
      if (IsRealInterval(e.change_interval())) {
        *c->mutable_change_interval() = e.change_interval();
      }
      if (e.has_confirmation_start()) {
        *c->mutable_confirmation_start() = e.confirmation_start();
      }
      c->set_probes(e.trials());
      c->set_failures(e.failures());
      c->set_confidence(1 - fix_alpha);
      c->set_likelihood_ratio(e.likelihood_ratio());
      c->set_proven_upper_bound(e.proven_upper_bound());
      *c->mutable_confirmed_at() = t.since();
    }
  }
  std::vector<v1::ReportFinding> out;
  for (const Identity& id : order) {
    v1::ReportFinding& f = by_id[id];
    auto cur = current.find(id);
    f.set_current_state(cur != current.end() ? cur->second : v1::HEALTHY);
    if (f.has_fix() && f.worst_state() == v1::REGRESSION) {
      f.mutable_fix()->set_baseline_rate(f.evidence().null_rate());
    }
    out.push_back(std::move(f));
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return TimeFromProto(a.first_seen()) < TimeFromProto(b.first_seen());
  });
  return out;
}

std::string MethodsParagraph(const v1::DetectionConfig& d) {
  return absl::StrFormat(
      "Each agent probes the canary function through its Function URLs on a "
      "fixed schedule, one stream per region x invoke mode x body size, and "
      "verifies every byte of every response against the canary contract. A "
      "probe fails when the platform failed the client (5xx, truncated, "
      "reset, stalled, timed out or corrupted body; 4xx, throttling and our "
      "own agent errors are not counted). Each stream is watched by a "
      "Bernoulli CUSUM whose in-control rate p0 is the upper 95 %% Wilson "
      "bound of its healthy baseline, floored at %g, tuned to detect %gx p0; "
      "thresholds share a budget of %g false alarm(s) per month across the "
      "fleet. Stream and buffered modes are compared with a sequential "
      "probability ratio test for a rate ratio of %g (alpha = beta = %g); the "
      "size trend is a Cochran-Armitage test over log2(body size) per %s "
      "window (alpha %g, Benjamini-Hochberg q = %g); phantom errors are "
      "platform Errors minus the failures clients saw in the same period. "
      "Change times are estimated by a change-point fit with an interval. A "
      "fix is confirmed by an any-time-valid test of p_bad = max(%g, 10 p0) "
      "against p_good = %s at level %g, which yields a proven upper bound on "
      "the error rate after the fix. Error rates in this report are "
      "failures / trials with 95 %% Wilson intervals; latency percentiles are "
      "interpolated in histogram buckets.",
      d.p0_floor(), d.p1_ratio(), d.false_alarms_per_month(), d.mode_rr1(),
      d.alpha(),
      absl::FormatDuration(absl::Seconds(d.trend_window().seconds())),
      d.trend_alpha(), d.trend_fdr_q(), d.fix_p_bad(),
      d.fix_p_good() > 0 ? absl::StrCat(d.fix_p_good()) : "p_bad / 100",
      d.fix_alpha());
}

void FillReproduction(const v1::IncidentReport& r,
                      const std::vector<v1::Target>& targets,
                      v1::Reproduction* out) {
  const v1::ReportPeriod focus =
      r.has_onset() ? v1::REPORT_PERIOD_DURING : v1::REPORT_PERIOD_WHOLE;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> by_size;  // fail, trials
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_region;
  for (const v1::ReportCell& c : r.cells()) {
    for (const v1::ReportCounts& p : c.periods()) {
      if (p.period() != focus) continue;
      by_size[c.size_bytes()].first += p.failures();
      by_size[c.size_bytes()].second += p.trials();
      by_region[c.region()].first += p.failures();
      by_region[c.region()].second += p.trials();
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> sizes;  // (failures, size)
  for (const auto& [size, n] : by_size) {
    if (n.first > 0) sizes.emplace_back(n.first, size);
  }
  std::stable_sort(
      sizes.begin(), sizes.end(),
      [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> size_text;
  for (const auto& [failures, size] : sizes) {
    out->add_failing_sizes(size);
    size_text.push_back(FormatBytes(size));
  }
  if (size_text.empty()) {
    for (const auto& [size, n] : by_size)
      size_text.push_back(FormatBytes(size));
  }
  const std::string size_list = absl::StrJoin(size_text, ",");
  const v1::Target* target = nullptr;
  for (const v1::Target& t : targets) {
    if (t.name() == r.target()) target = &t;
  }
  for (const auto& [region, n] : by_region) {
    if (n.first == 0 && !by_region.empty() && sizes.size() > 0) continue;
    // Enough probes to expect about 10 failures at the observed rate.
    const double rate =
        n.second > 0 ? static_cast<double>(n.first) / n.second : 0;
    const uint64_t count =
        rate > 0 ? std::clamp<uint64_t>(
                       static_cast<uint64_t>(std::ceil(10 / rate)), 100, 10000)
                 : 1000;
    std::string cmd = absl::StrCat("canaryctl probe --target ", r.target(),
                                   " --region ", region);
    std::string direct;
    if (target != nullptr) {
      for (const v1::RegionEndpoints& re : target->regions()) {
        if (re.region() != region) continue;
        direct = absl::StrCat("canaryctl probe --direct --region ", region);
        for (const v1::FunctionUrl& u : re.urls()) {
          absl::StrAppend(&direct,
                          u.mode() == v1::RESPONSE_STREAM ? " --url-stream "
                                                          : " --url-buffered ",
                          u.url());
        }
      }
    }
    const std::string tail = absl::StrCat(" --sizes ", size_list, " --count ",
                                          count, " --output json");
    out->add_commands(cmd + tail);
    if (!direct.empty()) out->add_commands(direct + tail);
  }
  out->set_request(
      "GET <function URL>canary?bytes=N&seed=S (streaming also chunk=C and "
      "gap_ms=G), header x-canary-probe-id: <id>; signed with SigV4 (service "
      "lambda) when the URL's AuthType is AWS_IAM.");
  out->set_expected_body(
      "Status 200 and exactly N bytes: bytes 8i..8i+7 are the little-endian "
      "SplitMix64(S + i) (mod 2^64), the last word cut at N. Headers "
      "x-canary-bytes: N, x-canary-seed: S, x-canary-mode: buffered|stream; "
      "BUFFERED answers with Content-Length, RESPONSE_STREAM chunked. A "
      "shorter body, a reset, a stall, a 5xx or a wrong byte is a platform "
      "failure.");
}

}  // namespace

double HistogramQuantile(const LatencyHistogram& h, double q) {
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

absl::StatusOr<v1::IncidentReport> BuildIncidentReport(
    const ReportData& data, const ReportOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("target: required");
  }
  if (!(options.from < options.to)) {
    return absl::InvalidArgumentError("from: must be before to");
  }
  absl::StatusOr<v1::DetectionConfig> detection =
      analysis::ResolveDetectionConfig(options.detection);
  if (!detection.ok()) return detection.status();
  const std::set<std::string> region_filter(options.regions.begin(),
                                            options.regions.end());
  auto region_ok = [&](const std::string& r) {
    return region_filter.empty() || region_filter.count(r) > 0;
  };
  const int64_t from_minute = options.from == absl::InfinitePast()
                                  ? INT64_MIN
                                  : analysis::MinuteOf(options.from);
  const int64_t to_minute =
      options.to == absl::InfiniteFuture()
          ? INT64_MAX
          : analysis::MinuteOf(options.to - absl::Nanoseconds(1)) + 1;

  v1::IncidentReport r;
  r.set_target(options.target);
  r.set_source(options.source);
  *r.mutable_generated_at() = TimeToProto(options.generated_at);
  *r.mutable_detection() = *detection;
  r.set_methods(MethodsParagraph(*detection));

  // Minutes of the target in the window, in time order.
  std::vector<const StreamMinute*> minutes;
  std::set<std::string> regions;
  for (const StreamMinute& m : data.minutes) {
    if (m.key.adhoc || m.key.target != options.target ||
        !region_ok(m.key.region) || m.minute < from_minute ||
        m.minute >= to_minute) {
      continue;
    }
    minutes.push_back(&m);
    regions.insert(m.key.region);
  }
  if (minutes.empty()) {
    return absl::NotFoundError(
        absl::StrCat("target: no scheduled probes of \"", options.target, "\"",
                     region_filter.empty() ? "" : " in the regions asked for",
                     " in the window"));
  }
  std::stable_sort(minutes.begin(), minutes.end(),
                   [](const StreamMinute* a, const StreamMinute* b) {
                     return a->minute < b->minute;
                   });
  for (const std::string& region : regions) r.add_regions(region);
  *r.mutable_from() =
      TimeToProto(options.from == absl::InfinitePast()
                      ? absl::FromUnixSeconds(minutes.front()->minute * 60)
                      : options.from);
  *r.mutable_to() =
      TimeToProto(options.to == absl::InfiniteFuture()
                      ? absl::FromUnixSeconds(minutes.back()->minute * 60 + 60)
                      : options.to);

  // Verdicts of the target and regions.
  v1::AnalysisReport* analysis = r.mutable_analysis();
  *analysis = data.analysis;
  analysis->clear_verdicts();
  analysis->clear_transitions();
  auto verdict_ok = [&](const v1::Verdict& v) {
    return v.key().target() == options.target &&
           (v.key().region().empty() || region_ok(v.key().region()));
  };
  for (const v1::Verdict& v : data.analysis.verdicts()) {
    if (verdict_ok(v)) *analysis->add_verdicts() = v;
  }
  for (const v1::Verdict& v : data.analysis.transitions()) {
    if (verdict_ok(v)) *analysis->add_transitions() = v;
  }

  // Findings and the period boundaries.
  Boundaries b;
  bool all_fixed = true, any_regression = false;
  absl::Time fix = absl::InfinitePast();
  for (v1::ReportFinding& f : Findings(*analysis, detection->fix_alpha())) {
    if (f.worst_state() == v1::REGRESSION) {
      any_regression = true;
      const absl::Time onset = TimeFromProto(f.change_time());
      if (onset < b.onset) {
        b.onset = onset;
        *r.mutable_onset() = f.change_time();
        if (f.has_change_interval()) {
          *r.mutable_onset_interval() = f.change_interval();
        } else {
          r.clear_onset_interval();
        }
      }
      if (f.has_fix()) {
        const absl::Time t = f.fix().has_change_time()
                                 ? TimeFromProto(f.fix().change_time())
                                 : TimeFromProto(f.fix().confirmed_at());
        if (t > fix) {
          fix = t;
          *r.mutable_fix_time() = TimeToProto(t);
          if (f.fix().has_change_interval()) {
            *r.mutable_fix_interval() = f.fix().change_interval();
          }
        }
      } else {
        all_fixed = false;
      }
    }
    *r.add_findings() = std::move(f);
  }
  if (any_regression && all_fixed && fix > b.onset) {
    b.fix = fix;
  } else {
    r.clear_fix_time();
    r.clear_fix_interval();
  }

  // Region x mode x size cells, per period.
  using CellKey = std::tuple<std::string, int, uint64_t>;
  std::map<CellKey, std::array<StreamStats, 4>> cells;
  using ModeKey = std::pair<std::string, int>;
  struct ClientMinute {
    uint64_t trials = 0, failures = 0, visible = 0;
  };
  std::map<ModeKey, std::map<int64_t, ClientMinute>> client;
  for (const StreamMinute* m : minutes) {
    const absl::Time start = absl::FromUnixSeconds(m->minute * 60);
    const v1::ReportPeriod p = b.OfSpan(start, start + absl::Minutes(1));
    auto& stats = cells[CellKey{m->key.region, m->key.mode, m->key.size_bytes}];
    stats[PeriodIndex(v1::REPORT_PERIOD_WHOLE)].Merge(m->stats);
    stats[PeriodIndex(p)].Merge(m->stats);
    ClientMinute& c = client[{m->key.region, m->key.mode}][m->minute];
    for (int cls = 0; cls < kNumOutcomeClasses; ++cls) {
      const uint64_t n = m->stats.counts[cls];
      const auto oc = static_cast<v1::OutcomeClass>(cls);
      if (analysis::IsTrial(oc)) c.trials += n;
      if (analysis::IsStreamHealthFailure(oc)) c.failures += n;
      if (analysis::IsPlatformVisibleFailure(oc)) c.visible += n;
    }
    r.set_probes(r.probes() + m->stats.probes());
  }
  std::map<Identity, v1::VerdictState> stream_state;
  for (const v1::Verdict& v : analysis->verdicts()) {
    if (v.kind() == v1::STREAM_HEALTH) stream_state[IdentityOf(v)] = v.state();
  }
  for (const auto& [key, stats] : cells) {
    v1::ReportCell* cell = r.add_cells();
    cell->set_region(std::get<0>(key));
    cell->set_mode(static_cast<v1::InvokeMode>(std::get<1>(key)));
    cell->set_size_bytes(std::get<2>(key));
    cell->set_size_class(FormatBytes(std::get<2>(key)));
    auto st = stream_state.find(Identity{v1::STREAM_HEALTH, cell->region(),
                                         options.target, cell->mode(),
                                         cell->size_class()});
    if (st != stream_state.end()) cell->set_state(st->second);
    for (v1::ReportPeriod p : kPeriods) {
      v1::ReportCounts* c = cell->add_periods();
      c->set_period(p);
      FillCounts(stats[PeriodIndex(p)], c);
      if (p == v1::REPORT_PERIOD_WHOLE)
        r.set_failures(r.failures() + c->failures());
    }
  }

  // Platform periods of the target, per region x mode, reconciled with the
  // client counts at the store's minute resolution: a period shorter than a
  // minute joins the bucket of the minute it starts in, a longer one spans
  // the minutes it covers.
  struct Bucket {
    int64_t end_minute = 0;  // Exclusive.
    double errors = 0, invocations = 0;
  };
  std::map<ModeKey, std::map<int64_t, Bucket>> platform;
  for (const v1::PlatformMetricSample& s : data.platform_samples) {
    if (s.target() != options.target || !region_ok(s.region())) continue;
    if (!s.stat().empty() && s.stat() != "Sum") continue;
    const absl::Time start = TimeFromProto(s.period_start());
    if (start < options.from || start >= options.to) continue;
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
  // Phantom buckets by (region, mode) -> [start, end).
  std::map<ModeKey, std::vector<std::pair<absl::Time, absl::Time>>> phantom_at;
  std::map<ModeKey, std::map<int64_t, std::pair<double, double>>>
      platform_minute;
  for (const auto& [mk, buckets] : platform) {
    std::array<v1::ReportPlatformCounts, 4> sums;
    for (v1::ReportPeriod p : kPeriods) sums[PeriodIndex(p)].set_period(p);
    const auto& cm = client[mk];
    for (const auto& [first, p] : buckets) {
      const absl::Time start = absl::FromUnixSeconds(first * 60);
      const absl::Time end = absl::FromUnixSeconds(p.end_minute * 60);
      uint64_t visible = 0, probes = 0;
      for (auto it = cm.lower_bound(first);
           it != cm.end() && it->first < p.end_minute; ++it) {
        visible += it->second.visible;
        probes += it->second.trials;
      }
      const double phantom =
          std::max(0.0, p.errors - static_cast<double>(visible));
      auto& pm = platform_minute[mk][first];
      pm.first += p.errors;
      pm.second += p.invocations;
      for (v1::ReportPeriod per :
           {v1::REPORT_PERIOD_WHOLE, b.OfSpan(start, end)}) {
        v1::ReportPlatformCounts& s = sums[PeriodIndex(per)];
        s.set_platform_errors(s.platform_errors() + p.errors);
        s.set_platform_invocations(s.platform_invocations() + p.invocations);
        s.set_client_visible_failures(s.client_visible_failures() + visible);
        s.set_client_probes(s.client_probes() + probes);
        s.set_phantom_errors(s.phantom_errors() + phantom);
      }
      if (phantom > 0) {
        phantom_at[mk].emplace_back(start, end);
        if (static_cast<size_t>(r.phantom_periods_size()) <
            kMaxPhantomPeriods) {
          v1::PhantomPeriod* pp = r.add_phantom_periods();
          pp->set_region(mk.first);
          pp->set_mode(static_cast<v1::InvokeMode>(mk.second));
          *pp->mutable_period_start() = TimeToProto(start);
          *pp->mutable_period() = DurationToProto(end - start);
          pp->set_platform_errors(p.errors);
          pp->set_client_visible_failures(visible);
          pp->set_phantom_errors(phantom);
        }
      }
    }
    v1::ReportPlatform* out = r.add_platform();
    out->set_region(mk.first);
    out->set_mode(static_cast<v1::InvokeMode>(mk.second));
    for (auto& s : sums) {
      s.set_phantom_rate(s.platform_invocations() > 0
                             ? s.phantom_errors() / s.platform_invocations()
                             : 0);
      *out->add_periods() = std::move(s);
    }
  }

  // Chart series: per region x mode and minute.
  for (const auto& [mk, per_minute] : client) {
    v1::ReportSeries* s = r.add_series();
    s->set_region(mk.first);
    s->set_mode(static_cast<v1::InvokeMode>(mk.second));
    const auto& pm = platform_minute[mk];
    for (const auto& [minute, c] : per_minute) {
      v1::ReportSeries::Point* p = s->add_points();
      *p->mutable_minute() = TimeToProto(absl::FromUnixSeconds(minute * 60));
      p->set_trials(c.trials);
      p->set_failures(c.failures);
      p->set_visible_failures(c.visible);
      auto it = pm.find(minute);
      if (it != pm.end()) {
        p->set_platform_errors(it->second.first);
        p->set_platform_invocations(it->second.second);
      }
    }
  }

  // Sample probes: failures (phantom periods first, then DURING, then the
  // rest), and every raw outcome inside a phantom period.
  auto in_phantom = [&](const v1::Outcome& o, absl::Time t) {
    auto it = phantom_at.find({o.region(), o.mode()});
    if (it == phantom_at.end()) return false;
    for (const auto& [s, e] : it->second) {
      if (t >= s && t < e) return true;
    }
    return false;
  };
  std::array<std::vector<v1::SampleProbe>, 3> failing;
  std::vector<v1::SampleProbe> phantom_samples;
  uint64_t stored = 0;
  for (const v1::Outcome& o : data.outcomes) {
    if (!o.adhoc_id().empty() || o.target() != options.target ||
        !region_ok(o.region())) {
      continue;
    }
    const absl::Time t = TimeFromProto(o.start_time());
    if (t < options.from || t >= options.to) continue;
    const bool failed = analysis::IsStreamHealthFailure(o.outcome_class());
    const bool phantom = in_phantom(o, t);
    if (!failed && !phantom) continue;
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
    s.set_period(b.Of(t));
    s.set_in_phantom_period(phantom);
    if (phantom) phantom_samples.push_back(s);
    if (failed) {
      ++stored;
      const int group = phantom                                  ? 0
                        : s.period() == v1::REPORT_PERIOD_DURING ? 1
                                                                 : 2;
      failing[group].push_back(std::move(s));
    }
  }
  r.set_failures_stored(stored);
  // Evenly spaced picks, in time order, so samples cover the whole episode.
  auto pick = [](std::vector<v1::SampleProbe>* from, size_t quota,
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
  };
  size_t quota = options.max_samples;
  for (auto& group : failing)
    quota -= pick(&group, quota, r.mutable_failing_samples());
  pick(&phantom_samples, options.max_samples, r.mutable_phantom_samples());

  FillReproduction(r, data.targets, r.mutable_reproduction());
  return r;
}

absl::StatusOr<ReportData> ReadReportData(std::istream& in,
                                          const v1::DetectionConfig& detection,
                                          absl::Time declared_fix_time) {
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  analysis::AnalyzeOptions options;
  options.detection = detection;
  if (declared_fix_time != absl::InfinitePast()) {
    options.declared_fix_time = declared_fix_time;
  }
  ReportData data;
  {
    std::istringstream again(text);
    absl::StatusOr<v1::AnalysisReport> analysis =
        analysis::AnalyzeJsonLines(again, options);
    if (!analysis.ok()) return analysis.status();
    data.analysis = std::move(*analysis);
  }
  // The engine accepted every line: now aggregate them the way ingest does.
  std::map<std::pair<analysis::StreamKey, int64_t>, StreamStats> minutes;
  std::istringstream lines(text);
  std::string line;
  google::protobuf::util::JsonParseOptions parse;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::AnalysisInputLine record;
    auto s = google::protobuf::util::JsonStringToMessage(line, &record, parse);
    if (!s.ok()) return absl::InvalidArgumentError(std::string(s.message()));
    if (record.has_platform_sample()) {
      data.platform_samples.push_back(record.platform_sample());
      continue;
    }
    const v1::Outcome& o = record.outcome();
    analysis::StreamKey key{o.region(), o.target(), o.mode(),
                            o.requested_bytes(), !o.adhoc_id().empty()};
    minutes[{key, analysis::MinuteOf(TimeFromProto(o.start_time()))}].Add(o);
    data.outcomes.push_back(o);
  }
  for (auto& [k, stats] : minutes) {
    data.minutes.push_back(StreamMinute{k.first, k.second, std::move(stats)});
  }
  return data;
}

}  // namespace fleetcanary::report
