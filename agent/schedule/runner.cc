#include "agent/schedule/runner.h"

#include <algorithm>
#include <map>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "google/protobuf/util/message_differencer.h"

namespace fleetcanary {
namespace agent {
namespace {

using google::protobuf::util::MessageDifferencer;

// Size rotation: whether `wall` is in the assignment's turn, away from the
// period's edges (so client and platform put the probe in the same period).
bool InTurn(const v1::Assignment& a, absl::Time wall) {
  if (a.rotation_slots() <= 1) return true;
  const absl::Duration period = DurationFromProto(a.rotation_period());
  if (period <= absl::ZeroDuration()) return true;
  absl::Duration rem;
  const int64_t index =
      absl::IDivDuration(wall - absl::UnixEpoch(), period, &rem);
  const absl::Duration margin = std::min(period / 10, absl::Milliseconds(100));
  return index % a.rotation_slots() == a.rotation_slot() && rem >= margin &&
         rem <= period - margin;
}

std::string KeyOf(const v1::Assignment& a) {
  return absl::StrCat(a.schedule_id(), "|", a.target(), "|", a.region(), "|",
                      a.mode(), "|", a.size_bytes());
}

struct Timer {
  v1::Assignment assignment;
  absl::Duration interval;
  absl::Duration next;  // Monotonic time of the next probe.
};

class RunnerImpl : public Runner {
 public:
  RunnerImpl(const RunnerOptions& options, ProbeEngine* engine, Outbox* outbox,
             Clock* clock, std::function<void()> on_outcome)
      : options_(options),
        engine_(engine),
        outbox_(outbox),
        clock_(clock),
        on_outcome_(std::move(on_outcome)),
        rng_(options.seed) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~RunnerImpl() override {
    Stop();
    WaitIdle(absl::Seconds(30));
  }

  void OnAssignments(const v1::AssignmentSet& set) override {
    absl::MutexLock lock(&mu_);
    std::map<std::string, Timer> next;
    const absl::Duration now_mono = clock_->MonotonicNow();
    const absl::Time now_wall = clock_->Now();
    for (const v1::Assignment& a : set.assignments()) {
      const std::string key = KeyOf(a);
      auto it = timers_.find(key);
      if (it != timers_.end() &&
          MessageDifferencer::Equals(it->second.assignment, a)) {
        next[key] = std::move(it->second);
        continue;
      }
      Timer t;
      t.assignment = a;
      t.interval = DurationFromProto(a.interval());
      if (t.interval <= absl::ZeroDuration()) {
        LogWarning("assignment_ignored",
                   {{"key", key}, {"reason", "interval must be > 0"}});
        continue;
      }
      // First slot: the next wall time ≡ offset (mod interval).
      const absl::Duration offset = DurationFromProto(a.offset());
      const absl::Duration since_epoch = now_wall - absl::UnixEpoch() - offset;
      absl::Duration rem;
      const int64_t slots =
          absl::IDivDuration(since_epoch, t.interval, &rem) + 1;
      const absl::Time first = absl::UnixEpoch() + offset + slots * t.interval;
      t.next = now_mono + (first - now_wall);
      next[key] = std::move(t);
    }
    timers_ = std::move(next);
    stats_.assignments = timers_.size();
    stats_.assignment_version = set.version();
    LogInfo("assignments_applied", {{"version", absl::StrCat(set.version())},
                                    {"streams", absl::StrCat(timers_.size())}});
    changed_ = true;
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  bool WaitIdle(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    return clock_->AwaitWithTimeout(
        &mu_,
        absl::Condition(
            +[](RunnerImpl* r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return r->outstanding_ == 0;
            },
            this),
        timeout);
  }

  RunnerStats stats() override {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<ProbeRequest> due;
      {
        absl::MutexLock lock(&mu_);
        absl::Duration now = clock_->MonotonicNow();
        // An absolute deadline: time that passes before the wait starts
        // shortens it instead of shifting every slot.
        absl::Duration until = now + absl::Seconds(60);
        for (const auto& [key, t] : timers_) until = std::min(until, t.next);
        if (until > now) {
          changed_ = false;
          clock_->AwaitUntil(
              &mu_,
              absl::Condition(
                  +[](RunnerImpl* r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                    return r->stopping_ || r->changed_;
                  },
                  this),
              until);
        }
        if (stopping_) return;
        now = clock_->MonotonicNow();
        stats_.last_tick = now;
        const absl::Time wall = clock_->Now();
        for (auto& [key, t] : timers_) {
          if (t.next > now) continue;
          if (InTurn(t.assignment, wall)) {
            due.push_back(MakeRequest(t.assignment));
          }
          t.next += t.interval;
          if (t.next <= now) {
            // Fell behind by more than an interval: skip, don't burst.
            absl::Duration rem;
            const int64_t missed =
                absl::IDivDuration(now - t.next, t.interval, &rem) + 1;
            t.next += missed * t.interval;
            stats_.slots_skipped_total += missed;
          }
        }
        outstanding_ += due.size();
        stats_.probes_started_total += due.size();
      }
      for (ProbeRequest& r : due) {
        if (!MarkStarted(r)) continue;
        engine_->Start(std::move(r), [this](v1::Outcome outcome) {
          OnDone(std::move(outcome));
        });
      }
    }
  }

