#include "analysis/detectors/rate_monitor.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/detectors/state_io.h"
#include "analysis/intervals.h"
#include "common/status/status_util.h"

namespace fleetcanary::analysis::detectors {
namespace {

using v1::VerdictKind;
using v1::VerdictState;

constexpr double kMonthSeconds = 30 * 24 * 3600.0;
constexpr double kDefaultProbesPerMonth = 43200;  // One a minute.
constexpr int kCusumFamilies = 2;  // Stream health and phantom errors.
// STREAM_HEALTH leaves REGRESSION when its rate is shown nearer p0 than
// kRecoverRatio x p0 (see RateMonitor::StartEpisode).
constexpr double kRecoverRatio = 4;

}  // namespace

RateMonitor::RateMonitor(VerdictKind kind, const Key& key, bool learn_baseline)
    : life_(kind, key), learn_baseline_(learn_baseline) {}

void RateMonitor::Save(v1::RateMonitorState* out) const {
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

absl::StatusOr<RateMonitor> RateMonitor::Load(const v1::RateMonitorState& in,
                                              VerdictKind kind,
                                              absl::string_view where) {
  FC_ASSIGN_OR_RETURN(Lifecycle life,
                      Lifecycle::Load(in.verdict(), kind, where));
  RateMonitor m(kind, MakeKey(in.verdict().key()), kind == v1::STREAM_HEALTH);
  m.life_ = std::move(life);
  if (in.has_cusum()) {
    FC_ASSIGN_OR_RETURN(m.cusum_, LoadCusum(in.cusum(), Field(where, "cusum")));
  }
  FC_RETURN_IF_ERROR(CheckFinite(in.arl0(), Field(where, "arl0")));
  FC_RETURN_IF_ERROR(CheckCounts(in.baseline_trials(), in.baseline_failures(),
                                 Field(where, "baseline")));
  FC_RETURN_IF_ERROR(CheckCounts(in.pending_trials(), in.pending_failures(),
                                 Field(where, "pending")));
  FC_RETURN_IF_ERROR(CheckCounts(in.episode_trials(), in.episode_failures(),
                                 Field(where, "episode")));
  if (in.armed_streams() < 0 ||
      in.armed_streams() > static_cast<int>(kMaxKeys)) {
    return Invalid(Field(where, "armed_streams"), "out of range");
  }
  m.arl0_ = in.arl0();
  m.baseline_trials_ = in.baseline_trials();
  m.baseline_failures_ = in.baseline_failures();
  m.pending_trials_ = in.pending_trials();
  m.pending_failures_ = in.pending_failures();
  m.next_rearm_ = in.next_rearm_trials();
  m.armed_streams_ = in.armed_streams();
  if (in.has_first_time()) {
    FC_ASSIGN_OR_RETURN(m.first_time_, LoadTime(true, in.first_time(),
                                                Field(where, "first_time")));
  }
  FC_ASSIGN_OR_RETURN(m.last_time_, LoadTime(in.has_last_time(), in.last_time(),
                                             Field(where, "last_time")));
  m.total_trials_ = in.total_trials();
  FC_ASSIGN_OR_RETURN(m.last_zero_time_,
                      LoadTime(in.has_last_zero_time(), in.last_zero_time(),
                               Field(where, "last_zero_time")));
  FC_ASSIGN_OR_RETURN(m.run_start_, LoadTime(in.has_run_start(), in.run_start(),
                                             Field(where, "run_start")));
  FC_ASSIGN_OR_RETURN(
      m.onset_, LoadTime(in.has_onset(), in.onset(), Field(where, "onset")));
  if (in.history_size() > static_cast<int>(kMaxHistoryBins)) {
    return Invalid(Field(where, "history"), "too many bins");
  }
  for (int i = 0; i < in.history_size(); ++i) {
    FC_ASSIGN_OR_RETURN(
        TimedBin b,
        LoadBin(in.history(i), Field(where, absl::StrCat("history[", i, "]"))));
    m.history_.push_back(b);
  }
  m.episode_rate_n_ = in.episode_trials();
  m.episode_rate_k_ = in.episode_failures();
  FC_ASSIGN_OR_RETURN(m.recovery_,
                      Recovery::Load(in.recovery(), InEpisode(m.life_.state()),
                                     Field(where, "recovery")));
  m.hold_ = in.hold_trials();
  return m;
}

void RateMonitor::Observe(Context* ctx, int family_streams, absl::Time t,
                          uint64_t n, uint64_t k, const v1::Evidence& extra) {
  if (n == 0) return;
  const VerdictState state = life_.state();
  const bool alarm = Feed(ctx, family_streams, t, n, k);
  LearnBaseline(state, alarm, n, k);
  if (cusum_->statistic() > 0 && run_start_ <= last_zero_time_) {
    run_start_ = t;  // First observation after S left 0.
  }
  if (state == v1::REGRESSION || state == v1::RECOVERING) {
    episode_rate_n_ += n;
    episode_rate_k_ += k;
  }
  Transition(ctx, state, alarm, t, n, k, extra);
}

bool RateMonitor::Feed(Context* ctx, int family_streams, absl::Time t,
                       uint64_t n, uint64_t k) {
  if (!first_time_) first_time_ = t;
  last_time_ = t;
  total_trials_ += n;
  history_.push_back({t, n, k});
  if (history_.size() > kMaxHistoryBins) history_.pop_front();
  if (!cusum_ || (life_.state() == v1::HEALTHY && cusum_->statistic() == 0 &&
                  (total_trials_ >= next_rearm_ ||
                   family_streams >= 2 * armed_streams_))) {
    Arm(ctx, family_streams);
  }
  if (cusum_->statistic() == 0) last_zero_time_ = t;
  return cusum_->Observe(n, k);
}

void RateMonitor::LearnBaseline(VerdictState state, bool alarm, uint64_t n,
                                uint64_t k) {
  if (state != v1::HEALTHY && state != v1::SUSPECT &&
      state != v1::FIX_CONFIRMED) {
    return;
  }
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

void RateMonitor::Transition(Context* ctx, VerdictState state, bool alarm,
                             absl::Time t, uint64_t n, uint64_t k,
                             const v1::Evidence& extra) {
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
    case v1::REGRESSION:
      InRegression(ctx, alarm, t, n, k, extra);
      break;
    case v1::RECOVERING:
      InRecovering(ctx, alarm, t, n, k, extra);
      break;
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

void RateMonitor::InRegression(Context* ctx, bool alarm, absl::Time t,
                               uint64_t n, uint64_t k,
                               const v1::Evidence& extra) {
  const Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
  if (e == Recovery::Event::kNone) {
    if (alarm) life_.Update(t, AlarmEvidence(t, extra, /*date=*/false));
    return;
  }
  v1::Evidence ev = extra;
  recovery_.FillEvidence(&ev, e == Recovery::Event::kConfirmed);
  life_.Move(v1::RECOVERING, t, ev, ctx->out);
  if (e == Recovery::Event::kConfirmed) Confirm(ctx, t, extra);
}

void RateMonitor::InRecovering(Context* ctx, bool alarm, absl::Time t,
                               uint64_t n, uint64_t k,
                               const v1::Evidence& extra) {
  if (alarm) {
    recovery_.Relapse();
    life_.Move(v1::REGRESSION, t, AlarmEvidence(t, extra), ctx->out);
    return;
  }
  const Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
  if (e == Recovery::Event::kConfirmed) {
    Confirm(ctx, t, extra);
  } else {
    v1::Evidence ev = extra;
    recovery_.FillEvidence(&ev, false);
    life_.Update(t, ev);
  }
}

void RateMonitor::Arm(Context* ctx, int family_streams) {
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
    per_month = span >= 60
                    ? static_cast<double>(total_trials_) / span * kMonthSeconds
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

double RateMonitor::InControlRatio(const v1::DetectionConfig& cfg) const {
  if (!learn_baseline_) return 1;
  const double w = cfg.p0_prior_weight();
  const double a = cfg.p0_prior() * w + static_cast<double>(baseline_failures_);
  const double b = (1 - cfg.p0_prior()) * w +
                   static_cast<double>(baseline_trials_ - baseline_failures_);
  if (!(a > 0 && b > 0)) return 1;
  const double mean = BaselineP0(cfg);
  const double q = BetaQuantile(a, b, kIcQuantile);
  return std::isfinite(q) && mean > 0 ? std::max(1.0, q / mean) : 1;
}

double RateMonitor::BaselineP0(const v1::DetectionConfig& cfg) const {
  if (!learn_baseline_) return cfg.p0_floor();
  return BaselineRate(cfg, baseline_failures_, baseline_trials_);
}

v1::Evidence RateMonitor::CusumEvidence(absl::Time,
                                        const v1::Evidence& extra) const {
  v1::Evidence ev = extra;
  ev.set_statistic_name("cusum");
  ev.set_statistic(cusum_->statistic());
  ev.set_threshold(cusum_->h());
  ev.set_null_rate(cusum_->p0());
  ev.set_alternative_rate(cusum_->p1());
  SetObservedRate(baseline_trials_, baseline_failures_,
                  WilsonInterval(baseline_failures_, baseline_trials_, 0.95),
                  0.95, &ev);
  ev.set_summary(absl::StrFormat(
      "CUSUM %.3f of h %.3f (p0 %.3g, p1 %.3g, ARL0 %.3g probes)",
      cusum_->statistic(), cusum_->h(), cusum_->p0(), cusum_->p1(), arl0_));
  return ev;
}

v1::Evidence RateMonitor::AlarmEvidence(absl::Time t, const v1::Evidence& extra,
                                        bool date) const {
  v1::Evidence ev = CusumEvidence(t, extra);
  ev.set_statistic(cusum_->alarm_statistic());
  SetObservedRate(
      episode_rate_n_, episode_rate_k_,
      ClopperPearsonInterval(episode_rate_k_, episode_rate_n_, 0.95), 0.95,
      &ev);
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
      cusum_->alarm_statistic(), cusum_->h(), cusum_->p0(), cusum_->p1(), arl0_,
      episode_rate_k_, episode_rate_n_,
      IsFinite(onset_) ? absl::FormatTime(onset_, absl::UTCTimeZone())
                       : std::string("-")));
  return ev;
}

void RateMonitor::StartEpisode(Context* ctx, absl::Time t,
                               const v1::Evidence& extra) {
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

void RateMonitor::Confirm(Context* ctx, absl::Time t,
                          const v1::Evidence& extra) {
  v1::Evidence ev = extra;
  recovery_.FillEvidence(&ev, true);
  hold_ = 0;
  life_.Move(v1::FIX_CONFIRMED, t, ev, ctx->out);
}

}  // namespace fleetcanary::analysis::detectors
