#include "tests/testing/fake_adhoc_agents.h"

#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace testing {

FakeAdhocAgents::FakeAdhocAgents(Clock* clock) : clock_(clock) {
  worker_ = std::thread([this] { Loop(); });
}

FakeAdhocAgents::~FakeAdhocAgents() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

void FakeAdhocAgents::set_answer(bool answer) {
  absl::MutexLock lock(&mu_);
  answer_ = answer;
}

absl::Status FakeAdhocAgents::Send(const std::string& agent,
                                   const v1::AdhocProbe& p) {
  absl::MutexLock lock(&mu_);
  received_.push_back({agent, p, clock_->MonotonicNow()});
  if (p.cancel() && !cancel_at_.count(agent)) {
    cancel_at_[agent] = clock_->MonotonicNow();
  }
  if (answer_ && !p.cancel()) work_.push_back({agent, p});
  return absl::OkStatus();
}

std::optional<absl::Duration> FakeAdhocAgents::CancelTime(
    const std::string& agent, absl::Duration timeout) {
  struct Args {
    FakeAdhocAgents* self;
    std::string agent;
  } args{this, agent};
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                             return a->self->cancel_at_.count(a->agent) > 0;
                           },
                           &args),
                       timeout);
  auto it = cancel_at_.find(agent);
  if (it == cancel_at_.end()) return std::nullopt;
  return it->second;
}

size_t FakeAdhocAgents::received(const std::string& agent) {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& r : received_) n += r.agent == agent;
  return n;
}

void FakeAdhocAgents::Loop() {
  for (;;) {
    std::pair<std::string, v1::AdhocProbe> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](FakeAdhocAgents* f) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return f->stopping_ || !f->work_.empty();
          },
          this));
      if (stopping_) return;
      job = work_.front();
      work_.pop_front();
    }
    const v1::AdhocProbe& p = job.second;
    int n = 0;
    const int total = p.count() * p.sizes_size() * p.urls_size();
    for (uint32_t i = 0; i < p.count(); ++i) {
      for (uint64_t size : p.sizes()) {
        for (const v1::FunctionUrl& u : p.urls()) {
          v1::AdhocResult r;
          r.set_adhoc_id(p.adhoc_id());
          v1::Outcome* o = r.mutable_outcome();
          o->set_agent_id(job.first);
          o->set_region(p.region());
          o->set_mode(u.mode());
          o->set_requested_bytes(size);
          o->set_adhoc_id(p.adhoc_id());
          o->set_probe_id(absl::StrCat(job.first, p.adhoc_id(), n));
          o->set_outcome_class(v1::OK);
          r.set_done(++n == total);
          core_->OnAdhocResult(job.first, r);
        }
      }
    }
  }
}

}  // namespace testing
}  // namespace fleetcanary