  ProbeRequest MakeRequest(const v1::Assignment& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ProbeRequest r;
    r.url = a.url().url();
    r.mode = a.mode();
    r.auth = a.url().auth() == v1::AWS_IAM ? v1::AWS_IAM : v1::NONE;
    r.size_bytes = a.size_bytes();
    r.chunk_bytes = a.chunk_bytes();
    r.chunk_gap = DurationFromProto(a.chunk_gap());
    r.seed = rng_();
    r.probe_id = absl::StrFormat("%016x%016x", rng_(), rng_());
    r.limits = a.limits();
    r.transport = a.transport();
    r.agent_id = options_.agent_id;
    r.region = options_.region;
    r.target = a.target();
    r.role_arn = a.role_arn();
    r.schedule_id = a.schedule_id();
    return r;
  }

  // Before a probe runs: a crash from here on leaves an interrupted outcome.
  // When the start cannot be recorded (a full disk) the probe is not run:
  // it ends at once as an AGENT_ERROR outcome (stored, or counted as lost if
  // the outbox cannot store that either). Returns whether to run it.
  bool MarkStarted(const ProbeRequest& r) {
    absl::Status s = outbox_->MarkStarted(StartedSkeleton(r));
    if (s.ok()) return true;
    LogError("probe_not_run", {{"reason", "its start could not be recorded"},
                               {"error", s.ToString()}});
    OnDone(NotRunOutcome(r, s));
    return false;
  }

  // Engine loop thread: persist, then tell the session.
  void OnDone(v1::Outcome outcome) {
    auto seq = outbox_->Append(std::move(outcome));
    if (!seq.ok()) {
      LogError("outbox_append_failed", {{"error", seq.status().ToString()}});
    } else if (on_outcome_) {
      on_outcome_();
    }
    absl::MutexLock lock(&mu_);
    --outstanding_;
    if (seq.ok()) {
      ++stats_.outcomes_appended_total;
    } else {
      ++stats_.append_errors_total;
    }
  }

  const RunnerOptions options_;
  ProbeEngine* const engine_;
  Outbox* const outbox_;
  Clock* const clock_;
  const std::function<void()> on_outcome_;
  std::thread thread_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Timer> timers_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  RunnerStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Runner>> Runner::Create(
    const RunnerOptions& options, ProbeEngine* engine, Outbox* outbox,
    Clock* clock, std::function<void()> on_outcome) {
  if (!engine || !outbox || !clock) {
    return absl::InvalidArgumentError("runner: missing dependency");
  }
  return std::unique_ptr<Runner>(
      new RunnerImpl(options, engine, outbox, clock, std::move(on_outcome)));
}

}  // namespace agent
}  // namespace fleetcanary
