// Exactly-once ingest of agent outcomes.
//
// Every OutcomeBatch is applied in one store transaction together with the
// agent's applied-sequence watermark, and its completion callback (which the
// session turns into an Ack) runs only after that transaction committed:
//   - outcomes with sequence <= watermark are duplicates (a resend after a
//     lost Ack or a reconnect): skipped and counted;
//   - first_sequence > watermark + 1 is a gap (the agent's bounded outbox
//     dropped the missing ones): counted, and the batch is applied -- unless
//     the agent has a watermark and the gap is larger than its cumulative
//     dropped count plus `max_unexplained_gap`: such a batch (forged: without
//     mTLS an agent id is taken on trust) is refused with FAILED_PRECONDITION,
//     nothing of it applied and the watermark kept, so it cannot turn the
//     agent's genuine outcomes into "duplicates" (logged outcomes_gap_refused,
//     counted durably in ingest_gaps_refused_total);
//   - the watermark becomes the batch's last sequence.
// Batches queued by many sessions are group-committed: one writer thread
// drains the queue and applies up to `max_outcomes_per_commit` outcomes of
// any number of batches in one transaction, which is what makes ingest fast.
// If a commit fails nothing of it is applied, every callback gets the error,
// and agents resend. Since a commit whose answer was lost may still have
// committed, the watermarks are re-read from the store before the next
// commit (so such a resend is skipped as a duplicate, never applied twice).
//
// After each commit the metrics are updated and IngestObservers are told
// (the verdict engine, later), on the writer thread.
//
// Memory is bounded by flow control, not by refusal: submissions are always
// queued, but once `max_queued_outcomes` outcomes are pending -- queued,
// being committed, or committed and still held by an observer (see
// IngestObserver::OnCommittedShared) -- ingest is saturated until that is
// down to half, and AwaitCapacity() tells callers (the sessions) to stop
// reading their streams meanwhile and calls them back when there is room.
// A caller that had already asked its stream for a message still submits
// it, so the pending count peaks at the bound plus one batch per session
// (measured: 299,800 of 100,000 + 1,000 sessions x 200).
//
// Thread-safety: all public methods are thread-safe. Callbacks run on the
// writer thread and must not block.
#ifndef FLEETCANARY_CONTROLLER_INGEST_INGEST_H_
#define FLEETCANARY_CONTROLLER_INGEST_INGEST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/time/clock.h"
#include "controller/metrics/controller_metrics.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace controller {

struct IngestOptions {
  // Most outcomes applied in one transaction.
  int max_outcomes_per_commit = 50000;
  // Bound of pending outcomes for flow control (see AwaitCapacity): about
  // 2 KiB of memory each, parsed, allocator slack included. Items without
  // outcomes count as one.
  int64_t max_queued_outcomes = 100000;
  // Raw failures kept per transaction at most (the rest only counted).
  int max_failures_per_commit = 10000;
  // Sequence numbers a batch may skip beyond the agent's reported dropped
  // count (which explains every genuine gap) before it is refused.
  uint64_t max_unexplained_gap = 1000;
  // Told the result of every commit attempt (OK or the store's error), on
  // the writer thread; must not block. The controller turns it into
  // readiness and fleetcanary_store_up.
  std::function<void(const absl::Status&)> on_commit;
};

// What applying one submitted batch did.
struct IngestResult {
  absl::Status status;
  // The agent's watermark after the batch: everything <= is committed.
  uint64_t applied_sequence = 0;
  uint64_t applied = 0;
  uint64_t duplicates = 0;
  uint64_t gaps = 0;
};

// What one commit applied, for observers.
struct CommittedBatch {
  // Outcomes applied (duplicates excluded), in commit order.
  std::vector<v1::Outcome> outcomes;
  std::vector<v1::PlatformMetricSample> platform_samples;
};

class IngestObserver {
 public:
  virtual ~IngestObserver() = default;
  // Called on the writer thread after each commit; must not block long.
  virtual void OnCommitted(const CommittedBatch& batch) = 0;
  // The same, for observers that keep the batch after the call (to process
  // it on another thread): they hold `batch` rather than copy it. Until every
  // holder has let go, its outcomes count toward max_queued_outcomes, so an
  // observer that falls behind slows ingest down (flow control) instead of
  // growing memory. Default: OnCommitted(*batch).
  virtual void OnCommittedShared(std::shared_ptr<const CommittedBatch> batch) {
    OnCommitted(*batch);
  }
};

class Ingest {
 public:
  using DoneCallback = std::function<void(const IngestResult&)>;

  virtual ~Ingest() = default;

  // Loads the agents' watermarks from `store` and starts the writer thread.
  // `store`, `metrics` and `clock` must outlive the Ingest.
  static absl::StatusOr<std::unique_ptr<Ingest>> Create(
      const IngestOptions& options, Store* store, ControllerMetrics* metrics,
      Clock* clock);

  // Queues an outcome batch of `agent_id` (whose identity, set by the
  // session, overrides the outcomes' agent_id/region). `done` runs exactly
  // once, after the commit (or with its error, or CANCELLED at shutdown).
  // INVALID_ARGUMENT results: first_sequence 0 or inconsistent sequences.
  // An empty batch is a barrier: its result carries the watermark after
  // everything submitted before it.
  // `rejected` (empty, or one flag per outcome) marks outcomes the session
  // refused (not the agent's streams): they advance the watermark like any
  // outcome but are not stored, only counted (outcomes_rejected_total).
  virtual void SubmitOutcomes(const std::string& agent_id,
                              const std::string& region, v1::OutcomeBatch batch,
                              DoneCallback done,
                              std::vector<bool> rejected = {}) = 0;
  // Queues platform samples (upserted; counters add the change).
  virtual void SubmitPlatform(const std::string& agent_id,
                              const std::string& region,
                              v1::PlatformMetricBatch batch,
                              DoneCallback done) = 0;
  // Records an agent's cumulative drop count (from a heartbeat); persisted
  // with the next commit.
  virtual void ReportDropped(const std::string& agent_id,
                             const std::string& region,
                             uint64_t dropped_total) = 0;

  // Flow control. Returns true when ingest has room for more submissions.
  // Otherwise (saturated: see max_queued_outcomes) returns false and keeps
  // `resume`, which it calls exactly once, without locks held, when there is
  // room again (on the writer thread or on the thread of an observer letting
  // go of a batch) or at Shutdown. Submissions made
  // while saturated are still accepted: the caller is expected to stop
  // producing them (to stop reading its stream) until `resume` runs.
  virtual bool AwaitCapacity(std::function<void()> resume) = 0;

  // Committed watermark of an agent (0 if unknown).
  virtual uint64_t AppliedSequence(const std::string& agent_id) = 0;

  // `observer` must outlive the Ingest (or until it is shut down).
  virtual void AddObserver(IngestObserver* observer) = 0;

  // Blocks until everything submitted before the call is committed.
  virtual void Flush() = 0;
  // Commits what is queued, then stops the writer; later submissions fail
  // with CANCELLED. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_INGEST_INGEST_H_
