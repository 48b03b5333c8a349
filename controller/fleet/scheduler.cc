#include "controller/fleet/scheduler.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/aws/partition.h"
#include "common/config/loader.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "common/time/periodic_task.h"
#include "controller/fleet/placement.h"
#include "google/protobuf/util/message_differencer.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string StreamOf(absl::string_view schedule, absl::string_view target,
                     int mode, uint64_t size) {
  return absl::StrCat(schedule, "|", target, "|", mode, "|", size);
}
constexpr size_t kMaxStreamsRemembered = 100000;

struct AgentEntry {
  v1::Hello hello;
  v1::AgentState state = v1::LIVE;
  // When it said goodbye (state DRAINED).
  absl::Duration drained_mono;
  absl::Time connected_since;
  absl::Time last_heartbeat;
  absl::Duration last_heartbeat_mono;
  v1::Heartbeat heartbeat;
  AssignmentListener* listener = nullptr;
  v1::AssignmentSet set;
  // Every stream (StreamOf) ever assigned to this agent (bounded).
  std::set<std::string> ever_assigned;
  // Monotonic time the agent became LOST (valid while state == LOST).
  absl::Duration lost_since_mono;
  bool ever_lost = false;
};

class SchedulerImpl : public Scheduler {
 public:
  SchedulerImpl(const SchedulerOptions& options, Store* store, Clock* clock)
      : options_(options), store_(store), clock_(clock) {
    if (options_.liveness_timeout <= absl::ZeroDuration()) {
      options_.liveness_timeout = 2 * options_.heartbeat_interval;
    }
    options_.load_factor = std::max(1.0, options_.load_factor);
  }
  ~SchedulerImpl() override { Shutdown(); }

