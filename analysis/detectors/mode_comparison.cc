#include "analysis/detectors/mode_comparison.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/detectors/state_io.h"
#include "analysis/tests.h"
#include "common/status/status_util.h"

namespace fleetcanary::analysis::detectors {

using v1::VerdictState;

ModeComparison::ModeComparison(const Key& key)
    : life_(v1::MODE_DIFFERENCE, key) {}

void ModeComparison::Add(v1::InvokeMode mode, uint64_t n, uint64_t k) {
  if (mode == v1::RESPONSE_STREAM) {
    n_s_ += n;
    x_s_ += k;
  } else {
    n_b_ += n;
    x_b_ += k;
  }
}

void ModeComparison::CloseBucket(Context* ctx, absl::Time t) {
  const uint64_t n_s = n_s_, x_s = x_s_, n_b = n_b_, x_b = x_b_;
  n_s_ = x_s_ = n_b_ = x_b_ = 0;
  const VerdictState state = life_.state();
  if (state == v1::REGRESSION || state == v1::RECOVERING) {
    if (RecoveryStep(ctx, state, t, n_s, x_s)) return;
  } else if (state == v1::FIX_CONFIRMED) {
    hold_ += n_s;
  }
  if (n_s == 0 || n_b == 0) return;
  if (state == v1::SUSPECT) suspect_probes_ += n_s;
  seg_n_s_ += n_s;
  seg_x_s_ += x_s;
  seg_n_b_ += n_b;
  seg_x_b_ += x_b;
  const double pi0 = static_cast<double>(n_s) / static_cast<double>(n_s + n_b);
  const double pi1 = SplitAlternative(n_s, n_b, ctx->cfg.mode_rr1());
  llr_ += SplitLogLikelihoodRatio(x_s, x_b, pi0, pi1);
  Decide(ctx, state, t);
}

bool ModeComparison::RecoveryStep(Context* ctx, VerdictState state,
                                  absl::Time t, uint64_t n_s, uint64_t x_s) {
  // Recovery watches the streaming rate.
  const Recovery::Event e = recovery_.Observe(t, n_s, x_s, ctx->declared_fix);
  if (e == Recovery::Event::kNone) return false;
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
  return true;
}

void ModeComparison::Decide(Context* ctx, VerdictState state, absl::Time t) {
  const v1::DetectionConfig& cfg = ctx->cfg;
  const double log_a = std::log((1 - cfg.alpha()) / cfg.alpha());
  const double log_b = -log_a;
  if (llr_ >= log_a) {
    Alarm(ctx, state, t, log_a);
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

void ModeComparison::Alarm(Context* ctx, VerdictState state, absl::Time t,
                           double log_a) {
  const v1::DetectionConfig& cfg = ctx->cfg;
  v1::Evidence ev = SplitEvidence();
  ev.set_threshold(log_a);
  if (state == v1::REGRESSION) {
    life_.Update(t, ev);
    return;
  }
  // The buffered control is the baseline the streaming rate must
  // return near.
  const double p0 = std::min(BaselineRate(cfg, seg_x_b_, seg_n_b_), kMaxP0);
  const double p1 =
      std::max(static_cast<double>(seg_x_s_) / static_cast<double>(seg_n_s_),
               cfg.p1_ratio() * p0);
  recovery_.Start(cfg, p0, p0, p1, segment_start_, t, true);
  life_.Move(v1::REGRESSION, t, ev, ctx->out);
}

void ModeComparison::ResetSegment(absl::Time t) {
  llr_ = 0;
  seg_n_s_ = seg_x_s_ = seg_n_b_ = seg_x_b_ = 0;
  segment_start_ = t;
}

v1::Evidence ModeComparison::SplitEvidence() const {
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
    ev.set_rate(static_cast<double>(seg_x_s_) / static_cast<double>(seg_n_s_));
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

void ModeComparison::Save(v1::ModeComparisonState* out) const {
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

absl::StatusOr<ModeComparison> ModeComparison::Load(
    const v1::ModeComparisonState& in, absl::string_view where) {
  FC_ASSIGN_OR_RETURN(
      Lifecycle life,
      Lifecycle::Load(in.verdict(), v1::MODE_DIFFERENCE, where));
  ModeComparison c(MakeKey(in.verdict().key()));
  c.life_ = std::move(life);
  FC_RETURN_IF_ERROR(CheckCounts(in.bucket_stream_trials(),
                                 in.bucket_stream_failures(),
                                 Field(where, "bucket_stream")));
  FC_RETURN_IF_ERROR(CheckCounts(in.bucket_buffered_trials(),
                                 in.bucket_buffered_failures(),
                                 Field(where, "bucket_buffered")));
  FC_RETURN_IF_ERROR(CheckCounts(in.segment_stream_trials(),
                                 in.segment_stream_failures(),
                                 Field(where, "segment_stream")));
  FC_RETURN_IF_ERROR(CheckCounts(in.segment_buffered_trials(),
                                 in.segment_buffered_failures(),
                                 Field(where, "segment_buffered")));
  FC_RETURN_IF_ERROR(CheckFinite(in.llr(), Field(where, "llr")));
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
                               Field(where, "segment_start")));
  c.llr_ = in.llr();
  c.suspect_probes_ = in.suspect_probes();
  FC_ASSIGN_OR_RETURN(c.recovery_,
                      Recovery::Load(in.recovery(), InEpisode(c.life_.state()),
                                     Field(where, "recovery")));
  c.hold_ = in.hold_trials();
  return c;
}

}  // namespace fleetcanary::analysis::detectors
