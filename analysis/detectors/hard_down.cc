#include "analysis/detectors/hard_down.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/detectors/state_io.h"
#include "common/status/status_util.h"

namespace fleetcanary::analysis::detectors {

using v1::VerdictState;

HardDown::HardDown(const Key& key, const v1::DetectionConfig& cfg)
    : life_(v1::HARD_DOWN, key),
      rule_(cfg.hard_down_consecutive(), cfg.hard_down_agents()) {}

void HardDown::Observe(Context* ctx, const std::string& agent, absl::Time t,
                       bool failed) {
  const bool down = rule_.Observe(agent, failed);
  const uint32_t in_run = rule_.agents_in_run();
  const VerdictState state = life_.state();
  if (state == v1::HEALTHY) {
    baseline_n_ += 1;
    baseline_k_ += failed ? 1 : 0;
  }
  // The common case, a healthy stream with no agent in a failure run, moves
  // nothing: it builds no evidence (this runs once per probe).
  if (state == v1::HEALTHY && !down && in_run == 0) return;
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
        const double p0 =
            std::min(BaselineRate(ctx->cfg, baseline_k_, baseline_n_), kMaxP0);
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
    case v1::RECOVERING:
      EpisodeStep(ctx, state, t, failed, down, ev);
      break;
    default:
      break;
  }
}

void HardDown::EpisodeStep(Context* ctx, VerdictState state, absl::Time t,
                           bool failed, bool down, const v1::Evidence& ev) {
  if (down) {
    if (state == v1::RECOVERING) {
      recovery_.Relapse();
      life_.Move(v1::REGRESSION, t, ev, ctx->out);
    }
    recovery_.Observe(t, 1, failed ? 1 : 0, std::nullopt);
    return;
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
}

void HardDown::Save(v1::HardDownState* out) const {
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

absl::StatusOr<HardDown> HardDown::Load(const v1::HardDownState& in,
                                        const v1::DetectionConfig& cfg,
                                        absl::string_view where) {
  FC_ASSIGN_OR_RETURN(Lifecycle life,
                      Lifecycle::Load(in.verdict(), v1::HARD_DOWN, where));
  HardDown h(MakeKey(in.verdict().key()), cfg);
  h.life_ = std::move(life);
  std::map<std::string, uint64_t> runs;
  for (int i = 0; i < in.runs_size(); ++i) {
    if (!runs.emplace(in.runs(i).agent(), in.runs(i).run()).second) {
      return Invalid(
          Field(where, absl::StrCat("runs[", i, "]")),
          absl::StrCat("agent \"", in.runs(i).agent(), "\" repeated"));
    }
  }
  h.rule_ = HardDownRule::FromRuns(cfg.hard_down_consecutive(),
                                   cfg.hard_down_agents(), std::move(runs));
  FC_RETURN_IF_ERROR(CheckCounts(in.baseline_trials(), in.baseline_failures(),
                                 Field(where, "baseline")));
  h.baseline_n_ = in.baseline_trials();
  h.baseline_k_ = in.baseline_failures();
  FC_ASSIGN_OR_RETURN(h.recovery_,
                      Recovery::Load(in.recovery(), InEpisode(h.life_.state()),
                                     Field(where, "recovery")));
  h.hold_ = in.hold_trials();
  return h;
}

}  // namespace fleetcanary::analysis::detectors
