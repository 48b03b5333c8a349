#include "analysis/verdict_engine.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "analysis/changepoint.h"
#include "analysis/cusum.h"
#include "analysis/fix_confirmation.h"
#include "analysis/intervals.h"
#include "analysis/replay.h"
#include "analysis/tests.h"
#include "common/status/status_util.h"
#include "common/units/units.h"
#include "google/protobuf/util/message_differencer.h"

namespace fleetcanary::analysis {
namespace {

using v1::VerdictKind;
using v1::VerdictState;

constexpr double kMonthSeconds = 30 * 24 * 3600.0;
constexpr double kDefaultProbesPerMonth = 43200;  // One a minute.
constexpr size_t kMaxEpisodeBins = 8192;
constexpr size_t kMaxHistoryBins = 2048;
constexpr size_t kMaxKeys = 200000;
constexpr int kCusumFamilies = 2;  // Stream health and phantom errors.
// A stream whose baseline exceeds this is monitored as if p0 were this.
constexpr double kMaxP0 = 0.05;
// h is budgeted at the baseline posterior's kIcQuantile quantile, at most
// kMaxIcRatio x the posterior mean (docs/statistics.md "Baselines").
constexpr double kIcQuantile = 0.9;
constexpr double kMaxIcRatio = 2.5;
// STREAM_HEALTH leaves REGRESSION when its rate is shown nearer p0 than
// kRecoverRatio x p0 (see RateMonitor::StartEpisode).
constexpr double kRecoverRatio = 4;
// MODE_DIFFERENCE: a SUSPECT still undecided after this many paired
// streaming probes resolves to HEALTHY (bounded horizon).
constexpr uint64_t kSuspectHorizon = 3000;

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

// Map key for a StreamKey (ordered region, target, mode, size class).
using Key = std::tuple<std::string, std::string, int, std::string>;

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

void SetClasses(v1::Evidence* ev, bool platform) {
  for (int c = 0; c < v1::OutcomeClass_ARRAYSIZE; ++c) {
    const auto oc = static_cast<v1::OutcomeClass>(c);
    if (platform ? IsPlatformVisibleFailure(oc) : IsStreamHealthFailure(oc)) {
      ev->add_classes(oc);
    }
  }
}

// In-control rate from `k` failures in `n` clean probes: the posterior mean
// under a Beta prior of mean p0_prior and weight p0_prior_weight probes,
// floored at p0_floor.
double BaselineRate(const v1::DetectionConfig& cfg, uint64_t k, uint64_t n) {
  const double w = cfg.p0_prior_weight();
  const double mean = (cfg.p0_prior() * w + static_cast<double>(k)) /
                      (w + static_cast<double>(n));
  return std::max(cfg.p0_floor(), std::isfinite(mean) ? mean : 0.0);
}

// A bin of counts with the time of its last observation.
struct TimedBin {
  absl::Time time;
  uint64_t trials = 0;
  uint64_t failures = 0;
};

// Appends to a bounded bin list; when full, adjacent pairs are merged (the
// resolution halves, the totals stay exact).
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

// Dates a change over `bins` into ev->change_time / change_interval.
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

// --- Saved state (detector_state.proto) -----------------------------------
// Each detector class below has `Save(proto*) const` and `static Load(proto,
// ..., where)`; `where` is the field path named in INVALID_ARGUMENT errors.

constexpr uint32_t kStateFormatVersion = 1;
constexpr int64_t kInfinitePastSeconds = std::numeric_limits<int64_t>::min();
constexpr int64_t kInfiniteFutureSeconds = std::numeric_limits<int64_t>::max();

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("detector state: ", where, ": ", what));
}

// Infinite times as the sentinels documented in detector_state.proto; finite
// ones at nanosecond resolution.
void SaveTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) {
    out->set_seconds(kInfinitePastSeconds);
    out->set_nanos(0);
    return;
  }
  if (t == absl::InfiniteFuture()) {
    out->set_seconds(kInfiniteFutureSeconds);
    out->set_nanos(0);
    return;
  }
  const int64_t secs = absl::ToUnixSeconds(t);  // Rounds down.
  out->set_seconds(secs);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(secs))));
}

