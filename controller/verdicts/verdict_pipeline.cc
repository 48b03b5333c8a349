// The verdict service's processing: reorder buffer -> engines,
// reconciliation -> platform view, and the merge of both views into the
// published verdicts, the store's history and /metrics
// (verdict_service_impl.h; behaviour in verdict_service.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/intervals.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"
#include "controller/verdicts/verdict_service_impl.h"

namespace fleetcanary {
namespace controller {
namespace verdicts_internal {
namespace {

// How urgently the live service must show a state: when the client and
// platform views disagree, the higher one is published. A SUSPECT (a
// regression may be starting) outranks a FIX_CONFIRMED here, unlike the
// incident report's FindingProgressRank, which ranks how far an episode got.
int LivePublishUrgency(v1::VerdictState s) {
  switch (s) {
    case v1::REGRESSION:
      return 4;
    case v1::RECOVERING:
      return 3;
    case v1::SUSPECT:
      return 2;
    case v1::FIX_CONFIRMED:
      return 1;
    default:
      return 0;
  }
}

// Kinds the platform view publishes.
bool PlatformViewKind(v1::VerdictKind k) {
  return k == v1::MODE_DIFFERENCE || k == v1::SIZE_TREND;
}

// Marks a platform-view verdict: its failures are phantom errors, its
// trials platform invocations.
v1::Verdict FromPlatformView(v1::Verdict v) {
  v1::Evidence* ev = v.mutable_evidence();
  ev->clear_classes();
  ev->set_summary(
      absl::StrCat("platform view (phantom errors per platform invocation): ",
                   ev->summary()));
  return v;
}

}  // namespace

VerdictId IdOf(const v1::Verdict& v) {
  return {v.kind(), v.key().region(), v.key().target(), v.key().mode(),
          v.key().size_class()};
}

void VerdictServiceImpl::Accept(const v1::Outcome& o) {
  if (!o.has_start_time()) return;
  reconciler_->AddOutcome(o);
  if (!o.adhoc_id().empty()) {
    ++stats_.adhoc_outcomes;
    return;
  }
  if (o.outcome_class() == v1::AGENT_ERROR ||
      o.outcome_class() == v1::OUTCOME_CLASS_UNSPECIFIED) {
    return;  // Never counted against the platform.
  }
  const absl::Time t = TimeFromProto(o.start_time());
  latest_seen_ = std::max(latest_seen_, t);
  Pending p;
  p.time = t;
  p.key.set_region(o.region());
  p.key.set_target(o.target());
  p.key.set_mode(o.mode());
  p.key.set_size_class(FormatBytes(o.requested_bytes()));
  p.agent_id = o.agent_id();
  p.cls = o.outcome_class();
  reorder_.emplace(t, std::move(p));
}

// Feeds the engine every held outcome up to `watermark`, in time order.
void VerdictServiceImpl::Release(absl::Time watermark) {
  while (!reorder_.empty() &&
         (reorder_.begin()->first <= watermark ||
          reorder_.size() > options_.max_reorder_outcomes)) {
    Pending p = std::move(reorder_.begin()->second);
    reorder_.erase(reorder_.begin());
    absl::Time t = p.time;
    if (t < engine_time_) {
      t = engine_time_;
      ++stats_.reordered_late;
    }
    engine_time_ = t;
    absl::Status s = engine_->ObserveProbe(p.key, p.agent_id, t, p.cls);
    if (!s.ok()) {
      EngineError("observe_probe", s);
      continue;
    }
    ++stats_.outcomes_observed;
    RateCounts& c = rates_[{v1::STREAM_HEALTH, p.key.region(), p.key.target(),
                            p.key.mode(), p.key.size_class()}];
    ++c.trials;
    if (analysis::IsStreamHealthFailure(p.cls)) ++c.failures;
  }
}

void VerdictServiceImpl::Reconcile(absl::Time watermark) {
  std::vector<ReconciledPeriod> periods = reconciler_->Advance(watermark);
  const uint64_t before_start = reconciler_->stats().before_start;
  if (before_start > before_start_exported_) {
    if (before_start_exported_ == 0) {
      LogWarning("verdicts_periods_before_start",
                 {{"not_before", absl::FormatTime(not_before_)}});
    }
    metrics_->AddCounter(
        "reconcile_before_start_total",
        static_cast<double>(before_start - before_start_exported_));
    before_start_exported_ = before_start;
  }
  std::stable_sort(periods.begin(), periods.end(),
                   [](const ReconciledPeriod& a, const ReconciledPeriod& b) {
                     return a.period_start < b.period_start;
                   });
  std::map<std::string, double> phantom_deltas;
  for (const ReconciledPeriod& p : periods) {
    v1::StreamKey key;
    key.set_region(p.region);
    key.set_target(p.target);
    key.set_mode(p.mode);
    absl::Status s = engine_->ObservePlatform(
        key, p.period_start, p.platform_errors, p.platform_invocations,
        p.client_failures, p.client_probes);
    if (!s.ok()) {
      EngineError("observe_platform", s);
      continue;
    }
    ++stats_.platform_periods;
    stats_.phantom_errors += p.phantom_errors;
    const uint64_t invocations =
        static_cast<uint64_t>(std::llround(p.platform_invocations));
    RateCounts& c =
        rates_[{v1::PHANTOM_ERRORS, p.region, p.target, p.mode, std::string()}];
    c.trials += invocations;
    c.failures += p.phantom_errors;
    if (p.phantom_errors > 0) {
      phantom_deltas[PhantomCounterName(p.region, p.target, p.mode)] +=
          static_cast<double>(p.phantom_errors);
    }
    if (p.phantom_errors > invocations) LogWarning("verdicts_bad_period");
    // Platform view: only when the period's scheduled probes had one size.
    if (p.scheduled_probes_by_size.size() != 1 || invocations == 0) continue;
    key.set_size_class(FormatBytes(p.scheduled_probes_by_size.begin()->first));
    analysis::ClassCounts counts;
    counts.Add(v1::HTTP_5XX, p.phantom_errors);
    counts.Add(v1::OK, invocations - p.phantom_errors);
    const absl::Time t = std::max(p.period_start, view_time_);
    view_time_ = t;
    s = platform_view_->Observe(key, t, counts);
    if (!s.ok()) {
      EngineError("platform_view", s);
      continue;
    }
    ++stats_.attributed_periods;
  }
  if (!phantom_deltas.empty()) {
    WriteBatch batch;
    batch.counter_deltas = phantom_deltas;
    CommitResult result;
    absl::Status s = store_->Commit(batch, &result);
    if (!s.ok()) {
      ++stats_.store_errors;
      LogError("verdicts_counter_commit_failed", {{"error", s.ToString()}});
    }
    for (const auto& [name, delta] : phantom_deltas) {
      metrics_->AddCounter(name, delta);
    }
  }
}

// Merges both views' transitions into published ones; updates the store,
// metrics and the current set.
std::vector<v1::Verdict> VerdictServiceImpl::Publish() {
  std::vector<v1::Verdict> out;
  auto apply = [&](const v1::Verdict& v, bool from_view) {
    const VerdictId id = IdOf(v);
    (from_view ? view_state_ : client_state_)[id] = v;
    const v1::Verdict* winner = Winner(id);
    if (winner == nullptr) return;
    v1::Verdict pub =
        IsFromView(id, winner) ? FromPlatformView(*winner) : *winner;
    auto it = published_.find(id);
    const v1::VerdictState before =
        it == published_.end() ? v1::HEALTHY : it->second.state();
    if (it != published_.end() && before == pub.state()) {
      it->second = pub;  // Same state: fresher evidence, no transition.
      return;
    }
    pub.set_previous_state(before);
    // The published state changed now, whichever view's verdict won (the
    // other view's may have been in that state for long).
    // Copied only when set: an empty Timestamp would print as 1970.
    pub.clear_since();
    pub.clear_updated();
    if (v.has_since()) *pub.mutable_since() = v.since();
    if (v.has_updated()) *pub.mutable_updated() = v.updated();
    published_[id] = pub;
    if (before == pub.state()) return;  // First sight, still HEALTHY.
    out.push_back(pub);
    rates_[id] = RateCounts{};
  };
  for (const v1::Verdict& v : engine_->TakeTransitions()) apply(v, false);
  for (const v1::Verdict& v : platform_view_->TakeTransitions()) {
    if (PlatformViewKind(v.kind())) apply(v, true);
  }
  // Verdicts that appeared without a transition (new keys, HEALTHY), and
  // fresher evidence of the others.
  for (const v1::Verdict& v : engine_->Current()) {
    const VerdictId id = IdOf(v);
    client_state_[id] = v;
    Refresh(id);
  }
  for (const v1::Verdict& v : platform_view_->Current()) {
    if (!PlatformViewKind(v.kind())) continue;
    const VerdictId id = IdOf(v);
    view_state_[id] = v;
    Refresh(id);
  }
  for (const v1::Verdict& v : out) {
    ++stats_.transitions;
    absl::Status s = store_->AppendVerdict(v);
    if (!s.ok()) {
      ++stats_.store_errors;
      LogError("verdicts_append_failed", {{"error", s.ToString()}});
    }
    LogInfo("verdict", {{"kind", v1::VerdictKind_Name(v.kind())},
                        {"region", v.key().region()},
                        {"target", v.key().target()},
                        {"mode", v1::InvokeMode_Name(v.key().mode())},
                        {"size_class", v.key().size_class()},
                        {"from", v1::VerdictState_Name(v.previous_state())},
                        {"to", v1::VerdictState_Name(v.state())},
                        {"summary", v.evidence().summary()}});
  }
  ExportMetrics();
  return out;
}

// The more severe of the two views' verdicts for `id` (client on ties).
const v1::Verdict* VerdictServiceImpl::Winner(const VerdictId& id) {
  auto c = client_state_.find(id);
  auto v = view_state_.find(id);
  if (v == view_state_.end()) {
    return c == client_state_.end() ? nullptr : &c->second;
  }
  if (c == client_state_.end()) return &v->second;
  return LivePublishUrgency(v->second.state()) >
                 LivePublishUrgency(c->second.state())
             ? &v->second
             : &c->second;
}

bool VerdictServiceImpl::IsFromView(const VerdictId& id, const v1::Verdict* w) {
  auto v = view_state_.find(id);
  return v != view_state_.end() && w == &v->second &&
         PlatformViewKind(w->kind());
}

// Updates the published verdict's evidence when its state is unchanged,
// and adds verdicts never published (HEALTHY on first sight).
void VerdictServiceImpl::Refresh(const VerdictId& id) {
  const v1::Verdict* w = Winner(id);
  if (w == nullptr) return;
  auto it = published_.find(id);
  if (it == published_.end()) {
    if (w->state() != v1::HEALTHY) return;  // Published via a transition.
    published_[id] = *w;
    return;
  }
  if (it->second.state() != w->state()) return;
  const v1::Verdict kept = it->second;
  it->second = IsFromView(id, w) ? FromPlatformView(*w) : *w;
  it->second.set_previous_state(kept.previous_state());
  it->second.clear_since();
  if (kept.has_since()) *it->second.mutable_since() = kept.since();
}

void VerdictServiceImpl::ExportMetrics() {
  for (const auto& [id, v] : published_) {
    metrics_->SetVerdict(v);
    const v1::VerdictKind kind = v.kind();
    if (kind != v1::STREAM_HEALTH && kind != v1::PHANTOM_ERRORS) continue;
    double bound;
    if ((v.state() == v1::RECOVERING || v.state() == v1::FIX_CONFIRMED) &&
        v.evidence().proven_upper_bound() > 0) {
      bound = v.evidence().proven_upper_bound();
    } else {
      const RateCounts& c = rates_[id];
      if (c.trials == 0) continue;
      bound =
          analysis::ClopperPearsonInterval(c.failures, c.trials, 0.95).upper;
    }
    metrics_->SetErrorRateUpperBound(v.key(), bound);
  }
}

}  // namespace verdicts_internal
}  // namespace controller
}  // namespace fleetcanary
