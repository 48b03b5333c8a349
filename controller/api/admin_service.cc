#include "controller/api/admin_service.h"

#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc/write_queue.h"
#include "common/log/log.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace controller {
namespace {

std::string AuthorizationOf(grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

absl::Status Authorize(const AdminAuthorizer* auth,
                       grpc::CallbackServerContext* ctx, const char* method,
                       const google::protobuf::MessageLite& request,
                       size_t max_request_bytes) {
  // The listener's own limit may be larger (agent batches share it).
  if (request.ByteSizeLong() > max_request_bytes) {
    LogWarning("admin_request_too_large",
               {{"method", method},
                {"bytes", absl::StrCat(request.ByteSizeLong())},
                {"limit", absl::StrCat(max_request_bytes)},
                {"peer", ctx->peer()}});
    return absl::ResourceExhaustedError(
        absl::StrCat(method, " request of ", request.ByteSizeLong(),
                     " bytes is over the admin API's limit of ",
                     max_request_bytes, " bytes"));
  }
  if (auth == nullptr) {
    return absl::UnauthenticatedError(
        "the admin API is closed: start fleetcanary-controller with "
        "--admin_tokens=FILE (or --insecure on a trusted machine)");
  }
  absl::StatusOr<AdminPrincipal> p =
      auth->Authorize(AuthorizationOf(ctx), method);
  if (!p.ok()) return p.status();
  if (AdminAuthorizer::RequiredRole(method) == v1::OPERATOR) {
    LogInfo(
        "admin_call",
        {{"method", method}, {"principal", p->name}, {"peer", ctx->peer()}});
  }
  return absl::OkStatus();
}

// RunProbe: one stream of events, written one at a time.
class RunProbeReactor : public grpc::ServerWriteReactor<v1::RunProbeEvent> {
 public:
  RunProbeReactor(size_t max_queued) : sink_(this), max_queued_(max_queued) {}

  void Start(AdminCore* core, const AdminAuthorizer* auth,
             grpc::CallbackServerContext* ctx,
             const v1::RunProbeRequest* request, size_t max_request_bytes) {
    absl::Status s =
        Authorize(auth, ctx, "RunProbe", *request, max_request_bytes);
    if (!s.ok()) {
      Done(s);
      return;
    }
    absl::StatusOr<std::shared_ptr<ProbeRun>> run =
        core->RunProbe(*request, &sink_);
    if (!run.ok()) {
      Done(run.status());
      return;
    }
    bool cancel;
    {
      absl::MutexLock lock(&mu_);
      run_ = *run;
      cancel = cancelled_;
    }
    if (cancel) (*run)->Cancel();
  }

  void OnWriteDone(bool ok) override {
    WriteQueue<v1::RunProbeEvent>::Step step;
    std::shared_ptr<ProbeRun> cancel;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.in_flight().has_outcome()) --queued_outcomes_;
      step = queue_.WriteDone(ok);
      if (!ok) {
        // The client is gone: stop the agents, finish once the run ended.
        queued_outcomes_ = 0;
        cancel = run_;
      }
    }
    if (cancel) cancel->Cancel();
    Take(step);
  }

  void OnCancel() override {
    std::shared_ptr<ProbeRun> run;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      run = run_;
    }
    if (run) run->Cancel();
  }

  void OnDone() override { delete this; }

 private:
  class Sink : public ProbeEventSink {
   public:
    explicit Sink(RunProbeReactor* r) : r_(r) {}
    bool OnEvent(v1::RunProbeEvent event) override {
      return r_->Enqueue(std::move(event));
    }
    void OnDone(const absl::Status& status) override { r_->Done(status); }

   private:
    RunProbeReactor* const r_;
  };

  bool Enqueue(v1::RunProbeEvent event) {
    WriteQueue<v1::RunProbeEvent>::Step step;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.accepting()) return !event.has_outcome();
      if (event.has_outcome()) {
        if (queued_outcomes_ >= max_queued_) return false;
        ++queued_outcomes_;
      }
      step = queue_.Push(std::move(event));
    }
    Take(step);
    return true;
  }

  // The run ended (the sink's last call): finish once the queue drained.
  void Done(const absl::Status& status) {
    WriteQueue<v1::RunProbeEvent>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = queue_.RequestFinish(ToGrpcStatus(status));
    }
    Take(step);
  }

  // Makes the calls `step` names; never under mu_.
  void Take(const WriteQueue<v1::RunProbeEvent>::Step& step) {
    if (step.write) StartWrite(step.write);
    if (step.finish) Finish(step.status);
  }

  Sink sink_;
  const size_t max_queued_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  std::shared_ptr<ProbeRun> run_ ABSL_GUARDED_BY(mu_);
  // A failed write only stops the writes: the call finishes when the run
  // ends (Done).
  WriteQueue<v1::RunProbeEvent> queue_ ABSL_GUARDED_BY(mu_){
      WriteQueue<v1::RunProbeEvent>::OnBroken::kWait};
  size_t queued_outcomes_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// WatchVerdicts: current verdicts, then transitions, until the client leaves.
