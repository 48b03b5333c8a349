#include "controller/session/agent_session_service.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <regex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc/security.h"
#include "common/grpc/write_queue.h"
#include "common/log/log.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace controller {
namespace {

// The connection's verified peer, if any.
struct PeerIdentity {
  bool authenticated = false;
  // UNAUTHENTICATED when a certificate was required but none (or no agent
  // SAN) was presented.
  absl::StatusOr<AgentIdentity> identity = absl::UnauthenticatedError("");
};

PeerIdentity IdentityOf(grpc::CallbackServerContext* context) {
  PeerIdentity p;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  p.authenticated = auth != nullptr && auth->IsPeerAuthenticated();
  if (p.authenticated) {
    p.identity = AgentIdentityFromAuthContext(*auth);
  } else {
    p.identity = absl::UnauthenticatedError(
        "agent session requires a client certificate");
  }
  return p;
}

// Whether `claimed` matches `pattern` as a whole, with "{cert}" replaced by
// the (regex-escaped) certificate name.
bool MatchesAgentPattern(const std::string& pattern, const std::string& cert,
                         const std::string& claimed) {
  std::string escaped;
  for (char c : cert) {
    if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) escaped += '\\';
    escaped += c;
  }
  const std::string expanded =
      absl::StrReplaceAll(pattern, {{"{cert}", escaped}});
  try {
    return std::regex_match(claimed, std::regex(expanded));
  } catch (const std::regex_error& e) {
    LogError("agent_id_pattern_invalid", {{"error", e.what()}});
    return false;
  }
}

// OK when `hello` may open a session on this connection (see
// AgentSessionAuth).
absl::Status CheckHello(const AgentSessionAuth& auth, const PeerIdentity& peer,
                        const v1::Hello& hello) {
  if (peer.authenticated || auth.require_certificate) {
    if (!peer.identity.ok()) return peer.identity.status();
    const AgentIdentity& id = *peer.identity;
    // The whole certificate name, or the configured pattern (never a mere
    // prefix: "a" must not speak for "a-b").
    std::string claimed = hello.agent_id();
    if (claimed != id.agent_id && !auth.agent_id_pattern.empty() &&
        MatchesAgentPattern(auth.agent_id_pattern, id.agent_id, claimed)) {
      claimed = id.agent_id;
    }
    return CheckAgentClaim(id, claimed, hello.region(), auth.allowed_regions);
  }
  if (!auth.allowed_regions.empty() &&
      std::find(auth.allowed_regions.begin(), auth.allowed_regions.end(),
                hello.region()) == auth.allowed_regions.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "region \"", hello.region(), "\" is not allowed on this controller"));
  }
  return absl::OkStatus();
}

class ConnectReactor
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>,
      public SessionSink {
 public:
  ConnectReactor(SessionHub* hub, const AgentSessionAuth* auth,
                 PeerIdentity peer)
      : auth_(auth), peer_(std::move(peer)) {
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
    WriteQueue<v1::ControllerMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = out_.Push(std::move(message));
    }
    Take(step);
  }

  void Finish(const absl::Status& status) override {
    RequestFinish(ToGrpcStatus(status));
  }

  void ResumeReads() override {
    {
      absl::MutexLock lock(&mu_);
      if (out_.finish_requested() || read_closed_) return;
      // Called while OnMessage still runs (a commit finished at once): the
      // read starts when it returns, whatever it returns.
      if (in_message_) {
        resume_pending_ = true;
        return;
      }
      if (reading_) return;
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
    if (!hello_checked_ && in_.msg_case() == v1::AgentMessage::kHello) {
      hello_checked_ = true;
      absl::Status allowed = CheckHello(*auth_, peer_, in_.hello());
      if (!allowed.ok()) {
        LogWarning("agent_session_refused",
                   {{"agent_id", in_.hello().agent_id()},
                    {"region", in_.hello().region()},
                    {"error", allowed.ToString()}});
        if (auth_->on_refused) auth_->on_refused(allowed);
        {
          absl::MutexLock lock(&mu_);
          reading_ = false;
        }
        RequestFinish(ToGrpcStatus(allowed));
        return;
      }
    }
    {
      absl::MutexLock lock(&mu_);
      in_message_ = true;
    }
    const bool more = session_->OnMessage(in_);
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      in_message_ = false;
      reading_ = false;
      if ((more || resume_pending_) && !out_.finish_requested()) {
        reading_ = start = true;
      }
      resume_pending_ = false;
    }
    if (start) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    WriteQueue<v1::ControllerMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      // When !ok the stream is broken; nothing more can be written.
      step = out_.WriteDone(ok);
    }
    Take(step);
  }

  void OnDone() override {
    if (session_ != nullptr) session_->OnClosed();
    delete this;
  }

 private:
  void RequestFinish(grpc::Status status) {
    WriteQueue<v1::ControllerMessage>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = out_.RequestFinish(std::move(status));
    }
    Take(step);
  }

  // Makes the calls `step` names (Finish exactly once, writes drained).
  void Take(const WriteQueue<v1::ControllerMessage>::Step& step) {
    if (step.write) StartWrite(step.write);
    if (step.finish) {
      grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>::Finish(
          step.status);
    }
  }

  const AgentSessionAuth* const auth_;
  const PeerIdentity peer_;
  // Read only on the reaction thread of OnReadDone (one read at a time).
  bool hello_checked_ = false;
  std::shared_ptr<Session> session_;
  // Written only by gRPC between StartRead and OnReadDone.
  v1::AgentMessage in_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  WriteQueue<v1::ControllerMessage> out_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  // Session::OnMessage is running; a ResumeReads meanwhile is remembered.
  bool in_message_ ABSL_GUARDED_BY(mu_) = false;
  bool resume_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>*
AgentSessionService::Connect(grpc::CallbackServerContext* context) {
  return new ConnectReactor(hub_, &auth_, IdentityOf(context));
}

}  // namespace controller
}  // namespace fleetcanary
