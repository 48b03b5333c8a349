// The write side of a gRPC callback reactor. A reactor may have one write in
// flight at a time: messages wait in order behind it, and finishing the call
// waits until they have been written. WriteQueue keeps that bookkeeping and
// tells the reactor which StartWrite / Finish call to make next.
//
// Thread-safety: thread-compatible. The reactor guards its WriteQueue with
// its own mutex (ABSL_GUARDED_BY) and makes the calls a returned Step names
// after releasing that mutex, never while holding it (gRPC may run the next
// reaction inline). A message pointer in a Step stays valid until the
// WriteDone() that follows its write.
//
// Example (a server write reactor):
//   void Send(Msg m) {
//     WriteQueue<Msg>::Step step;
//     {
//       absl::MutexLock lock(&mu_);
//       step = queue_.Push(std::move(m));
//     }
//     if (step.write) StartWrite(step.write);
//   }
//   void OnWriteDone(bool ok) override {
//     WriteQueue<Msg>::Step step;
//     {
//       absl::MutexLock lock(&mu_);
//       step = queue_.WriteDone(ok);
//     }
//     if (step.write) StartWrite(step.write);
//     if (step.finish) Finish(step.status);
//   }
#ifndef FLEETCANARY_COMMON_GRPC_WRITE_QUEUE_H_
#define FLEETCANARY_COMMON_GRPC_WRITE_QUEUE_H_

#include <grpcpp/support/status.h>

#include <cstddef>
#include <deque>
#include <utility>

namespace fleetcanary {

template <typename T>
class WriteQueue {
 public:
  // What the reactor must do once it has released its mutex.
  struct Step {
    // StartWrite(write), when set.
    const T* write = nullptr;
    // Finish(status), when set. Set at most once per queue.
    bool finish = false;
    grpc::Status status;
  };

  // What a failed write (OnWriteDone(false)) does besides stopping writes.
  enum class OnBroken {
    // Requests finish with UNAVAILABLE "write failed" (unless requested
    // before).
    kFinish,
    // Nothing more: the reactor requests finish when it is ready (or never,
    // on a client reactor, whose call ends by itself).
    kWait,
  };

  explicit WriteQueue(OnBroken on_broken = OnBroken::kFinish)
      : on_broken_(on_broken) {}

  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // Whether Push() takes messages: no write has failed and no finish was
  // requested.
  bool accepting() const { return !broken_ && !finish_requested_; }

  // Queues `message` behind the write in flight; when none is in flight, the
  // Step says to write it now. Drops it (empty Step) when !accepting().
  Step Push(T message) {
    Step step;
    if (!accepting()) return step;
    queue_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      step.write = &queue_.front();
    }
    return step;
  }

  // Records the end of the write in flight, as OnWriteDone(ok) reports it.
  // Returns the next message to write or, when none is left and finish was
  // requested, the Finish to make. When !ok the stream is broken: every
  // queued message is dropped (see OnBroken for what else happens).
  // REQUIRES: a write is in flight.
  Step WriteDone(bool ok) {
    Step step;
    queue_.pop_front();
    if (!ok) {
      broken_ = true;
      queue_.clear();
      if (on_broken_ == OnBroken::kFinish && !finish_requested_) {
        finish_requested_ = true;
        finish_status_ =
            grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed");
      }
    }
    if (!queue_.empty()) {
      step.write = &queue_.front();
    } else {
      writing_ = false;
      TakeFinish(&step);
    }
    return step;
  }

  // Requests finishing with `status`; the first request's status wins.
  // Returns the Finish to make now when no write is in flight (otherwise
  // the WriteDone() that drains the queue returns it).
  Step RequestFinish(grpc::Status status) {
    Step step;
    if (!finish_requested_) {
      finish_requested_ = true;
      finish_status_ = std::move(status);
    }
    TakeFinish(&step);
    return step;
  }

  bool finish_requested() const { return finish_requested_; }
  // Whether a write has failed.
  bool broken() const { return broken_; }
  // Messages queued, the one being written included.
  size_t size() const { return queue_.size(); }
  // The message being written. REQUIRES: a write is in flight.
  const T& in_flight() const { return queue_.front(); }

 private:
  void TakeFinish(Step* step) {
    if (!finish_requested_ || writing_ || finished_) return;
    finished_ = true;
    step->finish = true;
    step->status = finish_status_;
  }

  const OnBroken on_broken_;
  std::deque<T> queue_;  // queue_.front() is being written while writing_.
  bool writing_ = false;
  bool broken_ = false;
  bool finish_requested_ = false;
  bool finished_ = false;
  grpc::Status finish_status_;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_GRPC_WRITE_QUEUE_H_
