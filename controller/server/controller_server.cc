#include "controller/server/controller_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/metrics/process_metrics.h"
#include "common/status/status_util.h"
#include "controller/api/admin_service.h"
#include "controller/api/verdict_source.h"
#include "controller/metrics/metrics_export.h"
#include "controller/session/agent_session_service.h"
#include "controller/session/session_hub.h"
#include "controller/status/status_data.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::TimeUtil;

absl::Duration FromProto(const google::protobuf::Duration& d,
                         absl::Duration fallback) {
  if (d.seconds() == 0 && d.nanos() == 0) return fallback;
  return absl::Nanoseconds(TimeUtil::DurationToNanoseconds(d));
}

// Live verdict settings from the controller config.
VerdictServiceOptions VerdictOptions(const v1::ControllerConfig& c) {
  VerdictServiceOptions o;
  o.detection = c.detection();
  o.metrics_period = FromProto(c.metrics_period(), absl::Seconds(60));
  o.reconcile_settle = FromProto(c.metrics_settle(), absl::ZeroDuration());
  if (c.has_declared_fix_time()) {
    o.declared_fix_time =
        absl::FromUnixSeconds(c.declared_fix_time().seconds()) +
        absl::Nanoseconds(c.declared_fix_time().nanos());
  }
  return o;
}

std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

class ControllerServerImpl : public ControllerServer {
 public:
  ControllerServerImpl(const ControllerServerOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}

  ~ControllerServerImpl() override {
    Drain(absl::Seconds(2));
    if (pruner_.joinable()) pruner_.join();
  }

  absl::Status Start() {
    v1::ControllerConfig& c = options_.config;
    if (c.grpc_listen().empty()) c.set_grpc_listen("127.0.0.1:0");
    if (c.data_dir().empty()) c.set_data_dir(".");
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir(), ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data_dir: cannot create ", c.data_dir(), ": ", ec.message()));
    }
    const absl::Duration heartbeat =
        FromProto(c.heartbeat_interval(), absl::Seconds(10));
    const absl::Duration liveness =
        FromProto(c.liveness_timeout(), 2 * heartbeat);
    retention_.raw_retention =
        FromProto(c.raw_retention(), absl::Hours(24 * 7));
    retention_.aggregate_retention =
        FromProto(c.aggregate_retention(), absl::Hours(24 * 90));

    FC_ASSIGN_OR_RETURN(
        store_, CreateSqliteStore(
                    {(std::filesystem::path(c.data_dir()) / "controller.db")
                         .string()}));
    metrics_ = std::make_unique<ControllerMetrics>();
    FC_ASSIGN_OR_RETURN(auto totals, store_->LoadStreamTotals());
    FC_ASSIGN_OR_RETURN(auto counters, store_->LoadCounters());
    FC_ASSIGN_OR_RETURN(auto agents, store_->LoadAgents());
    metrics_->Restore(totals, counters, agents);
    FC_ASSIGN_OR_RETURN(ingest_, Ingest::Create(options_.ingest, store_.get(),
                                                metrics_.get(), clock_));
    FC_ASSIGN_OR_RETURN(verdicts_,
                        VerdictService::Create(VerdictOptions(c), store_.get(),
                                               metrics_.get(), clock_));
    ingest_->AddObserver(verdicts_.get());
    SchedulerOptions so;
    so.rotation_period = FromProto(c.metrics_period(), absl::Seconds(60));
    so.heartbeat_interval = heartbeat;
    so.liveness_timeout = liveness;
    FC_ASSIGN_OR_RETURN(scheduler_,
                        Scheduler::Create(so, store_.get(), clock_));
    if (options_.fleet.targets_size() > 0 ||
        options_.fleet.schedules_size() > 0) {
      v1::ApplySchedulesRequest req;
      *req.mutable_targets() = options_.fleet.targets();
      *req.mutable_schedules() = options_.fleet.schedules();
      auto applied = scheduler_->ApplySchedules(req);
      if (!applied.ok()) return Annotate(applied.status(), "fleet");
    }
    Scheduler* scheduler = scheduler_.get();
    metrics_->SetAgentCountsProvider(
        [scheduler] { return scheduler->AgentCounts(); });
    metrics_->SetRegionsWithoutAgentsProvider(
        [scheduler] { return scheduler->RegionsWithoutAgents(); });
    metrics_->SetConfiguredStreamsProvider(
        [scheduler] { return scheduler->Configured(); });

