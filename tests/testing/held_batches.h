// An ingest observer that holds every committed batch it is given, so that
// ingest's pending-outcome count (its flow-control bound) stays up, as while
// a slow observer lags, until the test calls Drop().
//
// Thread-safety: thread-safe; ingest calls it from its writer thread.
#ifndef FLEETCANARY_TESTS_TESTING_HELD_BATCHES_H_
#define FLEETCANARY_TESTS_TESTING_HELD_BATCHES_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "controller/ingest/ingest.h"

namespace fleetcanary {
namespace testing {

class HeldBatches : public controller::IngestObserver {
 public:
  void OnCommitted(const controller::CommittedBatch&) override {}
  void OnCommittedShared(
      std::shared_ptr<const controller::CommittedBatch> batch) override {
    absl::MutexLock lock(&mu_);
    held_.push_back(std::move(batch));
  }
  // Lets go of every batch held so far (ingest counts them as released).
  void Drop() {
    std::vector<std::shared_ptr<const controller::CommittedBatch>> drop;
    absl::MutexLock lock(&mu_);
    drop.swap(held_);
  }

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<const controller::CommittedBatch>> held_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_HELD_BATCHES_H_
