// The admin API's logic (see admin_core.h). Request checks are in
// admin_validation.h, the plan of an ad-hoc run in probe_plan.h, a running
// one in probe_run.h; this file holds the core that ties them to the
// Scheduler, the VerdictSource and the store.
#include "controller/api/admin_core.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "analysis/report/report_builder.h"
#include "common/config/loader.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "common/time/periodic_task.h"
#include "controller/api/admin_validation.h"
#include "controller/api/pending_cancels.h"
#include "controller/api/probe_plan.h"
#include "controller/api/probe_run.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace {

using admin_internal::CheckAnalyzeRequest;
using admin_internal::CheckApplySchedules;
using admin_internal::CheckFilter;
using admin_internal::CheckReportRequest;
using admin_internal::PendingCancels;
using admin_internal::PlanProbeRun;
using admin_internal::ProbeRunImpl;
using admin_internal::RegionPlan;
using admin_internal::TargetsNameRegion;
using google::protobuf::util::TimeUtil;

// Counts live watchers; forwards destruction to the source's subscription.
class CountedSubscription : public VerdictSource::Subscription {
 public:
  CountedSubscription(std::unique_ptr<VerdictSource::Subscription> inner,
                      std::atomic<int>* count)
      : inner_(std::move(inner)), count_(count) {}
  ~CountedSubscription() override {
    inner_.reset();
    --*count_;
  }

 private:
  std::unique_ptr<VerdictSource::Subscription> inner_;
  std::atomic<int>* count_;
};

class AdminCoreImpl : public AdminCore {
 public:
  AdminCoreImpl(const AdminCoreOptions& options, const AdminCoreDeps& deps)
      : options_(options),
        deps_(deps),
        rng_(options.seed != 0
                 ? options.seed
                 : static_cast<uint64_t>(absl::ToUnixNanos(deps.clock->Now()))),
        timer_(deps.clock, options.check_interval, [this] { CheckRuns(); }) {}
  ~AdminCoreImpl() override { Shutdown(); }

