#include "analysis/detectors/recovery.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/detectors/state_io.h"
#include "analysis/intervals.h"
#include "common/status/status_util.h"

namespace fleetcanary::analysis::detectors {

void Recovery::Start(const v1::DetectionConfig& cfg, double baseline_p0,
                     double p0, double p1, absl::Time onset, absl::Time alarm,
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

void Recovery::Relapse() {
  if (recovering_) ++relapses_;
  recovering_ = false;
  reverse_ = 0;
  fix_.emplace(p_bad_, Alternatives(), fix_alpha_);
}

void Recovery::EnterRecovering(absl::Time t) {
  recovering_ = true;
  start_ = t;
  ChooseRates();
  fix_.emplace(p_bad_, Alternatives(), fix_alpha_);
}

void Recovery::AddHistory(absl::Time t, uint64_t n, uint64_t k) {
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

Recovery::Event Recovery::Observe(
    absl::Time t, uint64_t n, uint64_t k,
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

void Recovery::FillEvidence(v1::Evidence* ev, bool date) const {
  ev->set_statistic_name("fix_log_lr");
  ev->set_statistic(fix_->log_lr());
  ev->set_threshold(fix_->log_threshold());
  ev->set_likelihood_ratio(std::exp(std::min(700.0, fix_->log_lr())));
  SetObservedRate(
      fix_->trials(), fix_->failures(),
      ClopperPearsonInterval(fix_->failures(), fix_->trials(), 0.95), 0.95, ev);
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

double Recovery::incident_rate() const {
  return incident_trials_ > 0 ? static_cast<double>(incident_failures_) /
                                    static_cast<double>(incident_trials_)
                              : 0;
}

void Recovery::Save(v1::RecoveryState* out) const {
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

absl::StatusOr<Recovery> Recovery::Load(const v1::RecoveryState& in,
                                        bool need_fix,
                                        absl::string_view where) {
  Recovery r;
  for (const auto& [name, v] : {std::pair<const char*, double>{"p0", in.p0()},
                                {"p1", in.p1()},
                                {"p_bad", in.p_bad()},
                                {"p_good", in.p_good()},
                                {"baseline_p0", in.baseline_p0()},
                                {"p_bad_floor", in.p_bad_floor()},
                                {"fix_alpha", in.fix_alpha()}}) {
    FC_RETURN_IF_ERROR(CheckRate(v, Field(where, name)));
  }
  for (const auto& [name, v] :
       {std::pair<const char*, double>{"reverse_a", in.reverse_a()},
        {"reverse_b", in.reverse_b()},
        {"reverse_threshold", in.reverse_threshold()},
        {"reverse_statistic", in.reverse_statistic()},
        {"configured_p_good", in.configured_p_good()}}) {
    FC_RETURN_IF_ERROR(CheckFinite(v, Field(where, name)));
  }
  if (in.relapses() > (1u << 20)) {
    return Invalid(Field(where, "relapses"), "out of range");
  }
  FC_RETURN_IF_ERROR(CheckCounts(in.incident_trials(), in.incident_failures(),
                                 Field(where, "incident")));
  FC_RETURN_IF_ERROR(CheckCounts(in.episode_trials(), in.episode_failures(),
                                 Field(where, "episode")));
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
  FC_ASSIGN_OR_RETURN(
      r.onset_, LoadTime(in.has_onset(), in.onset(), Field(where, "onset")));
  FC_ASSIGN_OR_RETURN(
      r.alarm_, LoadTime(in.has_alarm(), in.alarm(), Field(where, "alarm")));
  FC_ASSIGN_OR_RETURN(
      r.start_, LoadTime(in.has_start(), in.start(), Field(where, "start")));
  if (in.has_fix()) {
    FC_ASSIGN_OR_RETURN(r.fix_, LoadFix(in.fix(), Field(where, "fix")));
  } else if (need_fix) {
    return Invalid(Field(where, "fix"), "missing in an episode");
  }
  if (in.bins_size() > static_cast<int>(kMaxEpisodeBins)) {
    return Invalid(Field(where, "bins"), "too many");
  }
  for (int i = 0; i < in.bins_size(); ++i) {
    FC_ASSIGN_OR_RETURN(
        TimedBin b,
        LoadBin(in.bins(i), Field(where, absl::StrCat("bins[", i, "]"))));
    r.bins_.push_back(b);
  }
  r.episode_trials_ = in.episode_trials();
  r.episode_failures_ = in.episode_failures();
  return r;
}

void Recovery::ChooseRates() {
  double p_bad = std::max(p_bad_floor_, 2 * baseline_p0_);
  const double incident = incident_rate();
  if (incident > 0) p_bad = std::min(p_bad, incident / 2);
  p_bad_ = std::clamp(p_bad, 1e-9, 0.5);
  p_good_ =
      (cfg_p_good_ > 0 && cfg_p_good_ < p_bad_) ? cfg_p_good_ : p_bad_ / 100;
}

std::vector<double> Recovery::Alternatives() const {
  if (cfg_p_good_ > 0 && cfg_p_good_ < p_bad_) return {p_good_};
  return {p_bad_ / 100, p_bad_ / 10, p_bad_ / 2};
}

}  // namespace fleetcanary::analysis::detectors
