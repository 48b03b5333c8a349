#include "controller/session/agent_session_service.h"

#include <deque>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace controller {
namespace {

class ConnectReactor
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>,
      public SessionSink {
 public:
  explicit ConnectReactor(SessionHub* hub) {
    session_ = hub->Open(this);
    if (session_ == nullptr) {
      grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>::Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "controller is draining"));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      reading_ = true;
    }
    StartRead(&in_);
  }

  // SessionSink. Every Start*/Finish call is made without holding mu_.
  void Send(v1::ControllerMessage message) override {
    const v1::ControllerMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_) return;
      out_.push_back(std::move(message));
      if (!writing_) {
        writing_ = true;
        next = &out_.front();
      }
    }
    if (next) StartWrite(next);
  }

  void Finish(const absl::Status& status) override {
    RequestFinish(ToGrpcStatus(status));
  }

  void ResumeReads() override {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_ || reading_ || read_closed_) return;
      reading_ = true;
    }
    StartRead(&in_);
  }

  // Reactions.
  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent half-closed or the stream broke: finish once writes drain.
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        read_closed_ = true;
      }
      RequestFinish(grpc::Status::OK);
      return;
    }
    const bool more = session_->OnMessage(in_);
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (more && !finish_requested_) reading_ = start = true;
    }
    if (start) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    const v1::ControllerMessage* next = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      out_.pop_front();
      if (!ok) {
        // The stream is broken; nothing more can be written.
        out_.clear();
        if (!finish_requested_) {
          finish_requested_ = true;
          finish_status_ =
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed");
        }
      }
      if (!out_.empty()) {
        next = &out_.front();
      } else {
        writing_ = false;
        finish = TakeFinishLocked(&status);
      }
    }
    if (next) StartWrite(next);
    if (finish) FinishNow(status);
  }

  void OnDone() override {
    if (session_ != nullptr) session_->OnClosed();
    delete this;
  }

 private:
  void RequestFinish(grpc::Status status) {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      if (!finish_requested_) {
        finish_requested_ = true;
        finish_status_ = std::move(status);
      }
      finish = TakeFinishLocked(&status);
    }
    if (finish) FinishNow(status);
  }

  // Whether the caller must call Finish now (exactly once, writes drained).
  bool TakeFinishLocked(grpc::Status* status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_requested_ || writing_ || finished_) return false;
    finished_ = true;
    *status = finish_status_;
    return true;
  }

  void FinishNow(const grpc::Status& status) {
    grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>::Finish(
        status);
  }

  std::shared_ptr<Session> session_;
  // Written only by gRPC between StartRead and OnReadDone.
  v1::AgentMessage in_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<v1::ControllerMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>*
AgentSessionService::Connect(grpc::CallbackServerContext* /*context*/) {
  return new ConnectReactor(hub_);
}

}  // namespace controller
}  // namespace fleetcanary