// A required time field (`has` = the field is set).
absl::StatusOr<absl::Time> LoadTime(bool has,
                                    const google::protobuf::Timestamp& ts,
                                    absl::string_view where) {
  if (!has) return Invalid(where, "missing");
  if (ts.nanos() == 0 && ts.seconds() == kInfinitePastSeconds) {
    return absl::InfinitePast();
  }
  if (ts.nanos() == 0 && ts.seconds() == kInfiniteFutureSeconds) {
    return absl::InfiniteFuture();
  }
  if (ts.nanos() < 0 || ts.nanos() >= 1000000000) {
    return Invalid(where, absl::StrCat("nanos ", ts.nanos(), " out of range"));
  }
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::Status CheckCounts(uint64_t trials, uint64_t failures,
                         absl::string_view where) {
  if (failures > trials) {
    return Invalid(where,
                   absl::StrCat("failures ", failures, " > trials ", trials));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(double v, absl::string_view where) {
  if (!std::isfinite(v)) return Invalid(where, "not finite");
  return absl::OkStatus();
}

// A rate in (0, 1).
absl::Status CheckRate(double v, absl::string_view where) {
  if (!(v > 0 && v < 1)) {
    return Invalid(where, absl::StrCat("rate ", v, " is not in (0, 1)"));
  }
  return absl::OkStatus();
}

void SaveBin(const TimedBin& b, v1::TimedBinState* out) {
  SaveTime(b.time, out->mutable_time());
  out->set_trials(b.trials);
  out->set_failures(b.failures);
}

absl::StatusOr<TimedBin> LoadBin(const v1::TimedBinState& in,
                                 absl::string_view where) {
  TimedBin b;
  FC_ASSIGN_OR_RETURN(
      b.time, LoadTime(in.has_time(), in.time(), absl::StrCat(where, ".time")));
  FC_RETURN_IF_ERROR(CheckCounts(in.trials(), in.failures(), where));
  b.trials = in.trials();
  b.failures = in.failures();
  return b;
}

void SaveCusum(const BernoulliCusum& c, v1::CusumState* out) {
  const BernoulliCusum::State s = c.state();
  out->set_p0(s.p0);
  out->set_p1(s.p1);
  out->set_h(s.h);
  out->set_statistic(s.statistic);
  out->set_steps(s.steps);
  out->set_last_zero_step(s.last_zero_step);
  out->set_alarm_statistic(s.alarm_statistic);
  out->set_alarm_onset_step(s.alarm_onset_step);
}

absl::StatusOr<BernoulliCusum> LoadCusum(const v1::CusumState& in,
                                         absl::string_view where) {
  BernoulliCusum::State s;
  s.p0 = in.p0();
  s.p1 = in.p1();
  s.h = in.h();
  s.statistic = in.statistic();
  s.steps = in.steps();
  s.last_zero_step = in.last_zero_step();
  s.alarm_statistic = in.alarm_statistic();
  s.alarm_onset_step = in.alarm_onset_step();
  absl::StatusOr<BernoulliCusum> c = BernoulliCusum::FromState(s);
  if (!c.ok()) return Invalid(where, c.status().message());
  return c;
}

void SaveFix(const FixConfirmation& f, v1::FixConfirmationState* out) {
  const FixConfirmation::State s = f.state();
  out->set_p_bad(s.p_bad);
  for (double g : s.p_goods) out->add_p_goods(g);
  out->set_alpha(s.alpha);
  for (double l : s.llr) out->add_log_lr(l);
  out->set_trials(s.trials);
  out->set_failures(s.failures);
  out->set_confirmed(s.confirmed);
}

absl::StatusOr<FixConfirmation> LoadFix(const v1::FixConfirmationState& in,
                                        absl::string_view where) {
  FixConfirmation::State s;
  s.p_bad = in.p_bad();
  s.p_goods.assign(in.p_goods().begin(), in.p_goods().end());
  s.alpha = in.alpha();
  s.llr.assign(in.log_lr().begin(), in.log_lr().end());
  s.trials = in.trials();
  s.failures = in.failures();
  s.confirmed = in.confirmed();
  absl::StatusOr<FixConfirmation> f = FixConfirmation::FromState(s);
  if (!f.ok()) return Invalid(where, f.status().message());
  return f;
}

// Whether a detector in `state` has an episode (and so a fix test).
bool InEpisode(VerdictState state) {
  return state == v1::REGRESSION || state == v1::RECOVERING ||
         state == v1::FIX_CONFIRMED;
}

// The key shape each kind of detector has (see the header).
absl::Status CheckStateKey(const v1::StreamKey& key, VerdictKind kind,
                           absl::string_view where) {
  const std::string field = absl::StrCat(where, ".key");
  if (key.region().empty()) return Invalid(field, "region is empty");
  if (key.target().empty()) return Invalid(field, "target is empty");
  const bool has_mode =
      key.mode() == v1::BUFFERED || key.mode() == v1::RESPONSE_STREAM;
  const bool need_mode = kind != v1::MODE_DIFFERENCE;
  if (need_mode ? !has_mode : key.mode() != v1::INVOKE_MODE_UNSPECIFIED) {
    return Invalid(field, absl::StrCat("mode ", static_cast<int>(key.mode()),
                                       " does not fit the verdict kind"));
  }
  const bool need_size =
      kind == v1::STREAM_HEALTH || kind == v1::MODE_DIFFERENCE;
  if (!need_size) {
    if (!key.size_class().empty()) return Invalid(field, "size_class is set");
    return absl::OkStatus();
  }
  if (absl::StatusOr<uint64_t> bytes = ParseBytes(key.size_class());
      !bytes.ok()) {
    return Invalid(field,
                   absl::StrCat("size_class: ", bytes.status().message()));
  }
  return absl::OkStatus();
}

// One verdict and its transitions.
class Lifecycle {
 public:
  Lifecycle(VerdictKind kind, const Key& key) {
    verdict_.set_kind(kind);
    *verdict_.mutable_key() = ToStreamKey(key);
    verdict_.set_state(v1::HEALTHY);
    verdict_.set_previous_state(v1::VERDICT_STATE_UNSPECIFIED);
  }
  VerdictState state() const { return verdict_.state(); }
  const v1::Verdict& verdict() const { return verdict_; }

  void Move(VerdictState to, absl::Time t, v1::Evidence ev,
            std::vector<v1::Verdict>* out) {
    verdict_.set_previous_state(verdict_.state());
    verdict_.set_state(to);
    *verdict_.mutable_since() = ToProto(t);
    *verdict_.mutable_updated() = ToProto(t);
    *verdict_.mutable_evidence() = std::move(ev);
    out->push_back(verdict_);
  }
  // Refreshes the evidence without a transition.
  void Update(absl::Time t, v1::Evidence ev) {
    *verdict_.mutable_updated() = ToProto(t);
    *verdict_.mutable_evidence() = std::move(ev);
  }

  // The verdict is the whole state; its kind and key identify the detector.
  void Save(v1::Verdict* out) const { *out = verdict_; }
  static absl::StatusOr<Lifecycle> Load(const v1::Verdict& in, VerdictKind kind,
                                        absl::string_view where) {
    const std::string field = absl::StrCat(where, ".verdict");
    if (in.kind() != kind) {
      return Invalid(
          field, absl::StrCat("kind ", static_cast<int>(in.kind()),
                              " in the list of kind ", VerdictKind_Name(kind)));
    }
    FC_RETURN_IF_ERROR(CheckStateKey(in.key(), kind, field));
    if (in.state() < v1::HEALTHY || in.state() > v1::FIX_CONFIRMED) {
      return Invalid(field, absl::StrCat("state ", static_cast<int>(in.state()),
                                         " is not a verdict state"));
    }
    if (!v1::VerdictState_IsValid(in.previous_state())) {
      return Invalid(field, absl::StrCat("previous_state ",
                                         static_cast<int>(in.previous_state()),
                                         " is not a verdict state"));
    }
    Lifecycle life(kind, MakeKey(in.key()));
    life.verdict_ = in;
    return life;
  }

 private:
  v1::Verdict verdict_;
};

// REGRESSION -> RECOVERING -> FIX_CONFIRMED for one episode, on the failure
// rate the verdict is about.
class Recovery {
 public:
  enum class Event { kNone, kRecovering, kConfirmed };

  // `baseline_p0` is the pre-incident in-control rate the fix must return
  // near; `p0`/`p1` tune the reverse CUSUM (back to p0 from p1).
  void Start(const v1::DetectionConfig& cfg, double baseline_p0, double p0,
             double p1, absl::Time onset, absl::Time alarm,
             bool reverse_cusum) {
    p0_ = std::clamp(p0, 1e-12, 0.5);
    p1_ = std::clamp(p1, p0_ * 1.01, 0.999);
    baseline_p0_ = std::clamp(baseline_p0, 1e-12, 0.5);
    onset_ = onset;
    alarm_ = alarm;
    reverse_cusum_ = reverse_cusum;
    p_bad_floor_ = cfg.fix_p_bad() > 0 ? cfg.fix_p_bad() : cfg.p0_floor();
    cfg_p_good_ = cfg.fix_p_good();
    fix_alpha_ = cfg.fix_alpha();
    reverse_threshold_ = std::log((1 - cfg.alpha()) / cfg.alpha());
    reverse_a_ = std::log(p1_ / p0_);
    reverse_b_ = std::log1p(-p0_) - std::log1p(-p1_);
    bins_.clear();
    episode_trials_ = episode_failures_ = 0;
    incident_trials_ = incident_failures_ = 0;
    declared_used_ = false;
    ChooseRates();
    recovering_ = false;
    relapses_ = 0;
    Relapse();
  }

  // Back to REGRESSION: the test and the reverse CUSUM start over. Each
  // relapse of the episode doubles the reverse CUSUM's threshold, so a rate
  // hovering between "back" and "still bad" cannot cycle RECOVERING ->
  // REGRESSION (one alarm each) for long.
  void Relapse() {
    if (recovering_) ++relapses_;
    recovering_ = false;
    reverse_ = 0;
    fix_.emplace(p_bad_, Alternatives(), fix_alpha_);
  }

  // Enters RECOVERING at `t` (probes after it count). The test's rates are
  // fixed here, before any of its probes are seen.
  void EnterRecovering(absl::Time t) {
    recovering_ = true;
    start_ = t;
    ChooseRates();
    fix_.emplace(p_bad_, Alternatives(), fix_alpha_);
  }

  // Adds counts seen before the alarm to the episode (for dating only).
  void AddHistory(absl::Time t, uint64_t n, uint64_t k) {
    AppendBin(&bins_, t, n, k, kMaxEpisodeBins);
    episode_trials_ += n;
    episode_failures_ += k;
    if (!recovering_ && k > 0) {
      // The incident-rate estimate runs from the onset to the latest failure
      // before the test starts (the clean run that ends a fault is not part
      // of the fault).
      incident_trials_ = episode_trials_;
      incident_failures_ = episode_failures_;
    }
  }

  Event Observe(absl::Time t, uint64_t n, uint64_t k,
                const std::optional<absl::Time>& declared_fix) {
    AddHistory(t, n, k);
    if (!recovering_) {
      // A declared fix starts the test once per episode: after a relapse
      // it would restart the test right after the latest failure (a start
      // chosen by the data), so the reverse CUSUM decides again instead.
      if (declared_fix.has_value() && !declared_used_ &&
          *declared_fix >= onset_ && t >= std::max(*declared_fix, alarm_)) {
        declared_used_ = true;
        EnterRecovering(std::max(*declared_fix, alarm_));
        fix_->Observe(n, k);
        return fix_->Confirmed() ? Event::kConfirmed : Event::kRecovering;
      }
      if (reverse_cusum_) {
        reverse_ =
            std::max(0.0, reverse_ + static_cast<double>(n - k) * reverse_b_ -
                              static_cast<double>(k) * reverse_a_);
        if (reverse_ >= std::ldexp(reverse_threshold_,
                                   static_cast<int>(std::min(relapses_, 16)))) {
          EnterRecovering(t);
          return Event::kRecovering;
        }
      }
      return Event::kNone;
    }
    fix_->Observe(n, k);
    return fix_->Confirmed() ? Event::kConfirmed : Event::kNone;
  }

  // Evidence of the fix test (and the dated change when confirmed).
  void FillEvidence(v1::Evidence* ev, bool date) const {
    ev->set_statistic_name("fix_log_lr");
    ev->set_statistic(fix_->log_lr());
    ev->set_threshold(fix_->log_threshold());
    ev->set_likelihood_ratio(std::exp(std::min(700.0, fix_->log_lr())));
    ev->set_trials(fix_->trials());
    ev->set_failures(fix_->failures());
    ev->set_rate(fix_->trials() > 0 ? static_cast<double>(fix_->failures()) /
                                          static_cast<double>(fix_->trials())
                                    : 0);
    const RateInterval ci =
        ClopperPearsonInterval(fix_->failures(), fix_->trials(), 0.95);
    ev->mutable_rate_interval()->set_lower(ci.lower);
    ev->mutable_rate_interval()->set_upper(ci.upper);
    ev->mutable_rate_interval()->set_confidence(0.95);
    ev->set_proven_upper_bound(fix_->UpperBound());
    ev->set_null_rate(p_bad_);
    ev->set_alternative_rate(p_good_);
    if (IsFinite(start_)) *ev->mutable_confirmation_start() = ToProto(start_);
    if (date) DateInto(bins_, 0.95, ev);
    ev->set_summary(absl::StrFormat(
        "fix test from %s: %d failures in %d probes, LR %.4g (need %.4g) "
        "for rate <= %.3g (2 x pre-incident p0 %.3g, at most half the "
        "incident rate %.3g) against >= %.3g; rate < %.3g proven at %.0f%%; "
        "%d more clean probes needed",
        absl::FormatTime(start_, absl::UTCTimeZone()), fix_->failures(),
        fix_->trials(), std::exp(std::min(700.0, fix_->log_lr())),
        1 / fix_->alpha(), p_good_, baseline_p0_, incident_rate(), p_bad_,
        fix_->UpperBound(), 100 * (1 - fix_->alpha()),
        fix_->RemainingCleanProbes()));
  }

  // Clean probes FIX_CONFIRMED holds before HEALTHY: as many as the
  // confirmation took.
  uint64_t hold_trials() const {
    return std::max<uint64_t>(1, fix_ ? fix_->trials() : 0);
  }
  double p_bad() const { return p_bad_; }
  double baseline_p0() const { return baseline_p0_; }
  // Failures per trial from the onset to the last failure before the test.
  double incident_rate() const {
    return incident_trials_ > 0 ? static_cast<double>(incident_failures_) /
                                      static_cast<double>(incident_trials_)
                                : 0;
  }
  uint64_t episode_trials() const { return episode_trials_; }
  uint64_t episode_failures() const { return episode_failures_; }
  bool recovering() const { return recovering_; }

  void Save(v1::RecoveryState* out) const {
    out->set_p0(p0_);
    out->set_p1(p1_);
    out->set_reverse_a(reverse_a_);
    out->set_reverse_b(reverse_b_);
    out->set_reverse_threshold(reverse_threshold_);
    out->set_reverse_statistic(reverse_);
    out->set_reverse_cusum(reverse_cusum_);
    out->set_relapses(static_cast<uint32_t>(relapses_));
    out->set_p_bad(p_bad_);
    out->set_p_good(p_good_);
    out->set_baseline_p0(baseline_p0_);
    out->set_p_bad_floor(p_bad_floor_);
    out->set_configured_p_good(cfg_p_good_);
    out->set_fix_alpha(fix_alpha_);
    out->set_incident_trials(incident_trials_);
    out->set_incident_failures(incident_failures_);
    out->set_declared_fix_used(declared_used_);
    out->set_recovering(recovering_);
    SaveTime(onset_, out->mutable_onset());
    SaveTime(alarm_, out->mutable_alarm());
    SaveTime(start_, out->mutable_start());
    if (fix_) SaveFix(*fix_, out->mutable_fix());
    for (const TimedBin& b : bins_) SaveBin(b, out->add_bins());
    out->set_episode_trials(episode_trials_);
    out->set_episode_failures(episode_failures_);
  }

  // `need_fix`: the detector is in an episode, so the fix test must exist.
  static absl::StatusOr<Recovery> Load(const v1::RecoveryState& in,
                                       bool need_fix, absl::string_view where) {
    auto field = [&](absl::string_view name) {
      return absl::StrCat(where, ".", name);
    };
    Recovery r;
    for (const auto& [name, v] : {std::pair<const char*, double>{"p0", in.p0()},
                                  {"p1", in.p1()},
                                  {"p_bad", in.p_bad()},
                                  {"p_good", in.p_good()},
                                  {"baseline_p0", in.baseline_p0()},
                                  {"p_bad_floor", in.p_bad_floor()},
                                  {"fix_alpha", in.fix_alpha()}}) {
      FC_RETURN_IF_ERROR(CheckRate(v, field(name)));
    }
    for (const auto& [name, v] :
         {std::pair<const char*, double>{"reverse_a", in.reverse_a()},
          {"reverse_b", in.reverse_b()},
          {"reverse_threshold", in.reverse_threshold()},
          {"reverse_statistic", in.reverse_statistic()},
          {"configured_p_good", in.configured_p_good()}}) {
      FC_RETURN_IF_ERROR(CheckFinite(v, field(name)));
    }
    if (in.relapses() > (1u << 20)) {
      return Invalid(field("relapses"), "out of range");
    }
    FC_RETURN_IF_ERROR(CheckCounts(in.incident_trials(), in.incident_failures(),
                                   field("incident")));
    FC_RETURN_IF_ERROR(CheckCounts(in.episode_trials(), in.episode_failures(),
                                   field("episode")));
    r.p0_ = in.p0();
    r.p1_ = in.p1();
    r.reverse_a_ = in.reverse_a();
    r.reverse_b_ = in.reverse_b();
    r.reverse_threshold_ = in.reverse_threshold();
    r.reverse_ = in.reverse_statistic();
    r.reverse_cusum_ = in.reverse_cusum();
    r.relapses_ = static_cast<int>(in.relapses());
    r.p_bad_ = in.p_bad();
    r.p_good_ = in.p_good();
    r.baseline_p0_ = in.baseline_p0();
    r.p_bad_floor_ = in.p_bad_floor();
    r.cfg_p_good_ = in.configured_p_good();
    r.fix_alpha_ = in.fix_alpha();
    r.incident_trials_ = in.incident_trials();
    r.incident_failures_ = in.incident_failures();
    r.declared_used_ = in.declared_fix_used();
    r.recovering_ = in.recovering();
    FC_ASSIGN_OR_RETURN(r.onset_,
                        LoadTime(in.has_onset(), in.onset(), field("onset")));
    FC_ASSIGN_OR_RETURN(r.alarm_,
                        LoadTime(in.has_alarm(), in.alarm(), field("alarm")));
    FC_ASSIGN_OR_RETURN(r.start_,
                        LoadTime(in.has_start(), in.start(), field("start")));
    if (in.has_fix()) {
      FC_ASSIGN_OR_RETURN(r.fix_, LoadFix(in.fix(), field("fix")));
    } else if (need_fix) {
      return Invalid(field("fix"), "missing in an episode");
    }
    if (in.bins_size() > static_cast<int>(kMaxEpisodeBins)) {
      return Invalid(field("bins"), "too many");
    }
    for (int i = 0; i < in.bins_size(); ++i) {
      FC_ASSIGN_OR_RETURN(
          TimedBin b,
          LoadBin(in.bins(i), field(absl::StrCat("bins[", i, "]"))));
      r.bins_.push_back(b);
    }
    r.episode_trials_ = in.episode_trials();
    r.episode_failures_ = in.episode_failures();
    return r;
  }

 private:
  // p_bad = max(floor, 2 x baseline p0), capped at half the incident rate;
  // p_good = the configured one when below p_bad, else p_bad/100.
  void ChooseRates() {
    double p_bad = std::max(p_bad_floor_, 2 * baseline_p0_);
    const double incident = incident_rate();
    if (incident > 0) p_bad = std::min(p_bad, incident / 2);
    p_bad_ = std::clamp(p_bad, 1e-9, 0.5);
    p_good_ =
        (cfg_p_good_ > 0 && cfg_p_good_ < p_bad_) ? cfg_p_good_ : p_bad_ / 100;
  }

  // The fix test's alternatives: the configured p_good alone, else the
  // mixture p_bad/100, p_bad/10, p_bad/2 (fix_confirmation.h).
  std::vector<double> Alternatives() const {
    if (cfg_p_good_ > 0 && cfg_p_good_ < p_bad_) return {p_good_};
    return {p_bad_ / 100, p_bad_ / 10, p_bad_ / 2};
  }

  double p0_ = 1e-4, p1_ = 1e-3, p_bad_ = 1e-3, p_good_ = 1e-5;
  double baseline_p0_ = 1e-4, p_bad_floor_ = 1e-4, cfg_p_good_ = 0;
  uint64_t incident_trials_ = 0, incident_failures_ = 0;
  bool declared_used_ = false;
  int relapses_ = 0;
  double fix_alpha_ = 0.05, reverse_threshold_ = 4.6;
  double reverse_a_ = 0, reverse_b_ = 0, reverse_ = 0;
  bool reverse_cusum_ = true;
  bool recovering_ = false;
  absl::Time onset_, alarm_, start_;
  std::optional<FixConfirmation> fix_;
  std::vector<TimedBin> bins_;
  uint64_t episode_trials_ = 0, episode_failures_ = 0;
};

// Shared services the detectors need from the engine.
struct Context {
  v1::DetectionConfig cfg;
  int expected_streams = 0;
  std::optional<absl::Time> declared_fix;
  std::vector<v1::Verdict>* out = nullptr;

  // Rounds x > 0 up to the grid of `steps` points per decade.
  static double CeilToGrid(double x, double steps) {
    if (x <= 0) return x;
    return std::pow(10, std::ceil(std::log10(x) * steps - 1e-9) / steps);
  }
  // Threshold h for ARL >= arl0 when the true in-control rate is
  // ic_ratio x p0 (ic_ratio >= 1: p0 is an estimate and the true rate may be
  // higher). Computing h is costly (a lattice ARL model inside a bisection),
  // so h is memoized per process on rounded arguments: p0, ic_ratio and arl0
  // are rounded up to a 1/16-decade grid (at most 15 % higher: a slightly
  // less sensitive, never more alarming CUSUM), so re-arming as the baseline
  // moves rarely needs a new h. *p0_used is the rounded p0 the CUSUM must use.
  static double Threshold(double p0, double p1_ratio, double ic_ratio,
                          double arl0, double* p0_used) {
    static absl::Mutex mu(absl::kConstInit);
    static auto* cache =  // Guarded by mu.
        new std::map<std::tuple<double, double, double, double>, double>();
    const double q0 = std::min(CeilToGrid(p0, 16), kMaxP0);
    const double q1 = std::min(p1_ratio * q0, q0 + (0.999 - q0) * 0.5);
    const double qr = std::clamp(CeilToGrid(ic_ratio, 16), 1.0, kMaxIcRatio);
    const double qa = CeilToGrid(arl0, 16);
    *p0_used = q0;
    const auto key = std::make_tuple(q0, q1, qr, qa);
    {
      absl::MutexLock lock(&mu);
      auto it = cache->find(key);
      if (it != cache->end()) return it->second;
    }
    absl::StatusOr<double> h =
        CusumThresholdForArl0At(q0, q1, std::min(qr * q0, 0.5), qa);
    if (!h.ok()) h = CusumThresholdForArl0(q0, q1, qa);
    // Parameters are clamped by the caller, so this cannot fail; fall back
    // to the SPRT constant if it ever does.
    const double value = h.ok() ? std::max(*h, 1e-3) : std::log(99.0);
    absl::MutexLock lock(&mu);
    cache->emplace(key, value);
    return value;
  }
};

// A CUSUM-monitored rate with the full life cycle (STREAM_HEALTH and
// PHANTOM_ERRORS).
class RateMonitor {
 public:
  RateMonitor(VerdictKind kind, const Key& key, bool learn_baseline)
      : life_(kind, key), learn_baseline_(learn_baseline) {}

  const Lifecycle& life() const { return life_; }

  void Save(v1::RateMonitorState* out) const {
    life_.Save(out->mutable_verdict());
    if (cusum_) SaveCusum(*cusum_, out->mutable_cusum());
    out->set_arl0(arl0_);
    out->set_baseline_trials(baseline_trials_);
    out->set_baseline_failures(baseline_failures_);
    out->set_pending_trials(pending_trials_);
    out->set_pending_failures(pending_failures_);
    out->set_next_rearm_trials(next_rearm_);
    out->set_armed_streams(armed_streams_);
    if (first_time_) SaveTime(*first_time_, out->mutable_first_time());
    SaveTime(last_time_, out->mutable_last_time());
    out->set_total_trials(total_trials_);
    SaveTime(last_zero_time_, out->mutable_last_zero_time());
    SaveTime(run_start_, out->mutable_run_start());
    SaveTime(onset_, out->mutable_onset());
    for (const TimedBin& b : history_) SaveBin(b, out->add_history());
    out->set_episode_trials(episode_rate_n_);
    out->set_episode_failures(episode_rate_k_);
    recovery_.Save(out->mutable_recovery());
    out->set_hold_trials(hold_);
  }

  // `kind`: STREAM_HEALTH (learns its baseline) or PHANTOM_ERRORS.
  static absl::StatusOr<RateMonitor> Load(const v1::RateMonitorState& in,
                                          VerdictKind kind,
                                          absl::string_view where) {
    auto field = [&](absl::string_view name) {
      return absl::StrCat(where, ".", name);
    };
    FC_ASSIGN_OR_RETURN(Lifecycle life,
                        Lifecycle::Load(in.verdict(), kind, where));
    RateMonitor m(kind, MakeKey(in.verdict().key()), kind == v1::STREAM_HEALTH);
    m.life_ = std::move(life);
    if (in.has_cusum()) {
      FC_ASSIGN_OR_RETURN(m.cusum_, LoadCusum(in.cusum(), field("cusum")));
    }
    FC_RETURN_IF_ERROR(CheckFinite(in.arl0(), field("arl0")));
    FC_RETURN_IF_ERROR(CheckCounts(in.baseline_trials(), in.baseline_failures(),
                                   field("baseline")));
    FC_RETURN_IF_ERROR(CheckCounts(in.pending_trials(), in.pending_failures(),
                                   field("pending")));
    FC_RETURN_IF_ERROR(CheckCounts(in.episode_trials(), in.episode_failures(),
                                   field("episode")));
    if (in.armed_streams() < 0 ||
        in.armed_streams() > static_cast<int>(kMaxKeys)) {
      return Invalid(field("armed_streams"), "out of range");
    }
    m.arl0_ = in.arl0();
    m.baseline_trials_ = in.baseline_trials();
    m.baseline_failures_ = in.baseline_failures();
    m.pending_trials_ = in.pending_trials();
    m.pending_failures_ = in.pending_failures();
    m.next_rearm_ = in.next_rearm_trials();
    m.armed_streams_ = in.armed_streams();
    if (in.has_first_time()) {
      FC_ASSIGN_OR_RETURN(m.first_time_,
                          LoadTime(true, in.first_time(), field("first_time")));
    }
    FC_ASSIGN_OR_RETURN(
        m.last_time_,
        LoadTime(in.has_last_time(), in.last_time(), field("last_time")));
    m.total_trials_ = in.total_trials();
    FC_ASSIGN_OR_RETURN(m.last_zero_time_,
                        LoadTime(in.has_last_zero_time(), in.last_zero_time(),
                                 field("last_zero_time")));
    FC_ASSIGN_OR_RETURN(
        m.run_start_,
        LoadTime(in.has_run_start(), in.run_start(), field("run_start")));
    FC_ASSIGN_OR_RETURN(m.onset_,
                        LoadTime(in.has_onset(), in.onset(), field("onset")));
    if (in.history_size() > static_cast<int>(kMaxHistoryBins)) {
      return Invalid(field("history"), "too many bins");
    }
    for (int i = 0; i < in.history_size(); ++i) {
      FC_ASSIGN_OR_RETURN(
          TimedBin b,
          LoadBin(in.history(i), field(absl::StrCat("history[", i, "]"))));
      m.history_.push_back(b);
    }
    m.episode_rate_n_ = in.episode_trials();
    m.episode_rate_k_ = in.episode_failures();
    FC_ASSIGN_OR_RETURN(
        m.recovery_, Recovery::Load(in.recovery(), InEpisode(m.life_.state()),
                                    field("recovery")));
    m.hold_ = in.hold_trials();
    return m;
  }

  void Observe(Context* ctx, int family_streams, absl::Time t, uint64_t n,
               uint64_t k, const v1::Evidence& extra) {
    if (n == 0) return;
    if (!first_time_) first_time_ = t;
    last_time_ = t;
    total_trials_ += n;
    history_.push_back({t, n, k});
    if (history_.size() > kMaxHistoryBins) history_.pop_front();
    const VerdictState state = life_.state();
    if (!cusum_ || (state == v1::HEALTHY && cusum_->statistic() == 0 &&
                    (total_trials_ >= next_rearm_ ||
                     family_streams >= 2 * armed_streams_))) {
      Arm(ctx, family_streams);
    }
    if (cusum_->statistic() == 0) last_zero_time_ = t;
    const bool alarm = cusum_->Observe(n, k);
    // Clean history: probes outside episodes join the baseline once the
    // CUSUM is back at 0 (a run that ends in an alarm never does).
    if (state == v1::HEALTHY || state == v1::SUSPECT ||
        state == v1::FIX_CONFIRMED) {
      pending_trials_ += n;
      pending_failures_ += k;
      if (alarm) {
        pending_trials_ = pending_failures_ = 0;
      } else if (cusum_->statistic() == 0) {
        baseline_trials_ += pending_trials_;
        baseline_failures_ += pending_failures_;
        pending_trials_ = pending_failures_ = 0;
      }
    }
    if (cusum_->statistic() > 0 && run_start_ <= last_zero_time_) {
      run_start_ = t;  // First observation after S left 0.
    }
    if (state == v1::REGRESSION || state == v1::RECOVERING) {
      episode_rate_n_ += n;
      episode_rate_k_ += k;
    }
    switch (state) {
      case v1::HEALTHY:
      case v1::SUSPECT:
        if (alarm) {
          StartEpisode(ctx, t, extra);
        } else if (state == v1::HEALTHY &&
                   cusum_->statistic() >=
                       ctx->cfg.suspect_fraction() * cusum_->h()) {
          life_.Move(v1::SUSPECT, t, CusumEvidence(t, extra), ctx->out);
        } else if (state == v1::SUSPECT && cusum_->statistic() == 0) {
          life_.Move(v1::HEALTHY, t, CusumEvidence(t, extra), ctx->out);
        }
        break;
      case v1::REGRESSION: {
        const Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
        if (e == Recovery::Event::kNone) {
          if (alarm) life_.Update(t, AlarmEvidence(t, extra, /*date=*/false));
        } else {
          v1::Evidence ev = extra;
          recovery_.FillEvidence(&ev, e == Recovery::Event::kConfirmed);
          life_.Move(v1::RECOVERING, t, ev, ctx->out);
          if (e == Recovery::Event::kConfirmed) Confirm(ctx, t, extra);
        }
        break;
      }
      case v1::RECOVERING: {
        if (alarm) {
          recovery_.Relapse();
          life_.Move(v1::REGRESSION, t, AlarmEvidence(t, extra), ctx->out);
          break;
        }
        const Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
        if (e == Recovery::Event::kConfirmed) {
          Confirm(ctx, t, extra);
        } else {
          v1::Evidence ev = extra;
          recovery_.FillEvidence(&ev, false);
          life_.Update(t, ev);
        }
        break;
      }
      case v1::FIX_CONFIRMED:
        if (alarm) {
          StartEpisode(ctx, t, extra);
        } else {
          hold_ += n;
          if (hold_ >= recovery_.hold_trials()) {
            life_.Move(v1::HEALTHY, t, CusumEvidence(t, extra), ctx->out);
          }
        }
        break;
      default:
        break;
    }
  }

 private:
  void Arm(Context* ctx, int family_streams) {
    const v1::DetectionConfig& cfg = ctx->cfg;
    double p0 = BaselineP0(cfg);
    next_rearm_ = std::max<uint64_t>(100, 2 * total_trials_);
    armed_streams_ = family_streams;
    p0 = std::clamp(p0, 1e-9, kMaxP0);
    double per_month = cfg.probes_per_stream_per_month();
    if (per_month <= 0) {
      const double span = first_time_ && last_time_ > *first_time_
                              ? absl::ToDoubleSeconds(last_time_ - *first_time_)
                              : 0;
      per_month =
          span >= 60 ? static_cast<double>(total_trials_) / span * kMonthSeconds
                     : kDefaultProbesPerMonth;
    }
    const double streams = std::max(family_streams, ctx->expected_streams);
    const double arl0 = TargetArl0(kCusumFamilies * streams, per_month,
                                   cfg.false_alarms_per_month());
    const double h =
        Context::Threshold(p0, cfg.p1_ratio(), InControlRatio(cfg), arl0, &p0);
    const double p1 = std::min(cfg.p1_ratio() * p0, p0 + (0.999 - p0) * 0.5);
    cusum_.emplace(p0, p1, h);  // Only armed while S = 0.
    arl0_ = arl0;
  }

  // How much higher than BaselineP0 the true in-control rate plausibly is:
  // the baseline posterior's kIcQuantile quantile over its mean (1 for a
  // fixed p0). The CUSUM is designed at the mean, but h keeps ARL0 on budget
  // at that quantile, so a short history (a wide posterior) gets a higher h
  // rather than false alarms; with a long history the ratio goes to 1.
  double InControlRatio(const v1::DetectionConfig& cfg) const {
    if (!learn_baseline_) return 1;
    const double w = cfg.p0_prior_weight();
    const double a =
        cfg.p0_prior() * w + static_cast<double>(baseline_failures_);
    const double b = (1 - cfg.p0_prior()) * w +
                     static_cast<double>(baseline_trials_ - baseline_failures_);
    if (!(a > 0 && b > 0)) return 1;
    const double mean = BaselineP0(cfg);
    const double q = BetaQuantile(a, b, kIcQuantile);
    return std::isfinite(q) && mean > 0 ? std::max(1.0, q / mean) : 1;
  }

  // The stream's in-control rate: Beta-prior estimate from its clean history
  // (STREAM_HEALTH) or the floor (PHANTOM_ERRORS: zero when healthy).
  double BaselineP0(const v1::DetectionConfig& cfg) const {
    if (!learn_baseline_) return cfg.p0_floor();
    return BaselineRate(cfg, baseline_failures_, baseline_trials_);
  }

  v1::Evidence CusumEvidence(absl::Time, const v1::Evidence& extra) const {
    v1::Evidence ev = extra;
    ev.set_statistic_name("cusum");
    ev.set_statistic(cusum_->statistic());
    ev.set_threshold(cusum_->h());
    ev.set_null_rate(cusum_->p0());
    ev.set_alternative_rate(cusum_->p1());
    ev.set_trials(baseline_trials_);
    ev.set_failures(baseline_failures_);
    ev.set_rate(baseline_trials_ > 0 ? static_cast<double>(baseline_failures_) /
                                           static_cast<double>(baseline_trials_)
                                     : 0);
    const RateInterval w =
        WilsonInterval(baseline_failures_, baseline_trials_, 0.95);
    ev.mutable_rate_interval()->set_lower(w.lower);
    ev.mutable_rate_interval()->set_upper(w.upper);
    ev.mutable_rate_interval()->set_confidence(0.95);
    ev.set_summary(absl::StrFormat(
        "CUSUM %.3f of h %.3f (p0 %.3g, p1 %.3g, ARL0 %.3g probes)",
        cusum_->statistic(), cusum_->h(), cusum_->p0(), cusum_->p1(), arl0_));
    return ev;
  }

  // `date`: date the onset anew (a new episode or relapse); otherwise the
  // onset already in the verdict is kept (repeated alarms of one episode).
  v1::Evidence AlarmEvidence(absl::Time t, const v1::Evidence& extra,
                             bool date = true) const {
    v1::Evidence ev = CusumEvidence(t, extra);
    ev.set_statistic(cusum_->alarm_statistic());
    ev.set_trials(episode_rate_n_);
    ev.set_failures(episode_rate_k_);
    const double rate = episode_rate_n_ > 0
                            ? static_cast<double>(episode_rate_k_) /
                                  static_cast<double>(episode_rate_n_)
                            : 0;
    ev.set_rate(rate);
    const RateInterval ci =
        ClopperPearsonInterval(episode_rate_k_, episode_rate_n_, 0.95);
    ev.mutable_rate_interval()->set_lower(ci.lower);
    ev.mutable_rate_interval()->set_upper(ci.upper);
    ev.mutable_rate_interval()->set_confidence(0.95);
    // Onset: the change point over the recent history with its interval
    // (the CUSUM's last zero is in the summary); the CUSUM onset alone when
    // there is too little history to date.
    if (date) {
      std::vector<TimedBin> bins(history_.begin(), history_.end());
      DateInto(bins, 0.95, &ev);
    } else {
      const v1::Evidence& kept = life_.verdict().evidence();
      if (kept.has_change_time()) {
        *ev.mutable_change_time() = kept.change_time();
      }
      if (kept.has_change_interval()) {
        *ev.mutable_change_interval() = kept.change_interval();
      }
    }
    if (!ev.has_change_time() && IsFinite(onset_)) {
      *ev.mutable_change_time() = ToProto(onset_);
    }
    ev.set_summary(absl::StrFormat(
        "CUSUM alarm %.3f >= h %.3f (p0 %.3g, p1 %.3g, ARL0 %.3g probes); "
        "%d failures in %d probes since the CUSUM left 0 at %s",
        cusum_->alarm_statistic(), cusum_->h(), cusum_->p0(), cusum_->p1(),
        arl0_, episode_rate_k_, episode_rate_n_,
        IsFinite(onset_) ? absl::FormatTime(onset_, absl::UTCTimeZone())
                         : std::string("-")));
    return ev;
  }

  void StartEpisode(Context* ctx, absl::Time t, const v1::Evidence& extra) {
    onset_ = run_start_ > absl::InfinitePast() ? run_start_ : t;
    // Counts since the onset from the history.
    episode_rate_n_ = episode_rate_k_ = 0;
    for (const TimedBin& b : history_) {
      if (b.time >= onset_) {
        episode_rate_n_ += b.trials;
        episode_rate_k_ += b.failures;
      }
    }
    // The reverse CUSUM decides "back to p0" against "still at
    // kRecoverRatio x p0" when p0 is an estimate: a stream whose true
    // in-control rate is a few times a (short-history) estimate stays in
    // REGRESSION instead of cycling RECOVERING -> REGRESSION, since the fix
    // test could never confirm it anyway (its p_bad is 2 x p0).
    const double reverse_p1 =
        learn_baseline_ ? std::min(cusum_->p1(), kRecoverRatio * cusum_->p0())
                        : cusum_->p1();
    recovery_.Start(ctx->cfg, std::min(BaselineP0(ctx->cfg), kMaxP0),
                    cusum_->p0(), reverse_p1, onset_, t, true);
    for (const TimedBin& b : history_) {
      if (b.time >= onset_) recovery_.AddHistory(b.time, b.trials, b.failures);
    }
    life_.Move(v1::REGRESSION, t, AlarmEvidence(t, extra), ctx->out);
  }

  void Confirm(Context* ctx, absl::Time t, const v1::Evidence& extra) {
    v1::Evidence ev = extra;
    recovery_.FillEvidence(&ev, true);
    hold_ = 0;
    life_.Move(v1::FIX_CONFIRMED, t, ev, ctx->out);
  }

  Lifecycle life_;
  bool learn_baseline_;
  std::optional<BernoulliCusum> cusum_;
  double arl0_ = 0;
  // Clean history (in control) and the probes since S last was 0.
  uint64_t baseline_trials_ = 0, baseline_failures_ = 0;
  uint64_t pending_trials_ = 0, pending_failures_ = 0;
  uint64_t next_rearm_ = 0;
  int armed_streams_ = 0;
  std::optional<absl::Time> first_time_;
  absl::Time last_time_ = absl::InfinitePast();
  uint64_t total_trials_ = 0;
  absl::Time last_zero_time_ = absl::InfinitePast();
  absl::Time run_start_ = absl::InfinitePast();
  absl::Time onset_ = absl::InfinitePast();
  std::deque<TimedBin> history_;
  uint64_t episode_rate_n_ = 0, episode_rate_k_ = 0;
  Recovery recovery_;
  uint64_t hold_ = 0;
};

// Stream vs buffered in one region/target/size.
class ModeComparison {
 public:
  explicit ModeComparison(const Key& key) : life_(v1::MODE_DIFFERENCE, key) {}
  const Lifecycle& life() const { return life_; }

  void Save(v1::ModeComparisonState* out) const {
    life_.Save(out->mutable_verdict());
    out->set_bucket_stream_trials(n_s_);
    out->set_bucket_stream_failures(x_s_);
    out->set_bucket_buffered_trials(n_b_);
    out->set_bucket_buffered_failures(x_b_);
    out->set_segment_stream_trials(seg_n_s_);
    out->set_segment_stream_failures(seg_x_s_);
    out->set_segment_buffered_trials(seg_n_b_);
    out->set_segment_buffered_failures(seg_x_b_);
    SaveTime(segment_start_, out->mutable_segment_start());
    out->set_llr(llr_);
    out->set_suspect_probes(suspect_probes_);
    recovery_.Save(out->mutable_recovery());
    out->set_hold_trials(hold_);
  }

  static absl::StatusOr<ModeComparison> Load(const v1::ModeComparisonState& in,
                                             absl::string_view where) {
    auto field = [&](absl::string_view name) {
      return absl::StrCat(where, ".", name);
    };
    FC_ASSIGN_OR_RETURN(
        Lifecycle life,
        Lifecycle::Load(in.verdict(), v1::MODE_DIFFERENCE, where));
    ModeComparison c(MakeKey(in.verdict().key()));
    c.life_ = std::move(life);
    FC_RETURN_IF_ERROR(CheckCounts(in.bucket_stream_trials(),
                                   in.bucket_stream_failures(),
                                   field("bucket_stream")));
    FC_RETURN_IF_ERROR(CheckCounts(in.bucket_buffered_trials(),
                                   in.bucket_buffered_failures(),
                                   field("bucket_buffered")));
    FC_RETURN_IF_ERROR(CheckCounts(in.segment_stream_trials(),
                                   in.segment_stream_failures(),
                                   field("segment_stream")));
    FC_RETURN_IF_ERROR(CheckCounts(in.segment_buffered_trials(),
                                   in.segment_buffered_failures(),
                                   field("segment_buffered")));
    FC_RETURN_IF_ERROR(CheckFinite(in.llr(), field("llr")));
    c.n_s_ = in.bucket_stream_trials();
    c.x_s_ = in.bucket_stream_failures();
    c.n_b_ = in.bucket_buffered_trials();
    c.x_b_ = in.bucket_buffered_failures();
    c.seg_n_s_ = in.segment_stream_trials();
    c.seg_x_s_ = in.segment_stream_failures();
    c.seg_n_b_ = in.segment_buffered_trials();
    c.seg_x_b_ = in.segment_buffered_failures();
    FC_ASSIGN_OR_RETURN(c.segment_start_,
                        LoadTime(in.has_segment_start(), in.segment_start(),
                                 field("segment_start")));
    c.llr_ = in.llr();
    c.suspect_probes_ = in.suspect_probes();
    FC_ASSIGN_OR_RETURN(
        c.recovery_, Recovery::Load(in.recovery(), InEpisode(c.life_.state()),
                                    field("recovery")));
    c.hold_ = in.hold_trials();
    return c;
  }

  void Add(v1::InvokeMode mode, uint64_t n, uint64_t k) {
    if (mode == v1::RESPONSE_STREAM) {
      n_s_ += n;
      x_s_ += k;
    } else {
      n_b_ += n;
      x_b_ += k;
    }
  }
  bool pending() const { return n_s_ + n_b_ > 0; }

  void CloseBucket(Context* ctx, absl::Time t) {
    const uint64_t n_s = n_s_, x_s = x_s_, n_b = n_b_, x_b = x_b_;
    n_s_ = x_s_ = n_b_ = x_b_ = 0;
    const v1::DetectionConfig& cfg = ctx->cfg;
    const double log_a = std::log((1 - cfg.alpha()) / cfg.alpha());
    const double log_b = -log_a;
    const VerdictState state = life_.state();
    if (state == v1::REGRESSION || state == v1::RECOVERING) {
      // Recovery watches the streaming rate.
      const Recovery::Event e =
          recovery_.Observe(t, n_s, x_s, ctx->declared_fix);
      if (e != Recovery::Event::kNone) {
        v1::Evidence ev = SplitEvidence();
        recovery_.FillEvidence(&ev, e == Recovery::Event::kConfirmed);
        if (state == v1::REGRESSION) {
          life_.Move(v1::RECOVERING, t, ev, ctx->out);
        }
        if (e == Recovery::Event::kConfirmed) {
          hold_ = 0;
          life_.Move(v1::FIX_CONFIRMED, t, ev, ctx->out);
        }
        // The split SPRT starts over from here: failures from before the
        // fix never count towards a new SUSPECT or REGRESSION.
        ResetSegment(t);
        return;
      }
    } else if (state == v1::FIX_CONFIRMED) {
      hold_ += n_s;
    }
    if (n_s == 0 || n_b == 0) return;
    if (state == v1::SUSPECT) suspect_probes_ += n_s;
    seg_n_s_ += n_s;
    seg_x_s_ += x_s;
    seg_n_b_ += n_b;
    seg_x_b_ += x_b;
    const double pi0 =
        static_cast<double>(n_s) / static_cast<double>(n_s + n_b);
    const double pi1 = SplitAlternative(n_s, n_b, cfg.mode_rr1());
    llr_ += SplitLogLikelihoodRatio(x_s, x_b, pi0, pi1);
    if (llr_ >= log_a) {
      v1::Evidence ev = SplitEvidence();
      ev.set_threshold(log_a);
      if (state == v1::REGRESSION) {
        life_.Update(t, ev);
      } else {
        // The buffered control is the baseline the streaming rate must
        // return near.
        const double p0 =
            std::min(BaselineRate(cfg, seg_x_b_, seg_n_b_), kMaxP0);
        const double p1 = std::max(
            static_cast<double>(seg_x_s_) / static_cast<double>(seg_n_s_),
            cfg.p1_ratio() * p0);
        recovery_.Start(cfg, p0, p0, p1, segment_start_, t, true);
        life_.Move(v1::REGRESSION, t, ev, ctx->out);
      }
      ResetSegment(t);
      return;
    }
    if (llr_ <= log_b) {
      if (state == v1::SUSPECT) {
        life_.Move(v1::HEALTHY, t, SplitEvidence(), ctx->out);
      }
      ResetSegment(t);
      return;
    }
    if (state == v1::HEALTHY && llr_ >= cfg.suspect_fraction() * log_a) {
      v1::Evidence ev = SplitEvidence();
      ev.set_threshold(log_a);
      suspect_probes_ = 0;
      life_.Move(v1::SUSPECT, t, ev, ctx->out);
    } else if (state == v1::SUSPECT && llr_ <= 0) {
      life_.Move(v1::HEALTHY, t, SplitEvidence(), ctx->out);
    } else if (state == v1::SUSPECT && suspect_probes_ >= kSuspectHorizon) {
      // The split test only learns from failures: clean paired probes do
      // not move it. A SUSPECT that reached no decision within the horizon
      // resolves to HEALTHY and the test starts over.
      v1::Evidence ev = SplitEvidence();
      ev.set_summary(
          absl::StrCat("no decision within ", kSuspectHorizon,
                       " paired streaming probes; the split test starts over. ",
                       ev.summary()));
      life_.Move(v1::HEALTHY, t, ev, ctx->out);
      ResetSegment(t);
    } else if (state == v1::FIX_CONFIRMED && hold_ >= recovery_.hold_trials()) {
      life_.Move(v1::HEALTHY, t, SplitEvidence(), ctx->out);
      ResetSegment(t);
    }
  }

 private:
  void ResetSegment(absl::Time t) {
    llr_ = 0;
    seg_n_s_ = seg_x_s_ = seg_n_b_ = seg_x_b_ = 0;
    segment_start_ = t;
  }

  v1::Evidence SplitEvidence() const {
    v1::Evidence ev;
    SetClasses(&ev, false);
    ev.set_trials(seg_n_s_);
    ev.set_failures(seg_x_s_);
    ev.set_control_trials(seg_n_b_);
    ev.set_control_failures(seg_x_b_);
    ev.set_statistic_name("split_sprt_llr");
    ev.set_statistic(llr_);
    if (seg_n_s_ > 0 && seg_n_b_ > 0) {
      const ErrorSplit split =
          ErrorSplitTest(seg_x_s_, seg_n_s_, seg_x_b_, seg_n_b_, 0.95, 3.0);
      ev.set_p_value(split.p_value);
      ev.set_likelihood_ratio(split.mixture_lr);
      ev.set_rate_ratio(split.rate_ratio);
      ev.mutable_rate_ratio_interval()->set_lower(
          split.rate_ratio_interval.lower);
      ev.mutable_rate_ratio_interval()->set_upper(
          split.rate_ratio_interval.upper);
      ev.mutable_rate_ratio_interval()->set_confidence(0.95);
      ev.set_null_rate(split.pi0);
      ev.set_alternative_rate(split.pi1);
      ev.set_rate(static_cast<double>(seg_x_s_) /
                  static_cast<double>(seg_n_s_));
      ev.set_summary(absl::StrFormat(
          "stream %d/%d vs buffered %d/%d failures: RR %.3g [%.3g, %.3g], "
          "exact p %.3g, SPRT LLR %.3f, mixture LR %.3g",
          seg_x_s_, seg_n_s_, seg_x_b_, seg_n_b_, split.rate_ratio,
          split.rate_ratio_interval.lower, split.rate_ratio_interval.upper,
          split.p_value, llr_, split.mixture_lr));
    }
    if (IsFinite(segment_start_)) {
      *ev.mutable_change_time() = ToProto(segment_start_);
    }
    return ev;
  }

  Lifecycle life_;
  uint64_t n_s_ = 0, x_s_ = 0, n_b_ = 0, x_b_ = 0;  // Open bucket.
  uint64_t seg_n_s_ = 0, seg_x_s_ = 0, seg_n_b_ = 0, seg_x_b_ = 0;
  absl::Time segment_start_ = absl::InfinitePast();
  double llr_ = 0;
  uint64_t suspect_probes_ = 0;  // Paired streaming probes while SUSPECT.
  Recovery recovery_;
  uint64_t hold_ = 0;
};

// Size trend of one region/target/mode.
class TrendFamily {
 public:
  explicit TrendFamily(const Key& key) : life_(v1::SIZE_TREND, key) {}
  const Lifecycle& life() const { return life_; }

  void Save(v1::TrendFamilyState* out) const {
    life_.Save(out->mutable_verdict());
    for (const auto& [bytes, c] : window_) {
      v1::SizeCounts* w = out->add_window();
      w->set_bytes(bytes);
      w->set_trials(c.first);
      w->set_failures(c.second);
    }
    SaveTime(suspect_window_start_, out->mutable_suspect_window_start());
    SaveTime(confirmed_at_, out->mutable_confirmed_at());
    recovery_.Save(out->mutable_recovery());
    out->set_hold_trials(hold_);
  }

  static absl::StatusOr<TrendFamily> Load(const v1::TrendFamilyState& in,
                                          absl::string_view where) {
    auto field = [&](absl::string_view name) {
      return absl::StrCat(where, ".", name);
    };
    FC_ASSIGN_OR_RETURN(Lifecycle life,
                        Lifecycle::Load(in.verdict(), v1::SIZE_TREND, where));
    TrendFamily f(MakeKey(in.verdict().key()));
    f.life_ = std::move(life);
    for (int i = 0; i < in.window_size(); ++i) {
      const v1::SizeCounts& w = in.window(i);
      const std::string name = field(absl::StrCat("window[", i, "]"));
      FC_RETURN_IF_ERROR(CheckCounts(w.trials(), w.failures(), name));
      if (!f.window_
               .emplace(w.bytes(), std::make_pair(w.trials(), w.failures()))
               .second) {
        return Invalid(name, absl::StrCat("size ", w.bytes(), " repeated"));
      }
    }
    FC_ASSIGN_OR_RETURN(
        f.suspect_window_start_,
        LoadTime(in.has_suspect_window_start(), in.suspect_window_start(),
                 field("suspect_window_start")));
    FC_ASSIGN_OR_RETURN(f.confirmed_at_,
                        LoadTime(in.has_confirmed_at(), in.confirmed_at(),
                                 field("confirmed_at")));
    FC_ASSIGN_OR_RETURN(
        f.recovery_, Recovery::Load(in.recovery(), InEpisode(f.life_.state()),
                                    field("recovery")));
    f.hold_ = in.hold_trials();
    return f;
  }

  void Add(uint64_t bytes, uint64_t n, uint64_t k) {
    auto& c = window_[bytes];
    c.first += n;
    c.second += k;
  }
  // The window's one-sided p-value, or nullopt when not testable.
  std::optional<TrendTest> Test() {
    if (window_.size() < 2) return std::nullopt;
    std::vector<uint64_t> x, n;
    std::vector<double> s;
    uint64_t failures = 0;
    for (const auto& [bytes, c] : window_) {
      n.push_back(c.first);
      x.push_back(c.second);
      s.push_back(std::log2(static_cast<double>(std::max<uint64_t>(bytes, 1))));
      failures += c.second;
    }
    if (failures == 0) return std::nullopt;
    absl::StatusOr<TrendTest> t = CochranArmitage(x, n, s);
    if (!t.ok()) return std::nullopt;
    return *t;
  }

  void CloseWindow(Context* ctx, absl::Time t, absl::Duration window,
                   const std::optional<TrendTest>& test, double adjusted_p,
                   bool significant) {
    uint64_t n = 0, k = 0;
    for (const auto& [bytes, c] : window_) {
      n += c.first;
      k += c.second;
    }
    v1::Evidence ev;
    SetClasses(&ev, false);
    ev.set_trials(n);
    ev.set_failures(k);
    ev.set_threshold(ctx->cfg.trend_alpha());
    if (test) {
      ev.set_statistic_name(test->exact ? "trend_z_exact_p" : "trend_z");
      ev.set_statistic(test->z);
      ev.set_p_value(test->p_increasing);
    }
    std::string per_size;
    for (const auto& [bytes, c] : window_) {
      const RateInterval w = WilsonInterval(c.second, c.first, 0.95);
      absl::StrAppendFormat(&per_size, " %s: %d/%d [%.3g, %.3g];",
                            FormatBytes(bytes), c.second, c.first, w.lower,
                            w.upper);
    }
    ev.set_summary(absl::StrFormat(
        "Cochran-Armitage over log2(bytes): Z %.3f, one-sided p %.3g, BH "
        "adjusted %.3g;%s",
        test ? test->z : 0.0, test ? test->p_increasing : 1.0, adjusted_p,
        per_size));
    window_.clear();
    const VerdictState state = life_.state();
    switch (state) {
      case v1::HEALTHY:
        if (significant) life_.Move(v1::SUSPECT, t, ev, ctx->out);
        break;
      case v1::SUSPECT:
        if (significant) {
          recovery_.Start(
              ctx->cfg, ctx->cfg.p0_floor(), ctx->cfg.p0_floor(),
              ctx->cfg.p1_ratio() * ctx->cfg.p0_floor(),
              life_.verdict().since().seconds() > 0
                  ? absl::FromUnixSeconds(life_.verdict().since().seconds())
                  : t,
              t, false);
          // Significant windows are part of the episode the fix is dated
          // over: without them the change is dated after the fix.
          recovery_.AddHistory(t, n, k);
          life_.Move(v1::REGRESSION, t, ev, ctx->out);
        } else {
          life_.Move(v1::HEALTHY, t, ev, ctx->out);
        }
        break;
      case v1::REGRESSION:
      case v1::RECOVERING: {
        if (significant) {
          if (state == v1::RECOVERING) {
            recovery_.Relapse();
            life_.Move(v1::REGRESSION, t, ev, ctx->out);
          } else {
            life_.Update(t, ev);
          }
          recovery_.AddHistory(t, n, k);
          break;
        }
        Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
        if (state == v1::REGRESSION && !recovery_.recovering()) {
          recovery_.EnterRecovering(t);
          e = Recovery::Event::kRecovering;
        }
        v1::Evidence rec = ev;
        recovery_.FillEvidence(&rec, e == Recovery::Event::kConfirmed);
        if (state == v1::REGRESSION)
          life_.Move(v1::RECOVERING, t, rec, ctx->out);
        if (e == Recovery::Event::kConfirmed) {
          hold_ = 0;
          confirmed_at_ = t;
          life_.Move(v1::FIX_CONFIRMED, t, rec, ctx->out);
        }
        break;
      }
      case v1::FIX_CONFIRMED:
        // A window that began before the confirmation holds pre-fix data:
        // it never raises a new SUSPECT.
        if (significant && t - window >= confirmed_at_) {
          suspect_window_start_ = t - window;
          life_.Move(v1::SUSPECT, t, ev, ctx->out);
        } else {
          hold_ += n;
          if (hold_ >= recovery_.hold_trials()) {
            life_.Move(v1::HEALTHY, t, ev, ctx->out);
          }
        }
        break;
      default:
        break;
    }
  }
  bool pending() const { return !window_.empty(); }

 private:
  Lifecycle life_;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> window_;
  absl::Time suspect_window_start_ = absl::InfinitePast();
  absl::Time confirmed_at_ = absl::InfinitePast();
  Recovery recovery_;
  uint64_t hold_ = 0;
};

// Hard-down rule of one region/target/mode.
class HardDown {
 public:
  HardDown(const Key& key, const v1::DetectionConfig& cfg)
      : life_(v1::HARD_DOWN, key),
        rule_(cfg.hard_down_consecutive(), cfg.hard_down_agents()) {}
  const Lifecycle& life() const { return life_; }

  void Save(v1::HardDownState* out) const {
    life_.Save(out->mutable_verdict());
    for (const auto& [agent, run] : rule_.runs()) {
      v1::AgentRun* r = out->add_runs();
      r->set_agent(agent);
      r->set_run(run);
    }
    recovery_.Save(out->mutable_recovery());
    out->set_baseline_trials(baseline_n_);
    out->set_baseline_failures(baseline_k_);
    out->set_hold_trials(hold_);
  }

  static absl::StatusOr<HardDown> Load(const v1::HardDownState& in,
                                       const v1::DetectionConfig& cfg,
                                       absl::string_view where) {
    auto field = [&](absl::string_view name) {
      return absl::StrCat(where, ".", name);
    };
    FC_ASSIGN_OR_RETURN(Lifecycle life,
                        Lifecycle::Load(in.verdict(), v1::HARD_DOWN, where));
    HardDown h(MakeKey(in.verdict().key()), cfg);
    h.life_ = std::move(life);
    std::map<std::string, uint64_t> runs;
    for (int i = 0; i < in.runs_size(); ++i) {
      if (!runs.emplace(in.runs(i).agent(), in.runs(i).run()).second) {
        return Invalid(
            field(absl::StrCat("runs[", i, "]")),
            absl::StrCat("agent \"", in.runs(i).agent(), "\" repeated"));
      }
    }
    h.rule_ = HardDownRule::FromRuns(cfg.hard_down_consecutive(),
                                     cfg.hard_down_agents(), std::move(runs));
    FC_RETURN_IF_ERROR(CheckCounts(in.baseline_trials(), in.baseline_failures(),
                                   field("baseline")));
    h.baseline_n_ = in.baseline_trials();
    h.baseline_k_ = in.baseline_failures();
    FC_ASSIGN_OR_RETURN(
        h.recovery_, Recovery::Load(in.recovery(), InEpisode(h.life_.state()),
                                    field("recovery")));
    h.hold_ = in.hold_trials();
    return h;
  }

  void Observe(Context* ctx, const std::string& agent, absl::Time t,
               bool failed) {
    const bool down = rule_.Observe(agent, failed);
    const uint32_t in_run = rule_.agents_in_run();
    const VerdictState state = life_.state();
    if (state == v1::HEALTHY) {
      baseline_n_ += 1;
      baseline_k_ += failed ? 1 : 0;
    }
    v1::Evidence ev;
    SetClasses(&ev, false);
    ev.set_statistic_name("agents_in_failure_run");
    ev.set_statistic(in_run);
    ev.set_threshold(ctx->cfg.hard_down_agents());
    ev.set_summary(absl::StrFormat(
        "%d agent(s) with >= %d consecutive failures (rule: %d agents)", in_run,
        rule_.consecutive(), ctx->cfg.hard_down_agents()));
    switch (state) {
      case v1::HEALTHY:
      case v1::SUSPECT:
      case v1::FIX_CONFIRMED:
        if (down) {
          *ev.mutable_change_time() = ToProto(t);
          const double p0 = std::min(
              BaselineRate(ctx->cfg, baseline_k_, baseline_n_), kMaxP0);
          recovery_.Start(ctx->cfg, p0, p0, std::max(0.5, 2 * p0), t, t, false);
          life_.Move(v1::REGRESSION, t, ev, ctx->out);
        } else if (state == v1::HEALTHY && in_run >= 1) {
          life_.Move(v1::SUSPECT, t, ev, ctx->out);
        } else if (state == v1::SUSPECT && in_run == 0) {
          life_.Move(v1::HEALTHY, t, ev, ctx->out);
        } else if (state == v1::FIX_CONFIRMED) {
          if (++hold_ >= recovery_.hold_trials()) {
            life_.Move(v1::HEALTHY, t, ev, ctx->out);
          }
        }
        break;
      case v1::REGRESSION:
      case v1::RECOVERING: {
        if (down) {
          if (state == v1::RECOVERING) {
            recovery_.Relapse();
            life_.Move(v1::REGRESSION, t, ev, ctx->out);
          }
          recovery_.Observe(t, 1, failed ? 1 : 0, std::nullopt);
          break;
        }
        Recovery::Event e =
            recovery_.Observe(t, 1, failed ? 1 : 0, ctx->declared_fix);
        if (state == v1::REGRESSION && !recovery_.recovering()) {
          recovery_.EnterRecovering(t);
          e = Recovery::Event::kRecovering;
        }
        if (state == v1::REGRESSION) {
          v1::Evidence rec = ev;
          recovery_.FillEvidence(&rec, false);
          life_.Move(v1::RECOVERING, t, rec, ctx->out);
        }
        if (e == Recovery::Event::kConfirmed) {
          v1::Evidence rec = ev;
          recovery_.FillEvidence(&rec, true);
          hold_ = 0;
          life_.Move(v1::FIX_CONFIRMED, t, rec, ctx->out);
        }
        break;
      }
      default:
        break;
    }
  }

 private:
  Lifecycle life_;
  HardDownRule rule_;
  Recovery recovery_;
  uint64_t baseline_n_ = 0, baseline_k_ = 0;
  uint64_t hold_ = 0;
};

absl::Status CheckKey(const v1::StreamKey& key, bool need_size) {
  if (key.region().empty()) {
    return absl::InvalidArgumentError("stream key: region is empty");
  }
  if (key.target().empty()) {
    return absl::InvalidArgumentError("stream key: target is empty");
  }
  if (key.mode() != v1::BUFFERED && key.mode() != v1::RESPONSE_STREAM) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream key: mode must be BUFFERED or RESPONSE_STREAM, got ",
        static_cast<int>(key.mode())));
  }
  if (need_size && key.size_class().empty()) {
    return absl::InvalidArgumentError("stream key: size_class is empty");
  }
  return absl::OkStatus();
}

