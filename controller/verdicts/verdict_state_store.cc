// Saving and restoring the verdict service's detector state (see
// "Restarts" in verdict_service.h; verdict_service_impl.h).
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "controller/verdicts/verdict_service_impl.h"

namespace fleetcanary {
namespace controller {
namespace verdicts_internal {
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

}  // namespace

// Loads the saved state, if any, into the engines and the published set
// (see "Restarts" in the header). Never fails: an unusable state is
// discarded, counted and logged.
void VerdictServiceImpl::RestoreState() {
  absl::StatusOr<std::string> blob = store_->LoadDetectorState();
  if (absl::IsNotFound(blob.status())) {
    LogInfo("verdicts_state_none");
    return;
  }
  auto discard = [this](const std::string& reason) {
    metrics_->AddCounter("detector_state_discarded_total", 1);
    LogWarning("verdicts_state_discarded",
               {{"reason", reason}, {"effect", "verdicts start from HEALTHY"}});
  };
  if (!blob.ok()) return discard(blob.status().ToString());
  v1::VerdictServiceState st;
  if (!st.ParseFromString(*blob)) return discard("unreadable");
  if (st.format_version() != kStateFormat) {
    return discard(absl::StrCat("format_version ", st.format_version(),
                                " (this controller reads ", kStateFormat, ")"));
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
  LogInfo("verdicts_state_restored",
          {{"saved_at", absl::FormatTime(saved_at)},
           {"age", absl::FormatDuration(clock_->Now() - saved_at)},
           {"verdicts", absl::StrCat(published_.size())},
           {"not_healthy", absl::StrCat(open)},
           {"unseen_outcomes", absl::StrCat(unseen)},
           {"agents_read", agents.ok() ? "yes" : agents.status().ToString()}});
}

v1::VerdictServiceState VerdictServiceImpl::BuildState() {
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
void VerdictServiceImpl::MaybeSaveState(bool stopping) {
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

}  // namespace verdicts_internal
}  // namespace controller
}  // namespace fleetcanary