  absl::Status Init() {
    FC_ASSIGN_OR_RETURN(address_guard_,
                        TargetGuard::Create(options_.target_addresses));
    FC_ASSIGN_OR_RETURN(v1::FleetConfig fleet, store_->LoadFleet());
    {
      absl::MutexLock lock(&mu_);
      for (const v1::Target& t : fleet.targets()) targets_[t.name()] = t;
      for (const v1::Schedule& s : fleet.schedules()) schedules_[s.id()] = s;
      // Versions keep growing across controller restarts.
      version_ = static_cast<uint64_t>(
          std::max<int64_t>(0, absl::ToUnixMicros(clock_->Now())));
      RecomputeLocked();
    }
    // The liveness check: several per heartbeat interval, so a silent agent
    // is marked LOST soon after liveness_timeout.
    timer_ = std::make_unique<PeriodicTask>(
        clock_,
        std::max(absl::Milliseconds(10), options_.heartbeat_interval / 4),
        [this] { CheckLiveness(); });
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ApplySchedulesResponse> ApplySchedules(
      const v1::ApplySchedulesRequest& request) override {
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    FC_RETURN_IF_ERROR(CheckTargetAddresses(request));
    absl::MutexLock lock(&mu_);
    std::map<std::string, v1::Target> targets = targets_;
    for (int i = 0; i < request.targets_size(); ++i) {
      const v1::Target& t = request.targets(i);
      if (!t.role_arn().empty()) {
        if (absl::Status s = aws::ValidateRoleArn(t.role_arn()); !s.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("targets[", i, "].role_arn: ", s.message()));
        }
      }
      targets[t.name()] = t;
    }
    std::set<std::string> named;
    for (int i = 0; i < request.schedules_size(); ++i) {
      const v1::Schedule& s = request.schedules(i);
      FC_RETURN_IF_ERROR(CheckSchedule(s, targets, i));
      if (!named.insert(s.id()).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "schedules[", i, "].id: duplicate id \"", s.id(), "\""));
      }
    }
    v1::ApplySchedulesResponse response;
    std::vector<v1::Schedule> put;
    for (const v1::Schedule& s : request.schedules()) {
      auto it = schedules_.find(s.id());
      if (it == schedules_.end()) {
        response.add_created(s.id());
        put.push_back(s);
      } else if (!MessageDifferencer::Equals(it->second, s)) {
        response.add_updated(s.id());
        put.push_back(s);
      } else {
        response.add_unchanged(s.id());
      }
    }
    std::vector<std::string> deleted;
    if (request.prune()) {
      for (const auto& [id, s] : schedules_) {
        if (!named.count(id)) {
          deleted.push_back(id);
          response.add_deleted(id);
        }
      }
    }
    std::vector<v1::Target> put_targets(request.targets().begin(),
                                        request.targets().end());
    if (!request.dry_run()) {
      FC_RETURN_IF_ERROR(store_->SaveFleet(put_targets, put, deleted));
      targets_ = std::move(targets);
      for (const v1::Schedule& s : put) schedules_[s.id()] = s;
      for (const std::string& id : deleted) schedules_.erase(id);
      RecomputeLocked();
    }
    for (const std::string& r : RegionsWithoutAgentsLocked()) {
      response.add_regions_without_agents(r);
    }
    return response;
  }

  // Private, loopback and metadata addresses are no canary targets unless
  // allowed: refused before anything is stored.
  absl::Status CheckTargetAddresses(const v1::ApplySchedulesRequest& request) {
    for (int i = 0; i < request.targets_size(); ++i) {
      const v1::Target& t = request.targets(i);
      for (int r = 0; r < t.regions_size(); ++r) {
        for (int u = 0; u < t.regions(r).urls_size(); ++u) {
          absl::Status s =
              address_guard_->CheckUrlAddress(t.regions(r).urls(u).url());
          if (s.code() != absl::StatusCode::kPermissionDenied) continue;
          return absl::InvalidArgumentError(absl::StrCat(
              "targets[", i, "].regions[", r, "].urls[", u,
              "].url: ", s.message(),
              "; not a canary target unless allowed deliberately with the "
              "controller's --target_allow_networks=CIDR, "
              "--target_allow_private or --target_allow_loopback"));
        }
      }
    }
    return absl::OkStatus();
  }

  v1::ListSchedulesResponse ListSchedules() override {
    absl::MutexLock lock(&mu_);
    v1::ListSchedulesResponse out;
    for (const auto& [name, t] : targets_) *out.add_targets() = t;
    for (const auto& [id, s] : schedules_) *out.add_schedules() = s;
    return out;
  }

  absl::Status DeleteSchedule(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    if (!schedules_.count(id)) {
      return absl::NotFoundError(absl::StrCat("schedule \"", id, "\""));
    }
    FC_RETURN_IF_ERROR(store_->SaveFleet({}, {}, {id}));
    schedules_.erase(id);
    RecomputeLocked();
    return absl::OkStatus();
  }

  void AgentConnected(const v1::Hello& hello,
                      AssignmentListener* listener) override {
    absl::MutexLock lock(&mu_);
    AgentEntry& a = agents_[hello.agent_id()];
    if (a.state == v1::LOST && a.ever_lost) {
      RecoveredLocked(hello.agent_id(), &a, "reconnected");
    }
    a.hello = hello;
    a.state = v1::LIVE;
    a.connected_since = clock_->Now();
    a.last_heartbeat = a.connected_since;
    a.last_heartbeat_mono = clock_->MonotonicNow();
    a.listener = listener;
    a.set.Clear();  // Forces a push of the current set.
    LogInfo("agent_connected",
            {{"agent", hello.agent_id()}, {"region", hello.region()}});
    RecomputeLocked();
  }

  void AgentHeartbeat(const std::string& agent_id,
                      const v1::Heartbeat& heartbeat) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return;
    AgentEntry& a = it->second;
    a.heartbeat = heartbeat;
    a.last_heartbeat = clock_->Now();
    a.last_heartbeat_mono = clock_->MonotonicNow();
    if (a.state == v1::LOST && a.listener != nullptr) {
      // Heartbeating on its open stream: it is alive (e.g. it was paused).
      RecoveredLocked(agent_id, &a, "heartbeat");
      a.state = v1::LIVE;
      RecomputeLocked();
    }
  }

  void AgentStreamPaused(const std::string& agent_id,
                         AssignmentListener* listener) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.listener != listener) return;
    AgentEntry& a = it->second;
    if (a.state != v1::LIVE && a.state != v1::DRAINING) return;
    a.last_heartbeat_mono = clock_->MonotonicNow();
  }

  void AgentDisconnected(const std::string& agent_id,
                         AssignmentListener* listener) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.listener != listener) return;
    it->second.listener = nullptr;
    if (it->second.state == v1::DRAINED) {
      LogInfo("agent_drained",
              {{"agent", agent_id}, {"region", it->second.hello.region()}});
    } else if (it->second.state != v1::LOST) {
      MarkLostLocked(agent_id, &it->second, "disconnected");
    }
    RecomputeLocked();
  }

  void AgentDraining(const std::string& agent_id) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return;
    it->second.state = v1::DRAINING;
    RecomputeLocked();
  }

  void AgentDrained(const std::string& agent_id,
                    AssignmentListener* listener) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.listener != listener) return;
    it->second.state = v1::DRAINED;
    it->second.drained_mono = clock_->MonotonicNow();
    RecomputeLocked();
  }

  void CheckLiveness() override {
    absl::MutexLock lock(&mu_);
    CheckLivenessLocked();
  }

  v1::AssignmentSet AssignmentsFor(const std::string& agent_id) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    return it == agents_.end() ? v1::AssignmentSet() : it->second.set;
  }

  bool WasAssigned(const std::string& agent_id,
                   const v1::Outcome& outcome) override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return false;
    return it->second.ever_assigned.count(
               StreamOf(outcome.schedule_id(), outcome.target(), outcome.mode(),
                        outcome.requested_bytes())) > 0;
  }

  std::vector<v1::AgentInfo> ListAgents(const std::string& region) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::AgentInfo> out;
    for (const auto& [id, a] : agents_) {
      if (!region.empty() && a.hello.region() != region) continue;
      v1::AgentInfo info;
      info.set_agent_id(id);
      info.set_region(a.hello.region());
      info.set_zone(a.hello.zone());
      info.set_version(a.hello.version());
      info.mutable_labels()->insert(a.hello.labels().begin(),
                                    a.hello.labels().end());
      info.set_state(a.state);
      *info.mutable_connected_since() = TimeToProto(a.connected_since);
      *info.mutable_last_heartbeat() = TimeToProto(a.last_heartbeat);
      info.set_assignments(a.set.assignments_size());
      info.set_outbox_depth(a.heartbeat.outbox_depth());
      info.set_dropped_total(a.heartbeat.dropped_total());
      out.push_back(std::move(info));
    }
    return out;
  }

  std::vector<std::string> RegionsWithoutAgents() override {
    absl::MutexLock lock(&mu_);
    return RegionsWithoutAgentsLocked();
  }

  std::vector<AgentCount> AgentCounts() override {
    absl::MutexLock lock(&mu_);
    std::map<std::pair<std::string, int>, int64_t> counts;
    for (const auto& [id, a] : agents_) ++counts[{a.hello.region(), a.state}];
    std::vector<AgentCount> out;
    for (const auto& [k, n] : counts) {
      out.push_back({k.first, static_cast<v1::AgentState>(k.second), n});
    }
    return out;
  }

  std::vector<ConfiguredStreams> Configured() override {
    absl::MutexLock lock(&mu_);
    std::map<std::tuple<std::string, std::string, int>, std::set<uint64_t>>
        ladders;
    for (const auto& [id, s] : schedules_) {
      auto t = targets_.find(s.target());
      if (t == targets_.end()) continue;
      std::vector<v1::InvokeMode> modes;
      for (int m : s.modes()) modes.push_back(static_cast<v1::InvokeMode>(m));
      if (modes.empty()) modes = {v1::BUFFERED, v1::RESPONSE_STREAM};
      for (const v1::RegionEndpoints& re : t->second.regions()) {
        if (!ScheduleCoversRegion(s, re.region())) continue;
        for (v1::InvokeMode mode : modes) {
          auto& ladder = ladders[{re.region(), s.target(), mode}];
          ladder.insert(s.sizes().begin(), s.sizes().end());
        }
      }
    }
    std::vector<ConfiguredStreams> out;
    for (const auto& [k, sizes] : ladders) {
      out.push_back({std::get<0>(k), std::get<1>(k),
                     static_cast<v1::InvokeMode>(std::get<2>(k)),
                     std::vector<uint64_t>(sizes.begin(), sizes.end())});
    }
    return out;
  }

  void Shutdown() override {
    if (timer_ != nullptr) timer_->Stop();
  }

 private:
  static absl::Status CheckSchedule(
      const v1::Schedule& s, const std::map<std::string, v1::Target>& targets,
      int i) {
    const std::string field = absl::StrCat("schedules[", i, "]");
    auto t = targets.find(s.target());
    if (t == targets.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".target: unknown target \"", s.target(), "\""));
    }
    if (s.sizes().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".sizes: required"));
    }
    if (!(s.rate_per_second() > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".rate_per_second: must be > 0"));
    }
    for (int r = 0; r < s.regions_size(); ++r) {
      bool found = false;
      for (const auto& re : t->second.regions()) {
        found = found || re.region() == s.regions(r);
      }
      if (!found) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".regions[", r, "]: target \"", s.target(),
                         "\" has no region \"", s.regions(r), "\""));
      }
    }
    return absl::OkStatus();
  }

  void CheckLivenessLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Duration now = clock_->MonotonicNow();
    bool changed = false;
    for (auto it = agents_.begin(); it != agents_.end();) {
      if (it->second.state == v1::DRAINED && it->second.listener == nullptr &&
          now - it->second.drained_mono > options_.forget_drained_after) {
        LogInfo("agent_forgotten", {{"agent", it->first},
                                    {"region", it->second.hello.region()},
                                    {"reason", "drained"}});
        it = agents_.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    for (auto& [id, a] : agents_) {
      if (a.state == v1::LOST || a.state == v1::DRAINED) continue;
      if (now - a.last_heartbeat_mono > options_.liveness_timeout) {
        MarkLostLocked(id, &a, "heartbeat timeout");
        changed = true;
        // Close its stream: the agent reconnects and is LIVE again.
        if (a.listener != nullptr) a.listener->OnLost();
      }
    }
    if (changed) RecomputeLocked();
  }

  void MarkLostLocked(const std::string& id, AgentEntry* a,
                      const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    a->state = v1::LOST;
    a->ever_lost = true;
    a->lost_since_mono = clock_->MonotonicNow();
    LogWarning(
        "agent_lost",
        {{"agent", id}, {"region", a->hello.region()}, {"reason", reason}});
    if (options_.metrics != nullptr) {
      options_.metrics->AddCounter("agents_lost_total", 1);
    }
  }

  void RecoveredLocked(const std::string& id, AgentEntry* a,
                       const std::string& how)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Duration lost_for = clock_->MonotonicNow() - a->lost_since_mono;
    LogInfo("agent_back", {{"agent", id},
                           {"region", a->hello.region()},
                           {"how", how},
                           {"lost_for", absl::FormatDuration(lost_for)}});
    if (options_.metrics != nullptr) {
      options_.metrics->AddCounter("agents_recovered_total", 1);
      options_.metrics->AddCounter("agent_lost_seconds_total",
                                   absl::ToDoubleSeconds(lost_for));
    }
  }

  // Regions named by schedules (through their targets).
  std::set<std::string> ScheduledRegionsLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<std::string> out;
    for (const auto& [id, s] : schedules_) {
      auto t = targets_.find(s.target());
      if (t == targets_.end()) continue;
      for (const auto& re : t->second.regions()) {
        if (ScheduleCoversRegion(s, re.region())) out.insert(re.region());
      }
    }
    return out;
  }

  std::vector<std::string> RegionsWithoutAgentsLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<std::string> live;
    for (const auto& [id, a] : agents_) {
      if (a.state == v1::LIVE) live.insert(a.hello.region());
    }
    std::vector<std::string> out;
    for (const std::string& r : ScheduledRegionsLocked()) {
      if (!live.count(r)) out.push_back(r);
    }
    return out;
  }

  // Places every pair (placement.h) and pushes the sets that changed.
  void RecomputeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Live agents by region (sorted by id: deterministic).
    std::map<std::string, std::vector<std::string>> live;
    for (const auto& [id, a] : agents_) {
      if (a.state == v1::LIVE) live[a.hello.region()].push_back(id);
    }
    std::map<std::string, v1::AssignmentSet> sets =
        PlaceAssignments(targets_, schedules_, live, options_.load_factor,
                         options_.rotation_period);
    for (auto& [id, a] : agents_) {
      v1::AssignmentSet next;
      auto it = sets.find(id);
      if (it != sets.end()) next = std::move(it->second);
      next.set_version(a.set.version());
      if (a.set.version() != 0 && MessageDifferencer::Equals(a.set, next)) {
        continue;
      }
      next.set_version(++version_);
      a.set = std::move(next);
      for (const v1::Assignment& x : a.set.assignments()) {
        if (a.ever_assigned.size() >= kMaxStreamsRemembered) break;
        a.ever_assigned.insert(
            StreamOf(x.schedule_id(), x.target(), x.mode(), x.size_bytes()));
      }
      if (a.listener != nullptr) a.listener->OnAssignments(a.set);
    }
    ReportRegionsWithoutAgentsLocked();
  }

  // Logs a change of the regions with schedules but no live agent.
  void ReportRegionsWithoutAgentsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> lonely = RegionsWithoutAgentsLocked();
    if (lonely != regions_without_agents_) {
      if (!lonely.empty()) {
        LogWarning("regions_without_agents",
                   {{"regions", absl::StrJoin(lonely, ",")}});
      } else {
        LogInfo("regions_without_agents", {{"regions", ""}});
      }
      regions_without_agents_ = std::move(lonely);
    }
  }
  SchedulerOptions options_;
  Store* const store_;
  Clock* const clock_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<std::string, v1::Target> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Schedule> schedules_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, AgentEntry> agents_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> regions_without_agents_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<TargetGuard> address_guard_;  // Set by Init(), immutable.
  // Set by Init(). Last: its runs use the members above, so it is stopped
  // (destroyed) before they are.
  std::unique_ptr<PeriodicTask> timer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    const SchedulerOptions& options, Store* store, Clock* clock) {
  if (store == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("scheduler: store and clock required");
  }
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat_interval: must be > 0");
  }
  auto s = std::make_unique<SchedulerImpl>(options, store, clock);
  FC_RETURN_IF_ERROR(s->Init());
  return std::unique_ptr<Scheduler>(std::move(s));
}

}  // namespace controller
}  // namespace fleetcanary
