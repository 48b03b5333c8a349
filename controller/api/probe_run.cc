// One running ad-hoc probe (see probe_run.h).
#include "controller/api/probe_run.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log/log.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::Duration kDefaultProbeTimeout = absl::Seconds(30);
// How long an agent that said "done" may still deliver outcomes through
// ingest (its live results were lost with a broken stream).
constexpr absl::Duration kDoneGrace = absl::Seconds(3);

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Nanoseconds(TimeUtil::DurationToNanoseconds(d));
}

// How long one probe may take: its limits' timeout, else the agent's
// default.
absl::Duration PerProbeTimeout(const v1::ProbeLimits& limits) {
  return limits.has_timeout() &&
                 FromProto(limits.timeout()) > absl::ZeroDuration()
             ? FromProto(limits.timeout())
             : kDefaultProbeTimeout;
}

}  // namespace

ProbeRunImpl::ProbeRunImpl(std::string id, const v1::RunProbeRequest& request,
                           ProbeEventSink* sink, SendFn send, Clock* clock,
                           std::shared_ptr<PendingCancels> pending)
    : id_(std::move(id)),
      request_(request),
      sink_(sink),
      send_(std::move(send)),
      clock_(clock),
      pending_(std::move(pending)) {}

void ProbeRunImpl::Cancel() {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  SendCancelLocked();
  LogInfo("adhoc_cancelled", {{"adhoc_id", id_}});
  FinishLocked(
      absl::CancelledError(absl::StrCat("ad-hoc run ", id_, " cancelled")),
      /*cancelled=*/true);
}

void ProbeRunImpl::Dispatch(const std::vector<RegionPlan>& plan,
                            uint32_t concurrency, absl::Duration max_duration) {
  absl::MutexLock lock(&mu_);
  const absl::Duration per_probe = PerProbeTimeout(request_.limits());
  absl::Duration longest = absl::ZeroDuration();
  for (const RegionPlan& r : plan) {
    longest =
        std::max(longest, DispatchRegionLocked(r, concurrency, per_probe));
  }
  deadline_ = clock_->MonotonicNow() +
              std::min(max_duration, longest + absl::Seconds(30));
  MaybeFinishLocked();
}

absl::Duration ProbeRunImpl::DispatchRegionLocked(const RegionPlan& r,
                                                  uint32_t concurrency,
                                                  absl::Duration per_probe) {
  const uint64_t per_agent_streams =
      static_cast<uint64_t>(request_.sizes_size());
  absl::Duration longest = absl::ZeroDuration();
  region_order_.push_back(r.region);
  builders_.emplace(r.region, analysis::SummaryBuilder(r.region));
  const uint64_t n = r.agents.size();
  const uint32_t per_agent_conc =
      static_cast<uint32_t>(std::max<uint64_t>(1, (concurrency + n - 1) / n));
  v1::RunProbeEvent event;
  v1::RunProbeEvent::Dispatched* d = event.mutable_dispatched();
  d->set_adhoc_id(id_);
  d->set_region(r.region);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t share =
        request_.count() / n + (i < request_.count() % n ? 1 : 0);
    if (share == 0) continue;
    AgentShare& s = shares_[r.agents[i]];
    s.agent_id = r.agents[i];
    s.region = r.region;
    s.expected = share * r.urls.size() * per_agent_streams;
    region_agents_[r.region].push_back(r.agents[i]);
    absl::Status sent =
        send_(r.agents[i], ShareProbe(r, share, per_agent_conc));
    if (!sent.ok()) {
      LogWarning("adhoc_dispatch_failed", {{"adhoc_id", id_},
                                           {"agent", r.agents[i]},
                                           {"error", sent.ToString()}});
      s.lost = true;
      lost_.push_back(r.agents[i]);
      continue;
    }
    d->add_agent_ids(r.agents[i]);
    d->set_probes(d->probes() + s.expected);
    const uint64_t waves = (s.expected + per_agent_conc - 1) / per_agent_conc;
    longest = std::max(longest, static_cast<int64_t>(waves) * per_probe);
  }
  sink_->OnEvent(std::move(event));
  LogInfo("adhoc_dispatched", {{"adhoc_id", id_},
                               {"region", r.region},
                               {"agents", absl::StrJoin(d->agent_ids(), ",")},
                               {"probes", absl::StrCat(d->probes())}});
  return longest;
}

v1::AdhocProbe ProbeRunImpl::ShareProbe(const RegionPlan& r, uint64_t share,
                                        uint32_t concurrency) const {
  v1::AdhocProbe p;
  p.set_adhoc_id(id_);
  p.set_target(request_.target());
  p.set_region(r.region);
  for (const v1::FunctionUrl& u : r.urls) *p.add_urls() = u;
  p.set_role_arn(r.role_arn);
  *p.mutable_sizes() = request_.sizes();
  p.set_count(static_cast<uint32_t>(share));
  p.set_concurrency(concurrency);
  *p.mutable_limits() = request_.limits();
  *p.mutable_transport() = request_.transport();
  return p;
}

v1::AdhocProbe ProbeRunImpl::CancelProbe(const std::string& region) const {
  v1::AdhocProbe p;
  p.set_adhoc_id(id_);
  p.set_region(region);
  p.set_cancel(true);
  return p;
}