class VerdictEngineImpl : public VerdictEngine {
 public:
  VerdictEngineImpl(const v1::DetectionConfig& cfg, int expected_streams) {
    ctx_.cfg = cfg;
    ctx_.expected_streams = expected_streams;
    ctx_.out = &transitions_;
    bucket_ = absl::Seconds(cfg.comparison_bucket().seconds()) +
              absl::Nanoseconds(cfg.comparison_bucket().nanos());
    window_ = absl::Seconds(cfg.trend_window().seconds()) +
              absl::Nanoseconds(cfg.trend_window().nanos());
  }

  absl::Status ObserveProbe(const v1::StreamKey& key,
                            const std::string& agent_id, absl::Time time,
                            v1::OutcomeClass outcome_class) override {
    if (!v1::OutcomeClass_IsValid(outcome_class)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "outcome_class: unknown value ", static_cast<int>(outcome_class)));
    }
    ClassCounts counts;
    counts.Add(outcome_class);
    if (absl::Status s = Observe(key, time, counts); !s.ok()) return s;
    if (!IsTrial(outcome_class)) return absl::OkStatus();
    const Key hk{key.region(), key.target(), key.mode(), ""};
    auto it = hard_down_.find(hk);
    if (it == hard_down_.end()) {
      it = hard_down_.emplace(hk, HardDown(hk, ctx_.cfg)).first;
    }
    it->second.Observe(&ctx_, agent_id, time,
                       IsStreamHealthFailure(outcome_class));
    return absl::OkStatus();
  }

  absl::Status Observe(const v1::StreamKey& key, absl::Time time,
                       const ClassCounts& counts) override {
    if (absl::Status s = CheckKey(key, true); !s.ok()) return s;
    if (time < watermark_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "time ", absl::FormatTime(time), " is before the previous one ",
          absl::FormatTime(watermark_), " (feed observations in time order)"));
    }
    absl::StatusOr<uint64_t> bytes = ParseBytes(key.size_class());
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stream key: size_class: ", bytes.status().message()));
    }
    const Key k = MakeKey(key);
    if (streams_.find(k) == streams_.end() && streams_.size() >= kMaxKeys) {
      return absl::ResourceExhaustedError("too many streams");
    }
    AdvanceTo(time);
    const uint64_t n = counts.Trials();
    const uint64_t f = counts.StreamHealthFailures();
    if (n == 0) return absl::OkStatus();
    auto it = streams_.find(k);
    if (it == streams_.end()) {
      it = streams_.emplace(k, RateMonitor(v1::STREAM_HEALTH, k, true)).first;
    }
    v1::Evidence extra;
    SetClasses(&extra, false);
    it->second.Observe(&ctx_, static_cast<int>(streams_.size()), time, n, f,
                       extra);
    // Mode comparison (same region/target/size, mode unset).
    const Key ck{key.region(), key.target(), v1::INVOKE_MODE_UNSPECIFIED,
                 key.size_class()};
    auto cit = comparisons_.find(ck);
    if (cit == comparisons_.end()) {
      cit = comparisons_.emplace(ck, ModeComparison(ck)).first;
    }
    cit->second.Add(key.mode(), n, f);
    // Size trend (region/target/mode, size unset).
    const Key tk{key.region(), key.target(), key.mode(), ""};
    auto tit = trends_.find(tk);
    if (tit == trends_.end()) tit = trends_.emplace(tk, TrendFamily(tk)).first;
    tit->second.Add(*bytes, n, f);
    return absl::OkStatus();
  }

  absl::Status ObservePlatform(const v1::StreamKey& key,
                               absl::Time period_start, double platform_errors,
                               double platform_invocations,
                               uint64_t client_failures,
                               uint64_t client_probes) override {
    if (absl::Status s = CheckKey(key, false); !s.ok()) return s;
    if (!std::isfinite(platform_errors) || platform_errors < 0) {
      return absl::InvalidArgumentError(
          "platform_errors must be a finite value >= 0");
    }
    if (!std::isfinite(platform_invocations) || platform_invocations < 0) {
      return absl::InvalidArgumentError(
          "platform_invocations must be a finite value >= 0");
    }
    if (client_failures > client_probes) {
      return absl::InvalidArgumentError("client_failures > client_probes");
    }
    const Key k{key.region(), key.target(), key.mode(), ""};
    auto last = platform_time_.find(k);
    if (last != platform_time_.end() && period_start < last->second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "platform period ", absl::FormatTime(period_start),
          " is before the previous one for ", key.region(), "/", key.target()));
    }
    if (phantom_.find(k) == phantom_.end() && phantom_.size() >= kMaxKeys) {
      return absl::ResourceExhaustedError("too many platform streams");
    }
    platform_time_[k] = period_start;
    const uint64_t invocations =
        static_cast<uint64_t>(std::llround(platform_invocations));
    const uint64_t phantom =
        PhantomErrors(platform_errors, platform_invocations, client_failures);
    if (invocations == 0) return absl::OkStatus();
    auto it = phantom_.find(k);
    if (it == phantom_.end()) {
      it = phantom_.emplace(k, RateMonitor(v1::PHANTOM_ERRORS, k, false)).first;
    }
    v1::Evidence extra;
    SetClasses(&extra, true);
    extra.set_platform_errors(platform_errors);
    extra.set_platform_invocations(platform_invocations);
    extra.set_client_failures(client_failures);
    extra.set_control_trials(client_probes);
    extra.set_control_failures(client_failures);
    it->second.Observe(&ctx_, static_cast<int>(phantom_.size()), period_start,
                       invocations, phantom, extra);
    return absl::OkStatus();
  }

  void DeclareFix(absl::Time time) override { ctx_.declared_fix = time; }

  void Flush() override {
    CloseBuckets(watermark_ + bucket_);
    CloseWindow(watermark_ + window_, /*force=*/true);
  }

  std::vector<v1::Verdict> Current() const override {
    std::vector<v1::Verdict> out;
    for (const auto& [k, m] : streams_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : comparisons_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : trends_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : phantom_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : hard_down_) out.push_back(m.life().verdict());
    return out;
  }

  std::vector<v1::Verdict> TakeTransitions() override {
    std::vector<v1::Verdict> out;
    out.swap(transitions_);
    return out;
  }

  v1::DetectorState SaveState() const override {
    v1::DetectorState out;
    out.set_format_version(kStateFormatVersion);
    *out.mutable_fingerprint() = Fingerprint();
    SaveTime(watermark_, out.mutable_watermark());
    SaveTime(bucket_start_, out.mutable_bucket_start());
    SaveTime(window_start_, out.mutable_window_start());
    if (ctx_.declared_fix) {
      SaveTime(*ctx_.declared_fix, out.mutable_declared_fix());
    }
    for (const auto& [k, m] : streams_) m.Save(out.add_stream_health());
    for (const auto& [k, c] : comparisons_) c.Save(out.add_mode_difference());
    for (const auto& [k, f] : trends_) f.Save(out.add_size_trend());
    for (const auto& [k, m] : phantom_) m.Save(out.add_phantom_errors());
    for (const auto& [k, h] : hard_down_) h.Save(out.add_hard_down());
    for (const auto& [k, t] : platform_time_) {
      v1::PlatformPeriod* p = out.add_platform_periods();
      *p->mutable_key() = ToStreamKey(k);
      SaveTime(t, p->mutable_period_start());
    }
    return out;
  }

  // Replaces the state of this freshly created engine with `in` (see
  // VerdictEngine::Restore for the errors).
  absl::Status LoadState(const v1::DetectorState& in) {
    if (in.format_version() != kStateFormatVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("detector state: format_version ", in.format_version(),
                       " is not the supported ", kStateFormatVersion));
    }
    std::string diff;
    google::protobuf::util::MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&diff);
    if (!differencer.Compare(Fingerprint(), in.fingerprint())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "detector state was saved under another detection config or "
          "expected_streams (current vs saved): ",
          diff));
    }
    FC_ASSIGN_OR_RETURN(
        watermark_, LoadTime(in.has_watermark(), in.watermark(), "watermark"));
    FC_ASSIGN_OR_RETURN(
        bucket_start_,
        LoadTime(in.has_bucket_start(), in.bucket_start(), "bucket_start"));
    FC_ASSIGN_OR_RETURN(
        window_start_,
        LoadTime(in.has_window_start(), in.window_start(), "window_start"));
    if (in.has_declared_fix()) {
      FC_ASSIGN_OR_RETURN(ctx_.declared_fix,
                          LoadTime(true, in.declared_fix(), "declared_fix"));
    }
    FC_RETURN_IF_ERROR(
        LoadMap(in.stream_health(), "stream_health", &streams_,
                [](const v1::RateMonitorState& m, const std::string& where) {
                  return RateMonitor::Load(m, v1::STREAM_HEALTH, where);
                }));
    FC_RETURN_IF_ERROR(LoadMap(in.mode_difference(), "mode_difference",
                               &comparisons_, &ModeComparison::Load));
    FC_RETURN_IF_ERROR(
        LoadMap(in.size_trend(), "size_trend", &trends_, &TrendFamily::Load));
    FC_RETURN_IF_ERROR(
        LoadMap(in.phantom_errors(), "phantom_errors", &phantom_,
                [](const v1::RateMonitorState& m, const std::string& where) {
                  return RateMonitor::Load(m, v1::PHANTOM_ERRORS, where);
                }));
    FC_RETURN_IF_ERROR(
        LoadMap(in.hard_down(), "hard_down", &hard_down_,
                [this](const v1::HardDownState& h, const std::string& where) {
                  return HardDown::Load(h, ctx_.cfg, where);
                }));
    if (in.platform_periods_size() > static_cast<int>(kMaxKeys)) {
      return Invalid("platform_periods", "too many");
    }
    for (int i = 0; i < in.platform_periods_size(); ++i) {
      const v1::PlatformPeriod& p = in.platform_periods(i);
      const std::string where = absl::StrCat("platform_periods[", i, "]");
      FC_RETURN_IF_ERROR(CheckStateKey(p.key(), v1::PHANTOM_ERRORS, where));
      FC_ASSIGN_OR_RETURN(absl::Time t,
                          LoadTime(p.has_period_start(), p.period_start(),
                                   absl::StrCat(where, ".period_start")));
      if (!platform_time_.emplace(MakeKey(p.key()), t).second) {
        return Invalid(where, "key repeated");
      }
    }
    return absl::OkStatus();
  }

 private:
  v1::DetectorFingerprint Fingerprint() const {
    v1::DetectorFingerprint f;
    *f.mutable_resolved_config() = ctx_.cfg;
    f.set_expected_streams(ctx_.expected_streams);
    return f;
  }

  // Loads the detectors of one list into `*out`, keyed by their verdicts'
  // keys (each key once).
  template <typename Proto, typename Detector, typename LoadFn>
  static absl::Status LoadMap(
      const google::protobuf::RepeatedPtrField<Proto>& in,
      absl::string_view name, std::map<Key, Detector>* out, LoadFn load) {
    if (in.size() > static_cast<int>(kMaxKeys))
      return Invalid(name, "too many");
    for (int i = 0; i < in.size(); ++i) {
      const std::string where = absl::StrCat(name, "[", i, "]");
      FC_ASSIGN_OR_RETURN(Detector d, load(in.Get(i), where));
      const Key key = MakeKey(in.Get(i).verdict().key());
      if (!out->emplace(key, std::move(d)).second) {
        return Invalid(where, "key repeated");
      }
    }
    return absl::OkStatus();
  }

  // Closes buckets and windows that end at or before `time`.
  void AdvanceTo(absl::Time time) {
    if (watermark_ == absl::InfinitePast()) {
      bucket_start_ = FloorTo(time, bucket_);
      window_start_ = FloorTo(time, window_);
    }
    watermark_ = time;
    if (time >= bucket_start_ + bucket_) {
      CloseBuckets(time);
      bucket_start_ = FloorTo(time, bucket_);
    }
    if (time >= window_start_ + window_) {
      CloseWindow(time, false);
      window_start_ = FloorTo(time, window_);
    }
  }

  void CloseBuckets(absl::Time) {
    const absl::Time end = bucket_start_ + bucket_;
    for (auto& [k, c] : comparisons_) {
      if (c.pending()) c.CloseBucket(&ctx_, end);
    }
  }

  void CloseWindow(absl::Time, bool force) {
    const absl::Time end = window_start_ + window_;
    std::vector<TrendFamily*> families;
    std::vector<std::optional<TrendTest>> tests;
    std::vector<double> p;
    for (auto& [k, f] : trends_) {
      if (!f.pending()) continue;
      families.push_back(&f);
      tests.push_back(f.Test());
      p.push_back(tests.back() ? tests.back()->p_increasing : 1.0);
    }
    if (families.empty()) return;
    (void)force;
    const BhResult bh = BenjaminiHochberg(p, ctx_.cfg.trend_fdr_q());
    for (size_t i = 0; i < families.size(); ++i) {
      const bool significant = tests[i].has_value() && bh.reject[i] &&
                               p[i] <= ctx_.cfg.trend_alpha();
      families[i]->CloseWindow(&ctx_, end, window_, tests[i], bh.adjusted[i],
                               significant);
    }
  }

  Context ctx_;
  absl::Duration bucket_, window_;
  absl::Time watermark_ = absl::InfinitePast();
  absl::Time bucket_start_ = absl::InfinitePast();
  absl::Time window_start_ = absl::InfinitePast();
  std::map<Key, RateMonitor> streams_;
  std::map<Key, ModeComparison> comparisons_;
  std::map<Key, TrendFamily> trends_;
  std::map<Key, RateMonitor> phantom_;
  std::map<Key, HardDown> hard_down_;
  std::map<Key, absl::Time> platform_time_;
  std::vector<v1::Verdict> transitions_;
};

}  // namespace