class WatchReactor : public grpc::ServerWriteReactor<v1::Verdict> {
 public:
  explicit WatchReactor(size_t max_queued) : max_queued_(max_queued) {}

  void Start(AdminCore* core, const AdminAuthorizer* auth,
             grpc::CallbackServerContext* ctx,
             const v1::WatchVerdictsRequest* request,
             size_t max_request_bytes) {
    absl::Status s =
        Authorize(auth, ctx, "WatchVerdicts", *request, max_request_bytes);
    if (!s.ok()) {
      RequestFinish(ToGrpcStatus(s));
      return;
    }
    auto sub = core->WatchVerdicts(
        *request, [this](const v1::Verdict& v) { Enqueue(v); });
    if (!sub.ok()) {
      RequestFinish(ToGrpcStatus(sub.status()));
      return;
    }
    absl::MutexLock lock(&sub_mu_);
    subscription_ = std::move(*sub);
  }

  void OnWriteDone(bool ok) override {
    WriteQueue<v1::Verdict>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = queue_.WriteDone(ok);
    }
    Take(step);
  }

  void OnCancel() override {
    RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    std::unique_ptr<VerdictSource::Subscription> sub;
    {
      absl::MutexLock lock(&sub_mu_);
      sub = std::move(subscription_);
    }
    sub.reset();  // No callback runs after this.
    delete this;
  }

 private:
  void Enqueue(const v1::Verdict& v) {
    WriteQueue<v1::Verdict>::Step step;
    bool overflow = false;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.accepting()) return;
      if (queue_.size() >= max_queued_) {
        overflow = true;
      } else {
        step = queue_.Push(v);
      }
    }
    if (overflow) {
      RequestFinish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "client reads verdicts too slowly"));
      return;
    }
    Take(step);
  }

  void RequestFinish(grpc::Status status) {
    WriteQueue<v1::Verdict>::Step step;
    {
      absl::MutexLock lock(&mu_);
      step = queue_.RequestFinish(std::move(status));
    }
    Take(step);
  }

  // Makes the calls `step` names; never under mu_.
  void Take(const WriteQueue<v1::Verdict>::Step& step) {
    if (step.write) StartWrite(step.write);
    if (step.finish) Finish(step.status);
  }

  const size_t max_queued_;
  absl::Mutex sub_mu_;
  std::unique_ptr<VerdictSource::Subscription> subscription_
      ABSL_GUARDED_BY(sub_mu_);
  absl::Mutex mu_;
  WriteQueue<v1::Verdict> queue_ ABSL_GUARDED_BY(mu_);
};

class AdminServiceImpl : public AdminService {
 public:
  AdminServiceImpl(const AdminServiceOptions& options, AdminCore* core,
                   const AdminAuthorizer* auth)
      : options_(options), core_(core), auth_(auth) {}
  ~AdminServiceImpl() override { Shutdown(); }

