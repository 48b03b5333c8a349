// Ground truth: every fault the emulator injected, in order, for tests and
// demos to compare detection against.
//
// Bounded: keeps the newest `capacity` entries and counts the ones dropped.
// Each entry gets a sequence number (1, 2, ...) so readers can page with
// Since().
//
// Thread-safety: thread-safe.
#ifndef FLEETCANARY_EMULATOR_SCENARIO_TRUTH_LOG_H_
#define FLEETCANARY_EMULATOR_SCENARIO_TRUTH_LOG_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

class TruthLog {
 public:
  explicit TruthLog(size_t capacity = 200000) : capacity_(capacity) {}

  // Stamps `fault` with the next sequence number and stores it.
  void Append(v1::InjectedFault fault);
  // Entries with sequence > `after`, oldest first, at most `limit`.
  std::vector<v1::InjectedFault> Since(uint64_t after,
                                       size_t limit = SIZE_MAX) const;
  // Forgets every entry (sequence numbers keep increasing).
  void Clear();
  uint64_t dropped() const;
  uint64_t last_sequence() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<v1::InjectedFault> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SCENARIO_TRUTH_LOG_H_