bool IsStreamHealthFailure(v1::OutcomeClass c) {
  switch (c) {
    case v1::HTTP_5XX:
    case v1::TRUNCATED:
    case v1::RESET:
    case v1::STALLED:
    case v1::TIMEOUT:
    case v1::INTEGRITY:
    case v1::CONNECT_ERROR:
    case v1::TLS_ERROR:
    case v1::DNS_ERROR:
      return true;
    default:
      return false;
  }
}

bool IsPlatformVisibleFailure(v1::OutcomeClass c) {
  switch (c) {
    case v1::HTTP_5XX:
    case v1::TRUNCATED:
    case v1::RESET:
    case v1::STALLED:
    case v1::TIMEOUT:
    case v1::INTEGRITY:
      return true;
    default:
      return false;
  }
}

bool IsTrial(v1::OutcomeClass c) {
  return c != v1::AGENT_ERROR && c != v1::OUTCOME_CLASS_UNSPECIFIED &&
         v1::OutcomeClass_IsValid(c);
}

uint64_t ClassCounts::Trials() const {
  uint64_t n = 0;
  for (int c = 0; c < kSize; ++c) {
    if (IsTrial(static_cast<v1::OutcomeClass>(c))) n += by_class[c];
  }
  return n;
}

uint64_t ClassCounts::StreamHealthFailures() const {
  uint64_t n = 0;
  for (int c = 0; c < kSize; ++c) {
    if (IsStreamHealthFailure(static_cast<v1::OutcomeClass>(c))) {
      n += by_class[c];
    }
  }
  return n;
}

