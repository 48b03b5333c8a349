// Starting operations on a gRPC client callback stream from threads other
// than its reactions.
//
// gRPC frees a client stream's state as soon as its last operation completes
// and calls OnDone; a StartWrite made from another thread after that touches
// freed memory. That can happen in the window between checking that the
// stream is alive and calling StartWrite, e.g. when the channel cannot
// connect and the call fails at once, or the server refuses the stream.
// gRPC's rule: take a hold (AddHold) before StartCall and remove it only once
// no operation will be started from outside the reactions any more.
//
// OutsideOpsHold is that bookkeeping for a reactor whose application threads
// write until the stream ends. The stream has ended when its read comes back
// not ok (a reactor that always keeps one read pending sees that exactly
// once, whatever ended the call: the server's status, a failed connection,
// a cancel). From then on Begin() refuses, and the hold is released by
// whoever is last: the end itself, or the operation that was being started
// when it came.
//
// Use (the reactor keeps one read pending from StartCall on):
//   void Start() {
//     AddHold();              // Before StartCall.
//     StartRead(&in_);
//     StartCall();
//   }
//   void Send(Msg m) {        // Any thread.
//     if (!hold_.Begin()) return;  // The stream ended: nothing to write to.
//     ... StartWrite(...) ...
//     if (hold_.End()) RemoveHold();
//   }
//   void OnReadDone(bool ok) override {
//     if (!ok) {
//       if (hold_.Ended()) RemoveHold();
//       return;
//     }
//     ...
//   }
//
// Thread-safety: thread-safe. No method calls into gRPC: the caller calls
// RemoveHold (never while holding a lock of its own that a reaction takes,
// since gRPC may run OnDone inline).
#ifndef FLEETCANARY_COMMON_GRPC_OUTSIDE_OPS_HOLD_H_
#define FLEETCANARY_COMMON_GRPC_OUTSIDE_OPS_HOLD_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace fleetcanary {

class OutsideOpsHold {
 public:
  // Whether an operation may be started now; if true, call End() once it
  // was started.
  bool Begin() {
    absl::MutexLock lock(&mu_);
    if (ended_) return false;
    ++active_;
    return true;
  }

  // The operation Begin() allowed was started. Returns whether the caller
  // must now remove the hold (the stream ended meanwhile).
  bool End() {
    absl::MutexLock lock(&mu_);
    --active_;
    return ReleaseLocked();
  }

  // The stream's read came back not ok. Returns whether the caller must now
  // remove the hold (no operation is being started).
  bool Ended() {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    return ReleaseLocked();
  }

 private:
  bool ReleaseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ended_ || active_ > 0 || released_) return false;
    released_ = true;
    return true;
  }

  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_GRPC_OUTSIDE_OPS_HOLD_H_
