#include "common/time/clock.h"

#include <chrono>
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
  const int64_t deadline =
      elapsed_ns_.load() + absl::ToInt64Nanoseconds(timeout);
  struct Args {
    const absl::Condition* cond;
    const std::atomic<int64_t>* elapsed;
    int64_t deadline;
  } args{&cond, &elapsed_ns_, deadline};
  const absl::Condition done(
      +[](Args* a) {
        return a->cond->Eval() || a->elapsed->load() >= a->deadline;
      },
      &args);
  {
    absl::MutexLock lock(&mu_);
    waiter_mutexes_.insert(mu);
    ++sleepers_;
  }
  mu->Await(done);
  // Deregister without holding `mu`, after any AdvanceTime() that may still
  // touch `mu` has finished with it (lock order is never mu -> mu_ -> mu).
  mu->Unlock();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* waking) { return *waking == 0; }, &waking_));
    waiter_mutexes_.erase(waiter_mutexes_.find(mu));
    --sleepers_;
  }
  mu->Lock();
  return cond.Eval();
}

void SimulatedClock::AdvanceTime(absl::Duration d) {
  std::vector<absl::Mutex*> to_wake;
  {
    absl::MutexLock lock(&mu_);
    elapsed_ns_.fetch_add(absl::ToInt64Nanoseconds(d));
    to_wake.assign(waiter_mutexes_.begin(), waiter_mutexes_.end());
    ++waking_;
  }
  // Taking and releasing each waiter's mutex makes absl re-evaluate the
  // waiter's condition, which now sees the new time.
  for (absl::Mutex* m : to_wake) {
    m->Lock();
    m->Unlock();
  }
  absl::MutexLock lock(&mu_);
  --waking_;
}

int SimulatedClock::waiters() {
  absl::MutexLock lock(&mu_);
  return sleepers_;
}

}  // namespace fleetcanary
