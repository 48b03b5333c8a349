#include "common/time/periodic_task.h"

#include <utility>

namespace fleetcanary {

PeriodicTask::PeriodicTask(Clock* clock, absl::Duration period,
                           absl::AnyInvocable<void()> run)
    : clock_(clock), period_(period), run_(std::move(run)) {
  {
    absl::MutexLock lock(&mu_);
    next_ = clock_->MonotonicNow() + period_;
  }
  thread_ = std::thread([this] { Loop(); });
}

PeriodicTask::~PeriodicTask() { Stop(); }

void PeriodicTask::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t PeriodicTask::runs() const {
  absl::MutexLock lock(&mu_);
  return runs_;
}

uint64_t PeriodicTask::skipped() const {
  absl::MutexLock lock(&mu_);
  return skipped_;
}

void PeriodicTask::Loop() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (clock_->AwaitUntil(&mu_, absl::Condition(&stopping_), next_)) return;
    mu_.Unlock();
    run_();
    mu_.Lock();
    ++runs_;
    next_ += period_;
    // Due times already in the past are skipped, not caught up on; one due
    // exactly now still runs (the wait returns at once).
    const absl::Duration now = clock_->MonotonicNow();
    if (next_ < now) {
      absl::Duration rem;
      const int64_t missed = absl::IDivDuration(now - next_, period_, &rem) +
                             (rem > absl::ZeroDuration() ? 1 : 0);
      skipped_ += missed;
      next_ += missed * period_;
    }
  }
}

}  // namespace fleetcanary