  absl::StatusOr<std::shared_ptr<ProbeRun>> RunProbe(
      const v1::RunProbeRequest& request, ProbeEventSink* sink) override {
    if (standby()) return NotLeader();
    FC_ASSIGN_OR_RETURN(const std::vector<RegionPlan> plan,
                        PlanProbeRun(request, deps_.scheduler, options_.guard,
                                     options_.max_probes_per_run));
    std::shared_ptr<ProbeRunImpl> run;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::UnavailableError("controller shutting down");
      int active = 0;
      for (const auto& [id, r] : runs_) active += r->finished() ? 0 : 1;
      if (active >= options_.max_active_runs) {
        return absl::ResourceExhaustedError(
            absl::StrCat("too many ad-hoc runs in progress (", active,
                         "); wait for one to finish"));
      }
      const std::string id =
          absl::StrFormat("adhoc-%012x", rng_() & 0xffffffffffffull);
      run = std::make_shared<ProbeRunImpl>(id, request, sink, deps_.send_adhoc,
                                           deps_.clock, pending_cancels_);
      runs_[id] = run;
    }
    const uint32_t concurrency = request.concurrency() > 0
                                     ? request.concurrency()
                                     : options_.default_concurrency;
    run->Dispatch(plan, concurrency, options_.max_run_duration);
    return std::shared_ptr<ProbeRun>(run);
  }

  absl::StatusOr<v1::ApplySchedulesResponse> ApplySchedules(
      const v1::ApplySchedulesRequest& request) override {
    if (standby()) return NotLeader();
    FC_RETURN_IF_ERROR(CheckApplySchedules(request));
    // Target existence and regions of the target: the scheduler checks them
    // against the stored targets plus the request's, before changing anything.
    absl::StatusOr<v1::ApplySchedulesResponse> r =
        deps_.scheduler->ApplySchedules(request);
    if (r.ok()) {
      LogInfo("schedules_applied",
              {{"created", absl::StrJoin(r->created(), ",")},
               {"updated", absl::StrJoin(r->updated(), ",")},
               {"deleted", absl::StrJoin(r->deleted(), ",")},
               {"dry_run", request.dry_run() ? "true" : "false"}});
    }
    return r;
  }

  absl::StatusOr<v1::ListSchedulesResponse> ListSchedules(
      const v1::ListSchedulesRequest&) override {
    if (standby()) {
      FC_ASSIGN_OR_RETURN(v1::FleetConfig fleet,
                          deps_.standby_store->LoadFleet());
      v1::ListSchedulesResponse out;
      *out.mutable_targets() = std::move(*fleet.mutable_targets());
      *out.mutable_schedules() = std::move(*fleet.mutable_schedules());
      return out;
    }
    return deps_.scheduler->ListSchedules();
  }

  absl::Status DeleteSchedule(
      const v1::DeleteScheduleRequest& request) override {
    if (standby()) return NotLeader();
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    absl::Status s = deps_.scheduler->DeleteSchedule(request.id());
    if (s.ok()) LogInfo("schedule_deleted", {{"id", request.id()}});
    return s;
  }

  absl::StatusOr<v1::ListAgentsResponse> ListAgents(
      const v1::ListAgentsRequest& request) override {
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    if (standby()) return StandbyListAgents(request);
    std::vector<v1::AgentInfo> agents =
        deps_.scheduler->ListAgents(request.region());
    if (!request.region().empty() && agents.empty() &&
        !TargetsNameRegion(deps_.scheduler, request.region())) {
      return absl::NotFoundError(absl::StrCat(
          "region \"", request.region(),
          "\": no agent has connected from it and no target names it"));
    }
    std::sort(agents.begin(), agents.end(),
              [](const v1::AgentInfo& a, const v1::AgentInfo& b) {
                return std::tie(a.region(), a.agent_id()) <
                       std::tie(b.region(), b.agent_id());
              });
    v1::ListAgentsResponse out;
    for (v1::AgentInfo& a : agents) {
      if (deps_.ingest) {
        a.set_applied_sequence(deps_.ingest->AppliedSequence(a.agent_id()));
      }
      *out.add_agents() = std::move(a);
    }
    for (const std::string& r : deps_.scheduler->RegionsWithoutAgents()) {
      if (request.region().empty() || r == request.region()) {
        out.add_regions_without_agents(r);
      }
    }
    return out;
  }

  absl::StatusOr<v1::GetVerdictsResponse> GetVerdicts(
      const v1::GetVerdictsRequest& request) override {
    FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
    FC_ASSIGN_OR_RETURN(
        std::vector<v1::Verdict> verdicts,
        deps_.verdicts->Current(request.filter(), request.include_healthy()));
    v1::GetVerdictsResponse out;
    for (v1::Verdict& v : verdicts) *out.add_verdicts() = std::move(v);
    return out;
  }

  absl::StatusOr<std::unique_ptr<VerdictSource::Subscription>> WatchVerdicts(
      const v1::WatchVerdictsRequest& request,
      VerdictSource::Callback callback) override {
    FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
    if (++watchers_ > options_.max_active_runs) {
      --watchers_;
      return absl::ResourceExhaustedError(
          "too many WatchVerdicts streams open; close one first");
    }
    // Transitions that arrive while the current verdicts are being sent
    // wait, so the caller sees current state first, then changes in order.
    struct Gate {
      absl::Mutex mu;
      bool open ABSL_GUARDED_BY(mu) = false;
      std::vector<v1::Verdict> pending ABSL_GUARDED_BY(mu);
    };
    auto gate = std::make_shared<Gate>();
    auto sub = deps_.verdicts->Subscribe(
        request.filter(), [gate, callback](const v1::Verdict& v) {
          absl::MutexLock lock(&gate->mu);
          if (!gate->open) {
            gate->pending.push_back(v);
            return;
          }
          callback(v);
        });
    absl::StatusOr<std::vector<v1::Verdict>> current =
        deps_.verdicts->Current(request.filter(), true);
    if (!current.ok()) {
      sub.reset();
      --watchers_;
      return current.status();
    }
    {
      absl::MutexLock lock(&gate->mu);
      for (const v1::Verdict& v : *current) callback(v);
      for (const v1::Verdict& v : gate->pending) callback(v);
      gate->pending.clear();
      gate->open = true;
    }
    return std::unique_ptr<VerdictSource::Subscription>(
        new CountedSubscription(std::move(sub), &watchers_));
  }

  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override {
    FC_RETURN_IF_ERROR(CheckAnalyzeRequest(request));
    return deps_.verdicts->Analyze(request);
  }

  absl::StatusOr<v1::IncidentReport> Report(
      const v1::ReportRequest& request) override {
    FC_RETURN_IF_ERROR(CheckReportRequest(request));
    const absl::Time from =
        absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.from()));
    const absl::Time to =
        absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.to()));
    if (deps_.store == nullptr) {
      return absl::FailedPreconditionError("Report: no store configured");
    }
    v1::AnalyzeRequest analyze;
    analyze.mutable_filter()->set_target(request.target());
    if (request.regions_size() == 1) {
      analyze.mutable_filter()->set_region(request.regions(0));
    }
    *analyze.mutable_from() = request.from();
    *analyze.mutable_to() = request.to();
    if (request.has_declared_fix_time()) {
      *analyze.mutable_declared_fix_time() = request.declared_fix_time();
    }
    report::ReportData data;
    FC_ASSIGN_OR_RETURN(data.analysis, deps_.verdicts->Analyze(analyze));
    FC_ASSIGN_OR_RETURN(
        data.minutes,
        QueryStreamCounts(deps_.store, MinuteOf(from),
                          MinuteOf(to - absl::Nanoseconds(1)) + 1));
    FC_ASSIGN_OR_RETURN(data.outcomes, deps_.store->QueryFailures(
                                           from, options_.report_max_failures));
    FC_ASSIGN_OR_RETURN(data.platform_samples,
                        deps_.store->QueryPlatformSamples(from, to));
    if (deps_.scheduler != nullptr) {
      const v1::ListSchedulesResponse fleet = deps_.scheduler->ListSchedules();
      data.targets.assign(fleet.targets().begin(), fleet.targets().end());
    }
    report::ReportOptions options;
    options.target = request.target();
    options.regions.assign(request.regions().begin(), request.regions().end());
    options.from = from;
    options.to = to;
    options.generated_at = deps_.clock->Now();
    options.source = "controller store";
    options.detection = options_.detection;
    if (request.max_samples() > 0) options.max_samples = request.max_samples();
    return report::BuildIncidentReport(data, options);
  }

  void OnAdhocResult(const std::string& agent_id,
                     const v1::AdhocResult& result) override {
    std::shared_ptr<ProbeRunImpl> run = Find(result.adhoc_id());
    if (run) run->OnResult(agent_id, result);
  }

  void OnAgentConnected(const std::string& agent_id) override {
    for (const v1::AdhocProbe& cancel : pending_cancels_->Take(agent_id)) {
      const absl::Status sent = deps_.send_adhoc(agent_id, cancel);
      LogInfo("adhoc_cancel_resent", {{"adhoc_id", cancel.adhoc_id()},
                                      {"agent", agent_id},
                                      {"status", sent.ToString()}});
      if (!sent.ok()) pending_cancels_->Add(agent_id, cancel);
    }
  }

  size_t pending_cancels() override { return pending_cancels_->size(); }

  void OnCommitted(const CommittedBatch& batch) override {
    for (const v1::Outcome& o : batch.outcomes) {
      if (o.adhoc_id().empty()) continue;
      std::shared_ptr<ProbeRunImpl> run = Find(o.adhoc_id());
      if (run) run->AddOutcome(o.agent_id(), o);
    }
  }

  int active_runs() override {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& [id, r] : runs_) n += r->finished() ? 0 : 1;
    return n;
  }

  void Shutdown() override {
    std::vector<std::shared_ptr<ProbeRunImpl>> runs;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& [id, r] : runs_) runs.push_back(r);
    }
    for (auto& r : runs) r->Cancel();
    timer_.Stop();
  }

 private:
  std::shared_ptr<ProbeRunImpl> Find(const std::string& id) {
    if (id.empty()) return nullptr;
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(id);
    return it == runs_.end() ? nullptr : it->second;
  }

  bool standby() const { return deps_.standby_store != nullptr; }

  absl::Status NotLeader() const {
    std::string leader =
        deps_.leader_address ? deps_.leader_address() : std::string();
    return absl::UnavailableError(absl::StrCat(
        "not the leader; leader=", leader.empty() ? "unknown" : leader));
  }

  // Agents as the shared store knows them (see AdminCoreDeps).
  absl::StatusOr<v1::ListAgentsResponse> StandbyListAgents(
      const v1::ListAgentsRequest& request) {
    FC_ASSIGN_OR_RETURN(std::vector<AgentRecord> records,
                        deps_.standby_store->LoadAgents());
    const absl::Time now = deps_.clock->Now();
    v1::ListAgentsResponse out;
    std::sort(records.begin(), records.end(),
              [](const AgentRecord& a, const AgentRecord& b) {
                return std::tie(a.region, a.agent_id) <
                       std::tie(b.region, b.agent_id);
              });
    for (const AgentRecord& r : records) {
      if (!request.region().empty() && r.region != request.region()) continue;
      v1::AgentInfo* a = out.add_agents();
      a->set_agent_id(r.agent_id);
      a->set_region(r.region);
      a->set_applied_sequence(r.applied_sequence);
      a->set_dropped_total(r.dropped_total);
      const bool seen = r.last_seen > absl::UnixEpoch();
      if (seen) {
        *a->mutable_last_heartbeat() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(r.last_seen));
      }
      a->set_state(seen && now - r.last_seen <= deps_.standby_liveness
                       ? v1::LIVE
                       : v1::LOST);
    }
    if (!request.region().empty() && out.agents_size() == 0) {
      return absl::NotFoundError(
          absl::StrCat("region \"", request.region(),
                       "\": no agent from it has committed outcomes"));
    }
    return out;
  }

  // The timer's run, every check_interval: forgets finished runs and lets
  // each active one check its agents' states and its deadline.
  void CheckRuns() {
    std::vector<std::shared_ptr<ProbeRunImpl>> runs;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (auto it = runs_.begin(); it != runs_.end();) {
        if (it->second->finished()) {
          it = runs_.erase(it);
        } else {
          runs.push_back(it->second);
          ++it;
        }
      }
    }
    if (runs.empty()) return;
    std::map<std::string, v1::AgentState> states;
    for (const v1::AgentInfo& a : deps_.scheduler->ListAgents("")) {
      states[a.agent_id()] = a.state();
    }
    const absl::Duration now = deps_.clock->MonotonicNow();
    for (auto& r : runs) r->Check(states, now);
  }

  const AdminCoreOptions options_;
  const AdminCoreDeps deps_;
  const std::shared_ptr<PendingCancels> pending_cancels_ =
      std::make_shared<PendingCancels>(deps_.clock, options_.max_run_duration);
  std::atomic<int> watchers_{0};

  absl::Mutex mu_;
  // State below is protected by mu_.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ProbeRunImpl>> runs_
      ABSL_GUARDED_BY(mu_);

  // Last: its runs use the members above, so it is stopped (destroyed)
  // before they are.
  PeriodicTask timer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Create(
    const AdminCoreOptions& options, const AdminCoreDeps& deps) {
  const bool standby = deps.standby_store != nullptr;
  if (!deps.verdicts || !deps.clock ||
      (!standby && (!deps.scheduler || !deps.send_adhoc))) {
    return absl::InvalidArgumentError("admin core: missing dependency");
  }
  if (options.check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("check_interval: must be > 0");
  }
  // The allowlist must be valid before any request uses it.
  FC_RETURN_IF_ERROR(TargetGuard::Create(options.guard).status());
  return std::unique_ptr<AdminCore>(new AdminCoreImpl(options, deps));
}

}  // namespace controller
}  // namespace fleetcanary
