// Store held in plain C++ containers; same semantics as the SQLite store.
#include <algorithm>
#include <map>
#include <optional>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/store/store.h"
#include "controller/store/store_rows.h"

namespace fleetcanary {
namespace controller {
namespace {

class MemoryStore : public Store {
 public:
  absl::Status Commit(const WriteBatch& batch, CommitResult* result) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    if (result) result->platform_previous.clear();
    for (const AgentRecord& a : batch.agents) agents_[a.agent_id] = a;
    for (const StreamMinute& m : batch.minutes) {
      minutes_[{m.key, m.minute}].Merge(m.stats);
      if (batch.minutes_in_totals) totals_[m.key].Merge(m.stats);
    }
    for (const StreamTotal& t : batch.total_deltas) {
      totals_[t.key].Merge(t.stats);
    }
    for (const StreamHour& h : batch.hours) {
      hours_[{h.key, h.hour}].Merge(h.stats);
    }
    for (const v1::Outcome& o : batch.failures) {
      failures_.emplace(
          std::make_pair(TimestampToUnixMicros(o.start_time()), next_id_++), o);
    }
    for (const v1::PlatformMetricSample& s : batch.platform_samples) {
      auto key = std::make_tuple(
          TimestampToUnixMicros(s.period_start()), s.region(), s.target(),
          static_cast<int>(s.mode()), s.metric(), s.stat());
      auto it = platform_.find(key);
      const double previous = it == platform_.end() ? 0.0 : it->second.value();
      if (result) result->platform_previous.push_back(previous);
      const size_t i = &s - batch.platform_samples.data();
      if (i < batch.platform_counters.size() &&
          !batch.platform_counters[i].empty() && s.value() > previous) {
        counters_[batch.platform_counters[i]] += s.value() - previous;
      }
      platform_[key] = s;
    }
    for (const auto& [name, delta] : batch.counter_deltas) {
      counters_[name] += delta;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<AgentRecord>> LoadAgents() override {
    absl::MutexLock lock(&mu_);
    std::vector<AgentRecord> out;
    for (const auto& [id, a] : agents_) out.push_back(a);
    return out;
  }

  absl::StatusOr<std::vector<StreamTotal>> LoadStreamTotals() override {
    absl::MutexLock lock(&mu_);
    std::vector<StreamTotal> out;
    for (const auto& [key, stats] : totals_) out.push_back({key, stats});
    return out;
  }

  absl::StatusOr<std::map<std::string, double>> LoadCounters() override {
    absl::MutexLock lock(&mu_);
    return counters_;
  }

  absl::StatusOr<std::vector<StreamMinute>> QueryStreamMinutes(
      int64_t from_minute, int64_t to_minute) override {
    absl::MutexLock lock(&mu_);
    std::vector<StreamMinute> out;
    for (const auto& [k, stats] : minutes_) {
      if (k.second >= from_minute && k.second < to_minute) {
        out.push_back({k.first, k.second, stats});
      }
    }
    return out;
  }

  absl::StatusOr<std::vector<StreamHour>> QueryStreamHours(
      int64_t from_hour, int64_t to_hour) override {
    absl::MutexLock lock(&mu_);
    std::vector<StreamHour> out;
    for (const auto& [k, stats] : hours_) {
      if (k.second >= from_hour && k.second < to_hour) {
        out.push_back({k.first, k.second, stats});
      }
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::Outcome>> QueryFailures(
      absl::Time since, size_t limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Outcome> out;
    for (auto it = failures_.lower_bound({absl::ToUnixMicros(since), 0});
         it != failures_.end() && out.size() < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::PlatformMetricSample>> QueryPlatformSamples(
      absl::Time from, absl::Time to) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::PlatformMetricSample> out;
    for (const auto& [key, s] : platform_) {
      const int64_t t = std::get<0>(key);
      if (t >= absl::ToUnixMicros(from) && t < absl::ToUnixMicros(to)) {
        out.push_back(s);
      }
    }
    return out;
  }

  absl::StatusOr<v1::FleetConfig> LoadFleet() override {
    absl::MutexLock lock(&mu_);
    v1::FleetConfig fleet;
    for (const auto& [name, t] : targets_) *fleet.add_targets() = t;
    for (const auto& [id, s] : schedules_) *fleet.add_schedules() = s;
    return fleet;
  }

  absl::Status SaveFleet(const std::vector<v1::Target>& put_targets,
                         const std::vector<v1::Schedule>& put_schedules,
                         const std::vector<std::string>& delete_ids) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    for (const v1::Target& t : put_targets) targets_[t.name()] = t;
    for (const v1::Schedule& s : put_schedules) schedules_[s.id()] = s;
    for (const std::string& id : delete_ids) schedules_.erase(id);
    return absl::OkStatus();
  }

  absl::Status AppendVerdict(const v1::Verdict& verdict) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    verdicts_.emplace(
        std::make_pair(TimestampToUnixMicros(verdict.updated()), next_id_++),
        verdict);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Verdict>> ListVerdicts(absl::Time since,
                                                        size_t limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Verdict> out;
    for (auto it = verdicts_.lower_bound({absl::ToUnixMicros(since), 0});
         it != verdicts_.end() && out.size() < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }

  absl::Status SaveDetectorState(const std::string& blob) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    detector_state_ = blob;
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> LoadDetectorState() override {
    absl::MutexLock lock(&mu_);
    if (!detector_state_.has_value()) {
      return absl::NotFoundError("store: no detector state saved");
    }
    return *detector_state_;
  }

  // One transaction: nothing to bound in memory.
  absl::StatusOr<PruneResult> Prune(
      absl::Time now, const RetentionOptions& retention) override {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(CheckFenceLocked());
    PruneResult result;
    const PruneCutoffs cut = PruneCutoffs::At(now, retention);
    result.failures_deleted = EraseBefore(&failures_, cut.raw_us);
    result.verdicts_deleted = EraseBefore(&verdicts_, cut.raw_us);
    for (auto it = minutes_.begin(); it != minutes_.end();) {
      if (it->first.second < cut.minute) {
        hours_[{it->first.first, HourOfMinute(it->first.second)}].Merge(
            it->second);
        it = minutes_.erase(it);
        ++result.minutes_deleted;
      } else {
        ++it;
      }
    }
    for (auto it = hours_.begin(); it != hours_.end();) {
      if (it->first.second < cut.hour) {
        it = hours_.erase(it);
        ++result.hours_deleted;
      } else {
        ++it;
      }
    }
    for (auto it = platform_.begin(); it != platform_.end();) {
      if (std::get<0>(it->first) < cut.platform_us) {
        it = platform_.erase(it);
        ++result.platform_samples_deleted;
      } else {
        ++it;
      }
    }
    result.transactions = 1;
    return result;
  }

  absl::Status Ping() override { return absl::OkStatus(); }

  absl::StatusOr<LeaderLease> AcquireLease(const std::string& holder,
                                           const std::string& address,
                                           absl::Time now,
                                           absl::Duration ttl) override {
    absl::MutexLock lock(&mu_);
    store_internal::TakeOrRenewLease(&lease_, holder, address, now, ttl);
    return lease_;
  }

  absl::StatusOr<LeaderLease> ReadLease() override {
    absl::MutexLock lock(&mu_);
    return lease_;
  }

  absl::Status ReleaseLease(const std::string& holder) override {
    absl::MutexLock lock(&mu_);
    if (lease_.holder == holder) lease_.expires = absl::InfinitePast();
    return absl::OkStatus();
  }

  void SetFencingEpoch(int64_t epoch) override {
    absl::MutexLock lock(&mu_);
    fence_epoch_ = epoch;
  }

 private:
  absl::Status CheckFenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fence_epoch_ != 0 && lease_.epoch != fence_epoch_) {
      return absl::FailedPreconditionError(
          absl::StrCat("store: fenced: leader epoch ", fence_epoch_,
                       " superseded by ", lease_.epoch));
    }
    return absl::OkStatus();
  }

  template <typename V>
  static int64_t EraseBefore(std::map<std::pair<int64_t, int64_t>, V>* m,
                             int64_t cutoff) {
    auto end = m->lower_bound({cutoff, 0});
    const int64_t n = std::distance(m->begin(), end);
    m->erase(m->begin(), end);
    return n;
  }

  absl::Mutex mu_;
  // State below is protected by mu_.
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, AgentRecord> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<StreamKey, int64_t>, StreamStats> minutes_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<StreamKey, int64_t>, StreamStats> hours_
      ABSL_GUARDED_BY(mu_);
  std::map<StreamKey, StreamStats> totals_ ABSL_GUARDED_BY(mu_);
  // Keyed by (start micros, insertion id).
  std::map<std::pair<int64_t, int64_t>, v1::Outcome> failures_
      ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<int64_t, std::string, std::string, int, std::string,
                      std::string>,
           v1::PlatformMetricSample>
      platform_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Target> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Schedule> schedules_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int64_t, int64_t>, v1::Verdict> verdicts_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, double> counters_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> detector_state_ ABSL_GUARDED_BY(mu_);
  LeaderLease lease_ ABSL_GUARDED_BY(mu_);
  int64_t fence_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<Store> CreateMemoryStore() {
  return std::make_unique<MemoryStore>();
}

}  // namespace controller
}  // namespace fleetcanary
