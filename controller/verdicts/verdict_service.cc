#include "controller/verdicts/verdict_service.h"

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "analysis/intervals.h"
#include "analysis/verdict_engine.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"
#include "fleetcanary/v1/verdict_state.pb.h"

namespace fleetcanary {
namespace controller {
namespace {

// Finite times only; an infinite one (none yet) stays unset.
void SetFiniteTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  *out = TimeToProto(t);
}

absl::Time TimeOrPast(bool has, const google::protobuf::Timestamp& ts) {
  return has ? TimeFromProto(ts) : absl::InfinitePast();
}

constexpr uint32_t kStateFormat = 1;

int Severity(v1::VerdictState s) {
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

// (kind, region, target, mode, size class).
using VerdictId = std::tuple<int, std::string, std::string, int, std::string>;

VerdictId IdOf(const v1::Verdict& v) {
  return {v.kind(), v.key().region(), v.key().target(), v.key().mode(),
          v.key().size_class()};
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

struct Pending {
  absl::Time time;
  v1::StreamKey key;
  std::string agent_id;
  v1::OutcomeClass cls;
};

struct RateCounts {
  uint64_t trials = 0;
  uint64_t failures = 0;
};

class SubscriptionImpl;

class VerdictServiceImpl : public VerdictService {
 public:
  VerdictServiceImpl(const VerdictServiceOptions& options, Store* store,
                     ControllerMetrics* metrics, Clock* clock)
      : options_(options), store_(store), metrics_(metrics), clock_(clock) {}

  ~VerdictServiceImpl() override { Shutdown(); }

  absl::Status Init() {
    if (options_.metrics_period <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("metrics_period: must be > 0");
    }
    if (options_.reorder_window < absl::ZeroDuration()) {
      return absl::InvalidArgumentError("reorder_window: must be >= 0");
    }
    const absl::Time start = clock_->Now();
    ReconcilerOptions ro;
    ro.period = options_.metrics_period;
    ro.not_before = start;
    ro.settle = options_.reconcile_settle > absl::ZeroDuration()
                    ? options_.reconcile_settle
                    : 5 * options_.metrics_period;
    ro.max_wait = options_.reconcile_max_wait > absl::ZeroDuration()
                      ? std::max(options_.reconcile_max_wait, ro.settle)
                      : ro.settle + 10 * options_.metrics_period;
    auto rec = Reconciler::Create(ro);
    if (!rec.ok()) return rec.status();
    reconciler_ = *std::move(rec);
    auto engine = analysis::VerdictEngine::Create(options_.detection,
                                                  options_.expected_streams);
    if (!engine.ok()) return engine.status();
    engine_ = *std::move(engine);
    auto view = analysis::VerdictEngine::Create(options_.detection,
                                                options_.expected_streams);
    if (!view.ok()) return view.status();
    platform_view_ = *std::move(view);
    {
      absl::MutexLock lock(&mu_);
      not_before_ = start;
      last_save_ = start;
      if (options_.state_save_interval > absl::ZeroDuration()) RestoreState();
      if (options_.declared_fix_time) {
        engine_->DeclareFix(*options_.declared_fix_time);
        platform_view_->DeclareFix(*options_.declared_fix_time);
      }
      ExportMetrics();
    }
    worker_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  void OnCommitted(const CommittedBatch& batch) override {
    OnCommittedShared(std::make_shared<const CommittedBatch>(batch));
  }

  // Held, not copied: ingest's flow control counts it until processed.
  void OnCommittedShared(std::shared_ptr<const CommittedBatch> batch) override {
    if (batch->outcomes.empty() && batch->platform_samples.empty()) return;
    absl::MutexLock lock(&queue_mu_);
    if (stopping_) return;
    queued_.push_back(std::move(batch));
  }

  absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Verdict> out;
    for (const auto& [id, v] : published_) {
      if (!include_healthy && v.state() == v1::HEALTHY) continue;
      if (!VerdictFilterMatches(filter, v.key())) continue;
      out.push_back(v);
    }
    return out;
  }

  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                          Callback callback) override;

  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override {
    if (options_.analyzer == nullptr) {
      return absl::UnimplementedError("Analyze: no analyzer configured");
    }
    return options_.analyzer->Analyze(request);
  }

  void DeclareFix(absl::Time time) override {
    absl::MutexLock lock(&mu_);
    engine_->DeclareFix(time);
    platform_view_->DeclareFix(time);
    dirty_ = true;
    LogInfo("verdicts_fix_declared", {{"time", absl::FormatTime(time)}});
  }

  bool Sync(absl::Duration timeout) override {
    absl::MutexLock lock(&queue_mu_);
    const uint64_t target = requested_rounds_ + 1;
    requested_rounds_ = target;
    auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
      return completed_rounds_ >= target || stopped_;
    };
    return clock_->AwaitWithTimeout(&queue_mu_, absl::Condition(&done),
                                    timeout) &&
           completed_rounds_ >= target;
  }

  VerdictServiceStats stats() override {
    absl::MutexLock lock(&mu_);
    VerdictServiceStats s = stats_;
    s.reconciler = reconciler_->stats();
    return s;
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&queue_mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    if (worker_.joinable()) worker_.join();
  }

  // Subscriptions (called by SubscriptionImpl).
  void Unsubscribe(uint64_t id) {
    absl::MutexLock lock(&subs_mu_);
    subscribers_.erase(id);
  }

 private:
  struct Subscriber {
    v1::StreamKey filter;
    Callback callback;
  };

  void Loop() {
    for (;;) {
      std::deque<std::shared_ptr<const CommittedBatch>> batches;
      uint64_t round = 0;
      bool stop = false;
      {
        absl::MutexLock lock(&queue_mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
          return stopping_ || !queued_.empty() ||
                 requested_rounds_ > completed_rounds_;
        };
        clock_->AwaitWithTimeout(&queue_mu_, absl::Condition(&ready),
                                 options_.tick);
        batches.swap(queued_);
        round = requested_rounds_;
        stop = stopping_;
      }
      std::vector<v1::Verdict> published = Process(batches);
      Deliver(published);
      MaybeSaveState(stop);
      absl::MutexLock lock(&queue_mu_);
      completed_rounds_ = std::max(completed_rounds_, round);
      if (stop && queued_.empty()) {
        stopped_ = true;
        return;
      }
    }
  }

  // One round: queue -> reorder buffer and reconciler -> engines -> output.
  std::vector<v1::Verdict> Process(
      std::deque<std::shared_ptr<const CommittedBatch>>& batches) {
    absl::MutexLock lock(&mu_);
    if (!batches.empty()) dirty_ = true;
    for (const auto& shared : batches) {
      const CommittedBatch& b = *shared;
      for (const v1::Outcome& o : b.outcomes) {
        uint64_t& seq = accepted_sequence_[o.agent_id()];
        seq = std::max(seq, o.sequence());
        Accept(o);
      }
      for (const v1::PlatformMetricSample& s : b.platform_samples) {
        reconciler_->AddSample(s);
      }
    }
    const absl::Time watermark =
        std::max(latest_seen_, clock_->Now()) - options_.reorder_window;
    Release(watermark);
    Reconcile(watermark);
    return Publish();
  }

  void Accept(const v1::Outcome& o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
  void Release(absl::Time watermark) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  void Reconcile(absl::Time watermark) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
      RateCounts& c = rates_[{v1::PHANTOM_ERRORS, p.region, p.target, p.mode,
                              std::string()}];
      c.trials += invocations;
      c.failures += p.phantom_errors;
      if (p.phantom_errors > 0) {
        phantom_deltas[PhantomCounterName(p.region, p.target, p.mode)] +=
            static_cast<double>(p.phantom_errors);
      }
      if (p.phantom_errors > invocations) LogWarning("verdicts_bad_period");
      // Platform view: only when the period's scheduled probes had one size.
      if (p.scheduled_probes_by_size.size() != 1 || invocations == 0) continue;
      key.set_size_class(
          FormatBytes(p.scheduled_probes_by_size.begin()->first));
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
  std::vector<v1::Verdict> Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
  const v1::Verdict* Winner(const VerdictId& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto c = client_state_.find(id);
    auto v = view_state_.find(id);
    if (v == view_state_.end()) {
      return c == client_state_.end() ? nullptr : &c->second;
    }
    if (c == client_state_.end()) return &v->second;
    return Severity(v->second.state()) > Severity(c->second.state())
               ? &v->second
               : &c->second;
  }

  bool IsFromView(const VerdictId& id, const v1::Verdict* w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto v = view_state_.find(id);
    return v != view_state_.end() && w == &v->second &&
           PlatformViewKind(w->kind());
  }

  // Updates the published verdict's evidence when its state is unchanged,
  // and adds verdicts never published (HEALTHY on first sight).
  void Refresh(const VerdictId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  void ExportMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  void EngineError(const char* what, const absl::Status& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++stats_.engine_errors;
    LogWarning("verdicts_input_refused",
               {{"input", what}, {"error", s.ToString()}});
  }

  // Loads the saved state, if any, into the engines and the published set
  // (see "Restarts" in the header). Never fails: an unusable state is
  // discarded, counted and logged.
  void RestoreState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<std::string> blob = store_->LoadDetectorState();
    if (absl::IsNotFound(blob.status())) {
      LogInfo("verdicts_state_none");
      return;
    }
    auto discard = [this](const std::string& reason) {
      metrics_->AddCounter("detector_state_discarded_total", 1);
      LogWarning(
          "verdicts_state_discarded",
          {{"reason", reason}, {"effect", "verdicts start from HEALTHY"}});
    };
    if (!blob.ok()) return discard(blob.status().ToString());
    v1::VerdictServiceState st;
    if (!st.ParseFromString(*blob)) return discard("unreadable");
    if (st.format_version() != kStateFormat) {
      return discard(absl::StrCat("format_version ", st.format_version(),
                                  " (this controller reads ", kStateFormat,
                                  ")"));
    }
    auto client = analysis::VerdictEngine::Restore(
        options_.detection, options_.expected_streams, st.client_view());
    if (!client.ok()) {
      return discard(absl::StrCat("client_view: ", client.status().ToString()));
    }
    auto view = analysis::VerdictEngine::Restore(
        options_.detection, options_.expected_streams, st.platform_view());
    if (!view.ok()) {
      return discard(absl::StrCat("platform_view: ", view.status().ToString()));
    }
    engine_ = *std::move(client);
    platform_view_ = *std::move(view);
    engine_time_ = TimeOrPast(st.has_engine_time(), st.engine_time());
    view_time_ = TimeOrPast(st.has_view_time(), st.view_time());
    latest_seen_ = TimeOrPast(st.has_latest_seen(), st.latest_seen());
    for (const v1::Verdict& v : st.published()) published_[IdOf(v)] = v;
    for (const v1::Verdict& v : st.client_state()) client_state_[IdOf(v)] = v;
    for (const v1::Verdict& v : st.view_state()) view_state_[IdOf(v)] = v;
    for (const auto& r : st.rates()) {
      rates_[{r.kind(), r.key().region(), r.key().target(), r.key().mode(),
              r.key().size_class()}] = RateCounts{r.trials(), r.failures()};
    }
    for (const auto& h : st.held()) {
      Pending p;
      p.time = TimeFromProto(h.time());
      p.key = h.key();
      p.agent_id = h.agent_id();
      p.cls = h.outcome_class();
      reorder_.emplace(p.time, std::move(p));
    }
    accepted_sequence_.insert(st.accepted_sequence().begin(),
                              st.accepted_sequence().end());
    uint64_t unseen = 0;
    absl::StatusOr<std::vector<AgentRecord>> agents = store_->LoadAgents();
    if (agents.ok()) {
      for (const AgentRecord& a : *agents) {
        auto it = accepted_sequence_.find(a.agent_id);
        const uint64_t seen = it == accepted_sequence_.end() ? 0 : it->second;
        if (a.applied_sequence > seen) unseen += a.applied_sequence - seen;
      }
    }
    stats_.state_restored = true;
    stats_.unseen_outcomes = unseen;
    metrics_->AddCounter("detector_state_restores_total", 1);
    metrics_->AddCounter("detector_state_unseen_outcomes_total",
                         static_cast<double>(unseen));
    int open = 0;
    for (const auto& [id, v] : published_) open += v.state() != v1::HEALTHY;
    const absl::Time saved_at = TimeFromProto(st.saved_at());
    LogInfo(
        "verdicts_state_restored",
        {{"saved_at", absl::FormatTime(saved_at)},
         {"age", absl::FormatDuration(clock_->Now() - saved_at)},
         {"verdicts", absl::StrCat(published_.size())},
         {"not_healthy", absl::StrCat(open)},
         {"unseen_outcomes", absl::StrCat(unseen)},
         {"agents_read", agents.ok() ? "yes" : agents.status().ToString()}});
  }

  v1::VerdictServiceState BuildState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::VerdictServiceState st;
    st.set_format_version(kStateFormat);
    SetFiniteTime(clock_->Now(), st.mutable_saved_at());
    *st.mutable_client_view() = engine_->SaveState();
    *st.mutable_platform_view() = platform_view_->SaveState();
    if (engine_time_ != absl::InfinitePast()) {
      SetFiniteTime(engine_time_, st.mutable_engine_time());
    }
    if (view_time_ != absl::InfinitePast()) {
      SetFiniteTime(view_time_, st.mutable_view_time());
    }
    if (latest_seen_ != absl::InfinitePast()) {
      SetFiniteTime(latest_seen_, st.mutable_latest_seen());
    }
    for (const auto& [id, v] : published_) *st.add_published() = v;
    for (const auto& [id, v] : client_state_) *st.add_client_state() = v;
    for (const auto& [id, v] : view_state_) *st.add_view_state() = v;
    for (const auto& [id, c] : rates_) {
      auto* r = st.add_rates();
      r->set_kind(static_cast<v1::VerdictKind>(std::get<0>(id)));
      r->mutable_key()->set_region(std::get<1>(id));
      r->mutable_key()->set_target(std::get<2>(id));
      r->mutable_key()->set_mode(static_cast<v1::InvokeMode>(std::get<3>(id)));
      r->mutable_key()->set_size_class(std::get<4>(id));
      r->set_trials(c.trials);
      r->set_failures(c.failures);
    }
    for (const auto& [t, p] : reorder_) {
      auto* h = st.add_held();
      SetFiniteTime(p.time, h->mutable_time());
      *h->mutable_key() = p.key;
      h->set_agent_id(p.agent_id);
      h->set_outcome_class(p.cls);
    }
    st.mutable_accepted_sequence()->insert(accepted_sequence_.begin(),
                                           accepted_sequence_.end());
    return st;
  }

  // Saves the state when something changed and the interval passed, or at
  // the last round before stopping. Runs on the worker, store write outside
  // mu_.
  void MaybeSaveState(bool stopping) {
    if (options_.state_save_interval <= absl::ZeroDuration()) return;
    const absl::Time now = clock_->Now();
    std::string blob;
    {
      absl::MutexLock lock(&mu_);
      if (!dirty_) return;
      if (!stopping && now - last_save_ < options_.state_save_interval) return;
      blob = BuildState().SerializeAsString();
      dirty_ = false;
      last_save_ = now;
    }
    const absl::Status s = store_->SaveDetectorState(blob);
    absl::MutexLock lock(&mu_);
    if (s.ok()) {
      ++stats_.state_saves;
      metrics_->AddCounter("detector_state_saves_total", 1);
      return;
    }
    ++stats_.state_save_errors;
    dirty_ = true;  // Try again next interval.
    metrics_->AddCounter("detector_state_save_failures_total", 1);
    LogError("verdicts_state_save_failed",
             {{"error", s.ToString()}, {"bytes", absl::StrCat(blob.size())}});
  }

  void Deliver(const std::vector<v1::Verdict>& verdicts) {
    if (verdicts.empty()) return;
    absl::MutexLock lock(&subs_mu_);
    for (const v1::Verdict& v : verdicts) {
      for (const auto& [id, sub] : subscribers_) {
        if (VerdictFilterMatches(sub.filter, v.key())) sub.callback(v);
      }
    }
  }

  friend class SubscriptionImpl;

  const VerdictServiceOptions options_;
  Store* const store_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;
  std::thread worker_;

  absl::Mutex queue_mu_;
  // State below is protected by queue_mu_.
  std::deque<std::shared_ptr<const CommittedBatch>> queued_
      ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(queue_mu_) = false;
  uint64_t requested_rounds_ ABSL_GUARDED_BY(queue_mu_) = 0;
  uint64_t completed_rounds_ ABSL_GUARDED_BY(queue_mu_) = 0;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::unique_ptr<Reconciler> reconciler_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<analysis::VerdictEngine> engine_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<analysis::VerdictEngine> platform_view_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, Pending> reorder_ ABSL_GUARDED_BY(mu_);
  absl::Time latest_seen_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time engine_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time view_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<VerdictId, v1::Verdict> client_state_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, v1::Verdict> view_state_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, v1::Verdict> published_ ABSL_GUARDED_BY(mu_);
  std::map<VerdictId, RateCounts> rates_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> accepted_sequence_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_save_ ABSL_GUARDED_BY(mu_);
  absl::Time not_before_ ABSL_GUARDED_BY(mu_);
  uint64_t before_start_exported_ ABSL_GUARDED_BY(mu_) = 0;
  VerdictServiceStats stats_ ABSL_GUARDED_BY(mu_);

  absl::Mutex subs_mu_;
  // State below is protected by subs_mu_.
  std::map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(subs_mu_);
  uint64_t next_subscriber_ ABSL_GUARDED_BY(subs_mu_) = 1;
};

class SubscriptionImpl : public VerdictSource::Subscription {
 public:
  SubscriptionImpl(VerdictServiceImpl* service, uint64_t id)
      : service_(service), id_(id) {}
  ~SubscriptionImpl() override { service_->Unsubscribe(id_); }

