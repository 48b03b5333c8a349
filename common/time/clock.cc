#include "common/time/clock.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <vector>

#include "absl/time/clock.h"

namespace fleetcanary {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  absl::Duration MonotonicNow() override {
    return absl::FromChrono(
        std::chrono::steady_clock::now().time_since_epoch());
  }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration timeout) override {
    return mu->AwaitWithTimeout(cond, timeout);
  }
};

}  // namespace

bool Clock::AwaitUntil(absl::Mutex* mu, const absl::Condition& cond,
                       absl::Duration monotonic_deadline) {
  return AwaitWithTimeout(mu, cond, monotonic_deadline - MonotonicNow());
}

Clock* Clock::Real() {
  static Clock* const clock = new RealClock();
  return clock;
}

SimulatedClock::SimulatedClock(absl::Time start) : start_(start) {}

absl::Time SimulatedClock::Now() {
  return start_ + absl::Nanoseconds(elapsed_ns_.load());
}

absl::Duration SimulatedClock::MonotonicNow() {
  return absl::Nanoseconds(elapsed_ns_.load());
}

void SimulatedClock::SleepFor(absl::Duration d) {
  absl::Mutex local;
  absl::MutexLock lock(&local);
  bool never = false;
  AwaitWithTimeout(&local, absl::Condition(&never), d);
}

bool SimulatedClock::AwaitWithTimeout(absl::Mutex* mu,
                                      const absl::Condition& cond,
                                      absl::Duration timeout) {
  const absl::Duration now = absl::Nanoseconds(elapsed_ns_.load());
  return AwaitUntil(mu, cond,
                    timeout == absl::InfiniteDuration()
                        ? absl::InfiniteDuration()
                        : now + std::max(timeout, absl::ZeroDuration()));
}

bool SimulatedClock::AwaitUntil(absl::Mutex* mu, const absl::Condition& cond,
                                absl::Duration monotonic_deadline) {
  Waiter self;
  self.mu = mu;
  // Saturate: an infinite (or huge) deadline never overflows.
  const absl::Duration max_ns =
      absl::Nanoseconds(std::numeric_limits<int64_t>::max());
  self.deadline_ns = monotonic_deadline >= max_ns
                         ? std::numeric_limits<int64_t>::max()
                         : absl::ToInt64Nanoseconds(std::max(
                               monotonic_deadline, absl::ZeroDuration()));
  // Already done: return without ever counting as blocked, so that
  // AwaitWaiters() cannot mistake a thread that is about to run on for a
  // parked one.
  if (cond.Eval() || elapsed_ns_.load() >= self.deadline_ns) return cond.Eval();
  struct Args {
    SimulatedClock* clock;
    Waiter* self;
    const absl::Condition* cond;
  } args{this, &self, &cond};
  // absl evaluates this, with `mu` held, in whichever thread releases `mu`
  // (or advances time): the moment it holds, the waiter stops counting as
  // blocked, before it has even woken.
  const absl::Condition done(
      +[](Args* a) {
        const bool released = a->cond->Eval() || a->clock->elapsed_ns_.load() >=
                                                     a->self->deadline_ns;
        if (released) a->clock->Release(a->self);
        return released;
      },
      &args);
  {
    absl::MutexLock lock(&mu_);
    waiters_.push_back(&self);
    self.counted = true;
    blocked_.fetch_add(1);
  }
  mu->Await(done);
  // Deregister without holding `mu`, after any AdvanceTime() that may still
  // touch `mu` has finished with it (lock order is never mu -> mu_ -> mu).
  mu->Unlock();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* waking) { return *waking == 0; }, &waking_));
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &self));
    Release(&self);  // no-op: `done` held when Await returned
  }
  mu->Lock();
  return cond.Eval();
}

void SimulatedClock::Release(Waiter* w) {
  if (w->counted.exchange(false)) blocked_.fetch_sub(1);
}

void SimulatedClock::AdvanceTime(absl::Duration d) {
  std::vector<absl::Mutex*> to_wake;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = elapsed_ns_.fetch_add(absl::ToInt64Nanoseconds(d)) +
                        absl::ToInt64Nanoseconds(d);
    for (Waiter* w : waiters_) {
      if (w->deadline_ns <= now) Release(w);
      to_wake.push_back(w->mu);
    }
    ++waking_;
  }
  // Taking and releasing each waiter's mutex makes absl re-evaluate the
  // waiter's condition, which now sees the new time.
  std::sort(to_wake.begin(), to_wake.end());
  to_wake.erase(std::unique(to_wake.begin(), to_wake.end()), to_wake.end());
  for (absl::Mutex* m : to_wake) {
    m->Lock();
    m->Unlock();
  }
  absl::MutexLock lock(&mu_);
  --waking_;
}

int SimulatedClock::waiters() { return blocked_.load(); }

bool SimulatedClock::AwaitWaiters(int n, absl::Duration real_timeout) {
  struct Args {
    const std::atomic<int>* blocked;
    int n;
  } args{&blocked_, n};
  // Every registration passes through mu_, so its release re-evaluates this.
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Args* a) { return a->blocked->load() >= a->n; }, &args),
      real_timeout);
}

}  // namespace fleetcanary