void ProbeRunImpl::AddOutcome(const std::string& agent_id,
                              const v1::Outcome& o) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  auto it = shares_.find(agent_id);
  if (it == shares_.end()) return;
  if (!o.probe_id().empty() && !seen_.insert(o.probe_id()).second) return;
  AgentShare& s = it->second;
  ++s.received;
  builders_.at(s.region).Add(o);
  if (request_.stream_outcomes()) {
    v1::RunProbeEvent event;
    *event.mutable_outcome() = o;
    if (!sink_->OnEvent(std::move(event))) ++dropped_events_;
  }
  if (s.received >= s.expected) s.done = true;
  MaybeFinishLocked();
}

void ProbeRunImpl::OnResult(const std::string& agent_id,
                            const v1::AdhocResult& r) {
  if (r.has_outcome()) AddOutcome(agent_id, r.outcome());
  if (!r.done()) return;
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  auto it = shares_.find(agent_id);
  if (it == shares_.end() || it->second.done) return;
  it->second.reported_done = true;
  it->second.reported_at = clock_->MonotonicNow();
}

void ProbeRunImpl::Check(const std::map<std::string, v1::AgentState>& states,
                         absl::Duration now) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  for (auto& [id, s] : shares_) {
    if (s.done || s.lost) continue;
    auto st = states.find(id);
    if (st == states.end() || st->second != v1::LIVE) {
      s.lost = true;
      lost_.push_back(id);
      LogWarning("adhoc_agent_lost", {{"adhoc_id", id_}, {"agent", id}});
      // Its share is given up: stop its probing if it still has a stream,
      // and again when it reconnects (its stream is being closed).
      const v1::AdhocProbe p = CancelProbe(s.region);
      send_(id, p).IgnoreError();
      pending_->Add(id, p);
    } else if (s.reported_done && now - s.reported_at >= kDoneGrace) {
      s.done = true;
    }
  }
  if (now >= deadline_) {
    SendCancelLocked();
    FinishLocked(absl::DeadlineExceededError(
                     absl::StrCat("ad-hoc run ", id_, ": ", MissingLocked(),
                                  " probes did not report in time")),
                 false);
    return;
  }
  MaybeFinishLocked();
}

uint64_t ProbeRunImpl::MissingLocked() const {
  uint64_t missing = 0;
  for (const auto& [id, s] : shares_) {
    if (s.received < s.expected) missing += s.expected - s.received;
  }
  return missing;
}

void ProbeRunImpl::SendCancelLocked() {
  for (const auto& [id, s] : shares_) {
    // Lost agents too: one marked LOST may still be probing.
    if (s.done) continue;
    const v1::AdhocProbe p = CancelProbe(s.region);
    const absl::Status sent = send_(id, p);
    // Not reachable now, or LOST (its stream closed or about to be):
    // sent again when it reconnects.
    if (!sent.ok() || s.lost) pending_->Add(id, p);
  }
}

bool ProbeRunImpl::RegionDoneLocked(const std::string& region) {
  for (const std::string& a : region_agents_[region]) {
    const AgentShare& s = shares_.at(a);
    if (!s.done && !s.lost) return false;
  }
  return true;
}

void ProbeRunImpl::MaybeFinishLocked() {
  bool all = true;
  for (const std::string& region : region_order_) {
    if (summarized_.count(region)) continue;
    if (!RegionDoneLocked(region)) {
      all = false;
      continue;
    }
    summarized_.insert(region);
    for (v1::ProbeSummary& s : builders_.at(region).Build()) {
      v1::RunProbeEvent event;
      *event.mutable_region_summary() = std::move(s);
      sink_->OnEvent(std::move(event));
    }
  }
  if (!all) return;
  const uint64_t missing = MissingLocked();
  absl::Status status = absl::OkStatus();
  if (missing > 0) {
    status = absl::UnavailableError(absl::StrCat(
        "ad-hoc run ", id_, ": ", missing, " probes did not report",
        lost_.empty()
            ? ""
            : absl::StrCat("; agents lost: ", absl::StrJoin(lost_, ", "))));
  }
  FinishLocked(status, false);
}

void ProbeRunImpl::FinishLocked(const absl::Status& status, bool cancelled) {
  v1::RunProbeEvent event;
  v1::RunProbeEvent::Done* d = event.mutable_done();
  d->set_adhoc_id(id_);
  for (const std::string& region : region_order_) {
    for (v1::ProbeSummary& s : builders_.at(region).Build()) {
      *d->add_summaries() = std::move(s);
    }
  }
  d->set_total_probes(seen_.size());
  d->set_cancelled(cancelled);
  d->set_missing_probes(MissingLocked());
  for (const std::string& a : lost_) d->add_lost_agents(a);
  d->set_dropped_outcome_events(dropped_events_);
  finished_ = true;
  LogInfo("adhoc_done", {{"adhoc_id", id_},
                         {"probes", absl::StrCat(seen_.size())},
                         {"missing", absl::StrCat(d->missing_probes())},
                         {"status", status.ToString()}});
  sink_->OnEvent(std::move(event));
  sink_->OnDone(status);
}

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary
