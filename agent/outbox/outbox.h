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
// Bound: when the stored outcomes exceed `max_bytes`, the oldest are deleted
// and counted (dropped_total, cumulative and persistent). A dropped outcome
// is normally one the controller never received; one that was in flight at
// the time may still be committed by the controller.
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
  // Debug/testing: when set, every appended outcome's "<sequence> <probe_id>
  // <class>" line is appended to this file just before the outcome commits.
  std::string journal_path;
};

struct OutboxStats {
  uint64_t depth = 0;           // Outcomes stored (not acknowledged).
  uint64_t bytes = 0;           // Their serialized size.
  uint64_t last_sequence = 0;   // Highest sequence assigned.
  uint64_t acked_sequence = 0;  // Highest sequence acknowledged.
  uint64_t dropped_total = 0;   // Dropped by the bound, ever.
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
  // outcome is then not stored and the sequence not consumed).
  virtual absl::StatusOr<uint64_t> Append(v1::Outcome outcome) = 0;

  // Stored outcomes with sequence > `after`, in order, at most `max_count`
  // and about `max_bytes` (at least one if any).
  virtual absl::StatusOr<std::vector<v1::Outcome>> ReadAfter(
      uint64_t after, size_t max_count, size_t max_bytes) = 0;

  // Everything <= `sequence` is acknowledged: deleted and remembered.
  // Acks never go backwards (a lower value is ignored).
  virtual absl::Status Ack(uint64_t sequence) = 0;

  virtual OutboxStats stats() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_OUTBOX_OUTBOX_H_
