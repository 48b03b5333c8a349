// Carries out one ResponsePlan at a time, step by step, without doing I/O:
// each step queues (into a WriteQueue) the bytes that may go out before the
// next pause or fault: the head, then body bytes framed (Content-Length or
// chunked), with the corrupted byte flipped, payload bodies taken from the
// shared block cache or generated; and says what the connection does after
// writing them (pump again after a pause, finish, close, reset, stall).
// Pacing (chunk gaps, slow body, bandwidth shaping), the first-byte delay,
// cuts and stalls are decided here; the connection only waits and writes.
//
// Thread-compatible: owned by one connection and used on its strand.
#ifndef FLEETCANARY_EMULATOR_SERVER_RESPONSE_STREAM_H_
#define FLEETCANARY_EMULATOR_SERVER_RESPONSE_STREAM_H_

#include <cstdint>

#include "absl/time/time.h"
#include "emulator/server/http_server.h"
#include "emulator/server/payload_cache.h"
#include "emulator/server/write_queue.h"

namespace fleetcanary {
namespace emulator {

class ResponseStream {
 public:
  // What the connection does once a step's bytes are written.
  enum class Next {
    kPump,    // Wait `pause`, then take the next step.
    kFinish,  // The response is complete.
    kClose,   // Cut: close the connection cleanly.
    kReset,   // Cut: reset the connection (RST).
    kStall,   // Stall point reached: MarkStalled(), wait, then step again.
  };
  struct Step {
    Next next = Next::kPump;
    absl::Duration pause = absl::ZeroDuration();
  };

  // `cache` (may be null: every payload byte is generated) must outlive
  // this object.
  explicit ResponseStream(PayloadBlockCache* cache) : cache_(cache) {}

  // Ends every active plan with on_done(finished=false).
  ~ResponseStream() { Finish(false); }

  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  // Starts a new response and returns its plan, reset to defaults, for the
  // handler to fill in before the first Step(). A plan still active is
  // replaced without its on_done being called.
  ResponsePlan* Begin();

  // Skips the plan's first_byte_delay (error responses go out at once).
  void SkipFirstByteDelay() { delayed_ = true; }

  // Queues into `out` what may be written next and says what follows. A step
  // may queue nothing (a delay before the first byte, a shaping boundary).
  // REQUIRES: Begin() was called and no kFinish, kClose or kReset step yet.
  Step NextStep(WriteQueue* out);

  // The stall point was reached and waited out: later steps go past it.
  void MarkStalled() { stalled_ = true; }

  // Calls the plan's on_done once with the body bytes queued so far and
  // `finished`; no-op when no plan is active.
  void Finish(bool finished);

  const ResponsePlan& plan() const { return plan_; }

 private:
  // How far the next step may go: body end offset, and the pause after it
  // that chunk gaps ask for.
  struct Window {
    uint64_t end = 0;
    absl::Duration pause = absl::ZeroDuration();
  };
  Window NextWindow() const;
  // The pause that slow-body and shaping rates ask for after `sent` bytes
  // ending at body offset `end`, at least `pause`.
  absl::Duration PacingPause(uint64_t sent, uint64_t end,
                             absl::Duration pause) const;
  // What follows the bytes queued so far; queues the last chunk when the
  // message ends cleanly.
  Next FollowUp(WriteQueue* out);

  void AppendHead(WriteQueue* out) const;
  // Body bytes [from, to), framed, with the corruption applied.
  void AppendBody(uint64_t from, uint64_t to, WriteQueue* out);
  // Body bytes [from, to) as they are. Payload blocks mostly inside the
  // body come from the cache by reference; the rest is generated.
  void AppendBodyBytes(uint64_t from, uint64_t to, WriteQueue* out);

  PayloadBlockCache* const cache_;
  ResponsePlan plan_;
  bool active_ = false;
  uint64_t offset_ = 0;  // Body bytes queued so far.
  bool head_sent_ = false;
  bool delayed_ = false;
  bool stalled_ = false;
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SERVER_RESPONSE_STREAM_H_
