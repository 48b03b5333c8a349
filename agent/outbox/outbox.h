// The agent's durable outbox: every outcome gets the next per-agent sequence
// number and is committed to disk before it is sent; it is deleted only when
// the controller acknowledges it.
//
// Storage: a SQLite file in WAL mode with synchronous=NORMAL. Each Append is
// one transaction, committed before Append returns, so an outcome survives a
// crash of the agent process (kill -9); on power loss the last few
// transactions (not yet checkpointed past the WAL's fsync) may be lost, but
// the file stays consistent and the sequence counter never goes back below
// what the controller acknowledged. The sequence counter, the acknowledged
// watermark and the drop count are stored in the same file and survive
// restarts.
//
// Lost outcomes: an outcome that cannot be stored at all (a full disk, an
// I/O error) is counted in <path>.lost, a counter file allocated at open and
// rewritten in place so it survives restarts and works on a full disk; it
// is part of dropped_total, which heartbeats report to the controller.
// <path>.reserve holds a little space (64 KiB to 1 MiB) while the disk has
// room; when an acknowledgement cannot be written for lack of space it is
// given back, so deleting acknowledged outcomes - the write that frees space
// - still works on a full disk and the outbox recovers once the controller
// acknowledges again.
//
// Bound: when the stored outcomes plus the WAL exceed `max_bytes`, the oldest
// outcomes that were never sent are deleted and counted (dropped_total,
// cumulative and persistent). Outcomes that may have reached the controller
// (sent, not yet acknowledged: up to MarkSent()) are never dropped, so every
// drop is an outcome the controller never sees and shows there as a sequence
// gap; the bound can thus be exceeded by the session's in-flight window. After
// a restart everything stored counts as possibly sent until the session's first
// Welcome calls ResetSent().
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_AGENT_OUTBOX_OUTBOX_H_
#define FLEETCANARY_AGENT_OUTBOX_OUTBOX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace agent {

struct OutboxOptions {
  // SQLite file; created if missing.
  std::string path;
  // Most bytes of stored (serialized) outcomes; 0 = 256 MiB.
  uint64_t max_bytes = 0;
  // Debug/testing: when set, every appended outcome's line "<sequence>
  // <probe_id> <class> <mode> <requested_bytes>", and a line "dropped
  // <sequence>" for each outcome the bound drops, are appended to this file
  // just before the append commits (so after a crash the journal may hold
  // one line whose sequence is later reused: the last line of a sequence
  // is the one that counts).
  std::string journal_path;
};

struct OutboxStats {
  uint64_t depth = 0;           // Outcomes stored (not acknowledged).
  uint64_t bytes = 0;           // Their serialized size.
  uint64_t last_sequence = 0;   // Highest sequence assigned.
  uint64_t acked_sequence = 0;  // Highest sequence acknowledged.
  // Highest sequence still stored (acked_sequence when none is): what a
  // flush must see acknowledged. Below last_sequence when the bound dropped
  // the newest outcomes (those never sent: see "Bound").
  uint64_t last_stored_sequence = 0;
  // Dropped by the bound, ever, plus lost_total: every outcome the agent
  // could not keep (what heartbeats report to the controller).
  uint64_t dropped_total = 0;
  uint64_t lost_total = 0;      // Could not be stored at all (disk errors).
  uint64_t appended_total = 0;  // Appended by this process.
};

class Outbox {
 public:
  virtual ~Outbox() = default;

  // Opens (creating or migrating) the outbox.
  static absl::StatusOr<std::unique_ptr<Outbox>> Create(
      const OutboxOptions& options);

  // Assigns the next sequence to `outcome`, commits it, and applies the
  // bound. Returns the sequence. UNAVAILABLE/INTERNAL on disk errors (the
  // outcome is then not stored and the sequence not consumed; it is counted
  // as lost).
  virtual absl::StatusOr<uint64_t> Append(v1::Outcome outcome) = 0;

  // Records that the probe `probe` (an outcome skeleton: probe_id, stream,
  // start time) has started. Its outcome's Append clears the record; a
  // record left by a crash becomes an AGENT_ERROR outcome ("interrupted")
  // when the outbox is next opened, so no probe vanishes without a trace.
  // On a disk error (UNAVAILABLE/INTERNAL) the probe must not be run (a
  // crash during it would leave neither an outcome nor a count): the caller
  // ends it at once with an AGENT_ERROR outcome (NotRunOutcome), which
  // Append stores or counts as lost.
  virtual absl::Status MarkStarted(const v1::Outcome& probe) = 0;

  // Stored outcomes with sequence > `after`, in order, at most `max_count`
  // and about `max_bytes` (at least one if any).
  virtual absl::StatusOr<std::vector<v1::Outcome>> ReadAfter(
      uint64_t after, size_t max_count, size_t max_bytes) = 0;

  // ReadAfter, and atomically MarkSent() the last outcome returned: the
  // bound can never drop an outcome between being read and being sent.
  virtual absl::StatusOr<std::vector<v1::Outcome>> ReadForSend(
      uint64_t after, size_t max_count, size_t max_bytes) = 0;

  // Everything <= `sequence` is acknowledged: deleted and remembered.
  // Acks never go backwards (a lower value is ignored).
  virtual absl::Status Ack(uint64_t sequence) = 0;

  // Outcomes up to `sequence` may have reached the controller: the bound
  // never drops them. Only raises the mark.
  virtual void MarkSent(uint64_t sequence) = 0;
  // The controller has committed exactly up to `sequence` (Welcome): later
  // outcomes did not reach it and may be dropped again.
  virtual void ResetSent(uint64_t sequence) = 0;

  virtual OutboxStats stats() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_OUTBOX_OUTBOX_H_