  void Shutdown() override {
    absl::MutexLock lock(&analyze_->mu);
    analyze_->mu.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &analyze_->running));
  }

  grpc::ServerWriteReactor<v1::RunProbeEvent>* RunProbe(
      grpc::CallbackServerContext* ctx,
      const v1::RunProbeRequest* request) override {
    auto* reactor = new RunProbeReactor(options_.max_queued_messages);
    reactor->Start(core_, auth_, ctx, request, options_.max_request_bytes);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::Verdict>* WatchVerdicts(
      grpc::CallbackServerContext* ctx,
      const v1::WatchVerdictsRequest* request) override {
    auto* reactor = new WatchReactor(options_.max_queued_messages);
    reactor->Start(core_, auth_, ctx, request, options_.max_request_bytes);
    return reactor;
  }

  grpc::ServerUnaryReactor* ApplySchedules(
      grpc::CallbackServerContext* ctx, const v1::ApplySchedulesRequest* req,
      v1::ApplySchedulesResponse* resp) override {
    return Unary(ctx, "ApplySchedules", *req,
                 [&] { return Fill(core_->ApplySchedules(*req), resp); });
  }
  grpc::ServerUnaryReactor* ListSchedules(
      grpc::CallbackServerContext* ctx, const v1::ListSchedulesRequest* req,
      v1::ListSchedulesResponse* resp) override {
    return Unary(ctx, "ListSchedules", *req,
                 [&] { return Fill(core_->ListSchedules(*req), resp); });
  }
  grpc::ServerUnaryReactor* DeleteSchedule(
      grpc::CallbackServerContext* ctx, const v1::DeleteScheduleRequest* req,
      v1::DeleteScheduleResponse*) override {
    return Unary(ctx, "DeleteSchedule", *req,
                 [&] { return core_->DeleteSchedule(*req); });
  }
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* ctx,
                                       const v1::ListAgentsRequest* req,
                                       v1::ListAgentsResponse* resp) override {
    return Unary(ctx, "ListAgents", *req,
                 [&] { return Fill(core_->ListAgents(*req), resp); });
  }
  grpc::ServerUnaryReactor* GetVerdicts(
      grpc::CallbackServerContext* ctx, const v1::GetVerdictsRequest* req,
      v1::GetVerdictsResponse* resp) override {
    return Unary(ctx, "GetVerdicts", *req,
                 [&] { return Fill(core_->GetVerdicts(*req), resp); });
  }

  grpc::ServerUnaryReactor* Analyze(grpc::CallbackServerContext* ctx,
                                    const v1::AnalyzeRequest* req,
                                    v1::AnalysisReport* resp) override {
    return OffThread(ctx, "Analyze", *req, [core = core_, req, resp] {
      return Fill(core->Analyze(*req), resp);
    });
  }

  // Shares Analyze's limit: a report runs one Analyze and reads more.
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx,
                                   const v1::ReportRequest* req,
                                   v1::IncidentReport* resp) override {
    return OffThread(ctx, "Report", *req, [core = core_, req, resp] {
      return Fill(core->Report(*req), resp);
    });
  }

 private:
  template <typename T>
  static absl::Status Fill(absl::StatusOr<T> r, T* out) {
    if (!r.ok()) return r.status();
    *out = std::move(*r);
    return absl::OkStatus();
  }

  // Authorizes, then runs `work` (store queries that may take a while) on a
  // thread of its own, at most max_concurrent_analyze at once across
  // Analyze and Report (RESOURCE_EXHAUSTED beyond). Shutdown() waits for
  // every worker.
  template <typename F>
  grpc::ServerUnaryReactor* OffThread(grpc::CallbackServerContext* ctx,
                                      const char* method,
                                      const google::protobuf::MessageLite& req,
                                      F work) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::Status s =
        Authorize(auth_, ctx, method, req, options_.max_request_bytes);
    if (!s.ok()) {
      reactor->Finish(ToGrpcStatus(s));
      return reactor;
    }
    {
      absl::MutexLock lock(&analyze_->mu);
      if (analyze_->running >= options_.max_concurrent_analyze) {
        reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     "too many Analyze/Report calls running; "
                                     "retry"));
        return reactor;
      }
      ++analyze_->running;
    }
    std::thread([state = analyze_, reactor, work = std::move(work)] {
      reactor->Finish(ToGrpcStatus(work()));
      absl::MutexLock lock(&state->mu);
      --state->running;
    }).detach();
    return reactor;
  }

  template <typename F>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  const char* method,
                                  const google::protobuf::MessageLite& req,
                                  F&& body) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::Status s =
        Authorize(auth_, ctx, method, req, options_.max_request_bytes);
    if (s.ok()) s = body();
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }

  const AdminServiceOptions options_;
  AdminCore* const core_;
  const AdminAuthorizer* const auth_;
  struct AnalyzeState {
    absl::Mutex mu;
    int running ABSL_GUARDED_BY(mu) = 0;
  };
  // Shared with the workers, which may outlive a call to Shutdown() by the
  // instant it takes them to release the lock.
  const std::shared_ptr<AnalyzeState> analyze_ =
      std::make_shared<AnalyzeState>();
};

}  // namespace

std::unique_ptr<AdminService> CreateAdminService(
    const AdminServiceOptions& options, AdminCore* core,
    const AdminAuthorizer* authorizer) {
  return std::make_unique<AdminServiceImpl>(options, core, authorizer);
}

}  // namespace controller
}  // namespace fleetcanary
