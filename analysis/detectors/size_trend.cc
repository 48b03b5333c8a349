#include "analysis/detectors/size_trend.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/detectors/state_io.h"
#include "analysis/intervals.h"
#include "common/status/status_util.h"
#include "common/units/units.h"

namespace fleetcanary::analysis::detectors {

using v1::VerdictState;

TrendFamily::TrendFamily(const Key& key) : life_(v1::SIZE_TREND, key) {}

void TrendFamily::Add(uint64_t bytes, uint64_t n, uint64_t k) {
  auto& c = window_[bytes];
  c.first += n;
  c.second += k;
}

std::optional<TrendTest> TrendFamily::Test() {
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

void TrendFamily::CloseWindow(Context* ctx, absl::Time t, absl::Duration window,
                              const std::optional<TrendTest>& test,
                              double adjusted_p, bool significant) {
  uint64_t n = 0, k = 0;
  for (const auto& [bytes, c] : window_) {
    n += c.first;
    k += c.second;
  }
  const v1::Evidence ev = WindowEvidence(ctx, n, k, test, adjusted_p);
  window_.clear();
  const VerdictState state = life_.state();
  switch (state) {
    case v1::HEALTHY:
      if (significant) life_.Move(v1::SUSPECT, t, ev, ctx->out);
      break;
    case v1::SUSPECT:
      if (significant) {
        StartEpisode(ctx, t, n, k, ev);
      } else {
        life_.Move(v1::HEALTHY, t, ev, ctx->out);
      }
      break;
    case v1::REGRESSION:
    case v1::RECOVERING:
      EpisodeStep(ctx, state, t, n, k, significant, ev);
      break;
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

v1::Evidence TrendFamily::WindowEvidence(const Context* ctx, uint64_t n,
                                         uint64_t k,
                                         const std::optional<TrendTest>& test,
                                         double adjusted_p) const {
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
  return ev;
}

void TrendFamily::StartEpisode(Context* ctx, absl::Time t, uint64_t n,
                               uint64_t k, const v1::Evidence& ev) {
  recovery_.Start(ctx->cfg, ctx->cfg.p0_floor(), ctx->cfg.p0_floor(),
                  ctx->cfg.p1_ratio() * ctx->cfg.p0_floor(),
                  life_.verdict().since().seconds() > 0
                      ? absl::FromUnixSeconds(life_.verdict().since().seconds())
                      : t,
                  t, false);
  // Significant windows are part of the episode the fix is dated
  // over: without them the change is dated after the fix.
  recovery_.AddHistory(t, n, k);
  life_.Move(v1::REGRESSION, t, ev, ctx->out);
}

void TrendFamily::EpisodeStep(Context* ctx, VerdictState state, absl::Time t,
                              uint64_t n, uint64_t k, bool significant,
                              const v1::Evidence& ev) {
  if (significant) {
    if (state == v1::RECOVERING) {
      recovery_.Relapse();
      life_.Move(v1::REGRESSION, t, ev, ctx->out);
    } else {
      life_.Update(t, ev);
    }
    recovery_.AddHistory(t, n, k);
    return;
  }
  Recovery::Event e = recovery_.Observe(t, n, k, ctx->declared_fix);
  if (state == v1::REGRESSION && !recovery_.recovering()) {
    recovery_.EnterRecovering(t);
    e = Recovery::Event::kRecovering;
  }
  v1::Evidence rec = ev;
  recovery_.FillEvidence(&rec, e == Recovery::Event::kConfirmed);
  if (state == v1::REGRESSION) life_.Move(v1::RECOVERING, t, rec, ctx->out);
  if (e == Recovery::Event::kConfirmed) {
    hold_ = 0;
    confirmed_at_ = t;
    life_.Move(v1::FIX_CONFIRMED, t, rec, ctx->out);
  }
}

void TrendFamily::Save(v1::TrendFamilyState* out) const {
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

absl::StatusOr<TrendFamily> TrendFamily::Load(const v1::TrendFamilyState& in,
                                              absl::string_view where) {
  FC_ASSIGN_OR_RETURN(Lifecycle life,
                      Lifecycle::Load(in.verdict(), v1::SIZE_TREND, where));
  TrendFamily f(MakeKey(in.verdict().key()));
  f.life_ = std::move(life);
  for (int i = 0; i < in.window_size(); ++i) {
    const v1::SizeCounts& w = in.window(i);
    const std::string name = Field(where, absl::StrCat("window[", i, "]"));
    FC_RETURN_IF_ERROR(CheckCounts(w.trials(), w.failures(), name));
    if (!f.window_.emplace(w.bytes(), std::make_pair(w.trials(), w.failures()))
             .second) {
      return Invalid(name, absl::StrCat("size ", w.bytes(), " repeated"));
    }
  }
  FC_ASSIGN_OR_RETURN(
      f.suspect_window_start_,
      LoadTime(in.has_suspect_window_start(), in.suspect_window_start(),
               Field(where, "suspect_window_start")));
  FC_ASSIGN_OR_RETURN(f.confirmed_at_,
                      LoadTime(in.has_confirmed_at(), in.confirmed_at(),
                               Field(where, "confirmed_at")));
  FC_ASSIGN_OR_RETURN(f.recovery_,
                      Recovery::Load(in.recovery(), InEpisode(f.life_.state()),
                                     Field(where, "recovery")));
  f.hold_ = in.hold_trials();
  return f;
}

}  // namespace fleetcanary::analysis::detectors
