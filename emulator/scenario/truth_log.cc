#include "emulator/scenario/truth_log.h"

#include <algorithm>
#include <utility>

namespace fleetcanary {
namespace emulator {

void TruthLog::Append(v1::InjectedFault fault) {
  absl::MutexLock lock(&mu_);
  fault.set_sequence(next_sequence_++);
  entries_.push_back(std::move(fault));
  while (entries_.size() > capacity_) {
    entries_.pop_front();
    ++dropped_;
  }
}

std::vector<v1::InjectedFault> TruthLog::Since(uint64_t after,
                                               size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::InjectedFault> out;
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), after,
      [](uint64_t a, const v1::InjectedFault& f) { return a < f.sequence(); });
  for (; it != entries_.end() && out.size() < limit; ++it) out.push_back(*it);
  return out;
}

void TruthLog::Clear() {
  absl::MutexLock lock(&mu_);
  entries_.clear();
}

uint64_t TruthLog::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

uint64_t TruthLog::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return next_sequence_ - 1;
}

}  // namespace emulator
}  // namespace fleetcanary