absl::StatusOr<v1::DetectionConfig> ResolveDetectionConfig(
    const v1::DetectionConfig& in) {
  v1::DetectionConfig c = in;
  auto dflt = [](double v, double d) { return v == 0 ? d : v; };
  c.set_false_alarms_per_month(dflt(c.false_alarms_per_month(), 1));
  c.set_p0_floor(dflt(c.p0_floor(), 1e-4));
  c.set_p1_ratio(dflt(c.p1_ratio(), 10));
  c.set_mode_rr1(dflt(c.mode_rr1(), 3));
  c.set_alpha(dflt(c.alpha(), 0.01));
  c.set_p0_prior(dflt(c.p0_prior(), 5e-4));
  c.set_p0_prior_weight(dflt(c.p0_prior_weight(), 3000));
  c.set_fix_alpha(dflt(c.fix_alpha(), 0.05));
  c.set_trend_alpha(dflt(c.trend_alpha(), 0.01));
  c.set_trend_fdr_q(dflt(c.trend_fdr_q(), 0.05));
  c.set_suspect_fraction(dflt(c.suspect_fraction(), 0.5));
  if (c.hard_down_consecutive() == 0) c.set_hard_down_consecutive(3);
  if (c.hard_down_agents() == 0) c.set_hard_down_agents(2);
  if (!c.has_trend_window() ||
      (c.trend_window().seconds() == 0 && c.trend_window().nanos() == 0)) {
    c.mutable_trend_window()->set_seconds(3600);
  }
  if (!c.has_comparison_bucket() || (c.comparison_bucket().seconds() == 0 &&
                                     c.comparison_bucket().nanos() == 0)) {
    c.mutable_comparison_bucket()->set_seconds(60);
  }
  auto in_range = [](const char* name, double v, double lo, double hi,
                     bool open_lo) -> absl::Status {
    const bool ok = std::isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi;
    if (ok) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("detection.", name, ": ", v, " is out of range ",
                     open_lo ? "(" : "[", lo, ", ", hi, "]"));
  };
  for (absl::Status s : {
           in_range("false_alarms_per_month", c.false_alarms_per_month(), 0,
                    1e6, true),
           in_range("p0_floor", c.p0_floor(), 0, 0.5, true),
           in_range("p1_ratio", c.p1_ratio(), 1.01, 1e4, false),
           in_range("mode_rr1", c.mode_rr1(), 1.01, 1e3, false),
           in_range("alpha", c.alpha(), 0, 0.5, true),
           in_range("fix_p_bad", c.fix_p_bad(), 0, 0.5, false),
           in_range("fix_p_good", c.fix_p_good(), 0, 0.5, false),
           in_range("p0_prior", c.p0_prior(), 0, 0.5, true),
           in_range("p0_prior_weight", c.p0_prior_weight(), 0, 1e9, true),
           in_range("fix_alpha", c.fix_alpha(), 0, 0.5, true),
           in_range("trend_alpha", c.trend_alpha(), 0, 0.5, true),
           in_range("trend_fdr_q", c.trend_fdr_q(), 0, 0.5, true),
           in_range("suspect_fraction", c.suspect_fraction(), 0, 0.99, true),
           in_range("probes_per_stream_per_month",
                    c.probes_per_stream_per_month(), 0, 1e12, false),
       }) {
    if (!s.ok()) return s;
  }
  if (c.fix_p_bad() > 0 && c.fix_p_good() >= c.fix_p_bad()) {
    return absl::InvalidArgumentError(
        "detection.fix_p_good must be below detection.fix_p_bad");
  }
  if (c.trend_window().seconds() < 0 || c.comparison_bucket().seconds() < 0) {
    return absl::InvalidArgumentError(
        "detection.trend_window and comparison_bucket must be positive");
  }
  return c;
}