    SessionHubOptions ho;
    ho.heartbeat_interval = heartbeat;
    ho.liveness_timeout = liveness;
    ho.metrics_period = FromProto(c.metrics_period(), absl::Seconds(60));
    FC_ASSIGN_OR_RETURN(hub_, SessionHub::Create(ho, ingest_.get(), scheduler,
                                                 metrics_.get(), clock_));
    AgentSessionAuth auth;
    auth.allowed_regions = options_.allowed_regions;
    auth.require_certificate =
        !options_.tls.insecure && !options_.tls.ca_file.empty();
    ControllerMetrics* metrics = metrics_.get();
    auth.on_refused = [metrics](const absl::Status&) {
      metrics->AddCounter("session_refused_total", 1);
    };
    service_ = std::make_unique<AgentSessionService>(hub_.get(), auth);
    FC_RETURN_IF_ERROR(StartAdmin());

    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    FC_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options_.tls));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(c.grpc_listen(), credentials, &port);
    builder.RegisterService(service_.get());
    builder.RegisterService(admin_service_.get());
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port == 0) {
      return absl::UnavailableError(
          absl::StrCat("grpc_listen: cannot bind ", c.grpc_listen()));
    }
    grpc_address_ = absl::StrCat(HostOf(c.grpc_listen()), ":", port);
    if (!options_.health_listen.empty()) {
      // Health only: a server with no services of ours gets just the default
      // health service.
      grpc::ServerBuilder health_builder;
      int health_port = 0;
      health_builder.AddListeningPort(options_.health_listen,
                                      grpc::InsecureServerCredentials(),
                                      &health_port);
      health_server_ = health_builder.BuildAndStart();
      if (health_server_ == nullptr || health_port == 0) {
        return absl::UnavailableError(absl::StrCat(
            "health_listen: cannot bind ", options_.health_listen));
      }
      health_address_ =
          absl::StrCat(HostOf(options_.health_listen), ":", health_port);
    }
    if (!c.http_listen().empty()) {
      FC_ASSIGN_OR_RETURN(http_, MetricsHttpServer::Create(c.http_listen()));
      http_->Register(metrics_->collectable());
      process_metrics_ = NewProcessMetrics({"fleetcanary-controller"});
      http_->Register(process_metrics_);
      http_->AddPage("/status", [this] { return StatusPage(); });
    }
    pruner_ = std::thread([this] { PruneLoop(); });
    LogInfo("controller_started",
            {{"grpc", grpc_address_},
             {"http", http_address()},
             {"health", health_address_},
             {"tls", options_.tls.insecure          ? "off"
                     : options_.tls.ca_file.empty() ? "tls"
                                                    : "mtls"},
             {"data_dir", c.data_dir()}});
    return absl::OkStatus();
  }

  std::string grpc_address() const override { return grpc_address_; }
  std::string http_address() const override {
    return http_ ? http_->address() : "";
  }
  std::string health_address() const override { return health_address_; }
  Scheduler* scheduler() override { return scheduler_.get(); }
  Ingest* ingest() override { return ingest_.get(); }
  Store* store() override { return store_.get(); }
  ControllerMetrics* metrics() override { return metrics_.get(); }
  VerdictService* verdicts() override { return verdicts_.get(); }
  AdminCore* admin() override { return admin_core_.get(); }

  void Drain(absl::Duration timeout) override {
    {
      absl::MutexLock lock(&mu_);
      if (drain_started_) {
        mu_.Await(absl::Condition(&drained_));
        return;
      }
      drain_started_ = true;
    }
    if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
    if (health_server_) {
      health_server_->GetHealthCheckService()->SetServingStatus(false);
    }
    if (hub_) hub_->Drain("shutdown", timeout);
    if (server_)
      server_->Shutdown(absl::ToChronoTime(Clock::Real()->Now() + timeout));
    if (admin_core_) admin_core_->Shutdown();
    if (admin_service_) admin_service_->Shutdown();
    if (hub_) hub_->Shutdown();
    if (ingest_) ingest_->Shutdown();
    if (verdicts_) verdicts_->Shutdown();
    if (scheduler_) scheduler_->Shutdown();
    if (health_server_)
      health_server_->Shutdown(
          absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(100)));
    LogInfo("controller_drained");
    absl::MutexLock lock(&mu_);
    drained_ = true;
  }

  void Wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&drained_));
  }

 private:
  // The status page: verdicts, charts and agents, rendered on request.
  HttpPage StatusPage() {
    VerdictSource* source = verdicts_ != nullptr
                                ? static_cast<VerdictSource*>(verdicts_.get())
                                : verdict_source_.get();
    absl::StatusOr<StatusPageData> data = CollectStatusPageData(
        store_.get(), source, scheduler_.get(), clock_->Now(), absl::Hours(6));
    if (!data.ok()) {
      return HttpPage{"text/plain; charset=utf-8",
                      std::string(data.status().message()), 500};
    }
    return HttpPage{"text/html; charset=utf-8", RenderStatusPage(*data)};
  }

  // The admin API: live verdicts, Analyze over the store, ad-hoc probes
  // through the hub, results live and through ingest.
  absl::Status StartAdmin() {
    if (!options_.admin_tokens_file.empty()) {
      FC_ASSIGN_OR_RETURN(
          admin_auth_, AdminAuthorizer::FromFile(options_.admin_tokens_file));
    } else if (options_.admin_allow_all) {
      admin_auth_ = AdminAuthorizer::AllowAll();
      LogWarning("admin_api_open",
                 {{"reason",
                   "--insecure without --admin_tokens: every admin "
                   "call is allowed"}});
    }
    FC_ASSIGN_OR_RETURN(verdict_source_,
                        CreateStoreVerdictSource({}, store_.get(), clock_));
    AdminCoreDeps deps;
    deps.scheduler = scheduler_.get();
    deps.ingest = ingest_.get();
    // Live verdicts from the engine; Analyze over the store.
    admin_verdicts_ =
        CombineVerdictSources(verdicts_.get(), verdict_source_.get());
    deps.verdicts = admin_verdicts_.get();
    deps.clock = clock_;
    SessionHub* hub = hub_.get();
    deps.send_adhoc = [hub](const std::string& agent_id,
                            const v1::AdhocProbe& probe) {
      v1::ControllerMessage m;
      *m.mutable_adhoc_probe() = probe;
      return hub->SendToAgent(agent_id, std::move(m));
    };
    AdminCoreOptions ao;
    ao.guard = options_.target_guard;
    FC_ASSIGN_OR_RETURN(admin_core_, AdminCore::Create(ao, deps));
    AdminCore* core = admin_core_.get();
    hub_->SetAdhocResultHandler(
        [core](const std::string& agent_id, const v1::AdhocResult& r) {
          core->OnAdhocResult(agent_id, r);
        });
    ingest_->AddObserver(core);
    admin_service_ =
        CreateAdminService({}, admin_core_.get(), admin_auth_.get());
    return absl::OkStatus();
  }

  void PruneLoop() {
    absl::MutexLock lock(&mu_);
    for (;;) {
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&drain_started_),
                               options_.prune_interval);
      if (drain_started_) return;
      mu_.Unlock();
      auto pruned = store_->Prune(clock_->Now(), retention_);
      if (!pruned.ok()) {
        LogError("prune_failed", {{"error", pruned.status().ToString()}});
      } else {
        LogInfo("pruned", {{"failures", absl::StrCat(pruned->failures_deleted)},
                           {"minutes", absl::StrCat(pruned->minutes_deleted)}});
      }
      mu_.Lock();
    }
  }

  ControllerServerOptions options_;
  Clock* const clock_;
  RetentionOptions retention_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ControllerMetrics> metrics_;
  // Declared before ingest_: ingest holds it as an observer until destroyed.
  std::unique_ptr<VerdictService> verdicts_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SessionHub> hub_;
  std::unique_ptr<AgentSessionService> service_;
  std::unique_ptr<AdminAuthorizer> admin_auth_;
  std::unique_ptr<VerdictSource> verdict_source_;
  std::unique_ptr<VerdictSource> admin_verdicts_;
  std::unique_ptr<AdminCore> admin_core_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  std::string health_address_;
  std::unique_ptr<MetricsHttpServer> http_;
  std::shared_ptr<prometheus::Collectable> process_metrics_;
  std::string grpc_address_;
  std::thread pruner_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  bool drain_started_ ABSL_GUARDED_BY(mu_) = false;
  bool drained_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ControllerServer>>
ControllerServer::BuildAndStart(const ControllerServerOptions& options,
                                Clock* clock) {
  auto server = std::make_unique<ControllerServerImpl>(options, clock);
  FC_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<ControllerServer>(std::move(server));
}

}  // namespace controller
}  // namespace fleetcanary