 private:
  VerdictServiceImpl* const service_;
  const uint64_t id_;
};

std::unique_ptr<VerdictSource::Subscription> VerdictServiceImpl::Subscribe(
    const v1::StreamKey& filter, Callback callback) {
  absl::MutexLock lock(&subs_mu_);
  const uint64_t id = next_subscriber_++;
  subscribers_[id] = Subscriber{filter, std::move(callback)};
  return std::make_unique<SubscriptionImpl>(this, id);
}

}  // namespace

bool VerdictFilterMatches(const v1::StreamKey& filter,
                          const v1::StreamKey& key) {
  return (filter.region().empty() || filter.region() == key.region()) &&
         (filter.target().empty() || filter.target() == key.target()) &&
         (filter.mode() == v1::INVOKE_MODE_UNSPECIFIED ||
          filter.mode() == key.mode()) &&
         (filter.size_class().empty() ||
          filter.size_class() == key.size_class());
}

absl::StatusOr<std::unique_ptr<VerdictService>> VerdictService::Create(
    const VerdictServiceOptions& options, Store* store,
    ControllerMetrics* metrics, Clock* clock) {
  if (store == nullptr || metrics == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "VerdictService: store, metrics and clock are required");
  }
  auto service =
      std::make_unique<VerdictServiceImpl>(options, store, metrics, clock);
  if (absl::Status s = service->Init(); !s.ok()) return s;
  return std::unique_ptr<VerdictService>(std::move(service));
}

}  // namespace controller
}  // namespace fleetcanary