absl::StatusOr<std::unique_ptr<VerdictEngine>> VerdictEngine::Create(
    const v1::DetectionConfig& config, int expected_streams) {
  absl::StatusOr<v1::DetectionConfig> resolved = ResolveDetectionConfig(config);
  if (!resolved.ok()) return resolved.status();
  if (expected_streams < 0) {
    return absl::InvalidArgumentError("expected_streams must be >= 0");
  }
  return std::unique_ptr<VerdictEngine>(
      new VerdictEngineImpl(*resolved, expected_streams));
}

absl::StatusOr<std::unique_ptr<VerdictEngine>> VerdictEngine::Restore(
    const v1::DetectionConfig& config, int expected_streams,
    const v1::DetectorState& state) {
  absl::StatusOr<v1::DetectionConfig> resolved = ResolveDetectionConfig(config);
  if (!resolved.ok()) return resolved.status();
  if (expected_streams < 0) {
    return absl::InvalidArgumentError("expected_streams must be >= 0");
  }
  auto engine =
      std::make_unique<VerdictEngineImpl>(*resolved, expected_streams);
  FC_RETURN_IF_ERROR(engine->LoadState(state));
  return std::unique_ptr<VerdictEngine>(std::move(engine));
}

}  // namespace fleetcanary::analysis
