// ControllerServer: the start-up order and the domain core. The gRPC side is
// in grpc_servers.cc, the HTTP side in http_pages.cc, the standby in
// standby.cc (see controller_server_impl.h).
#include "controller/server/controller_server.h"

#include <filesystem>
#include <regex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/server/controller_server_impl.h"

namespace fleetcanary {
namespace controller {
namespace {

// Live verdict settings from the controller config.
VerdictServiceOptions VerdictOptions(const v1::ControllerConfig& c) {
  VerdictServiceOptions o;
  o.detection = c.detection();
  o.metrics_period = DurationFromProtoOr(c.metrics_period(), absl::Seconds(60));
  o.reconcile_settle =
      DurationFromProtoOr(c.metrics_settle(), absl::ZeroDuration());
  if (c.has_declared_fix_time()) {
    o.declared_fix_time = TimeFromProto(c.declared_fix_time());
  }
  return o;
}

absl::Duration Heartbeat(const v1::ControllerConfig& c) {
  return DurationFromProtoOr(c.heartbeat_interval(), absl::Seconds(10));
}

absl::Duration Liveness(const v1::ControllerConfig& c) {
  return DurationFromProtoOr(c.liveness_timeout(), 2 * Heartbeat(c));
}

absl::Duration MetricsPeriod(const v1::ControllerConfig& c) {
  return DurationFromProtoOr(c.metrics_period(), absl::Seconds(60));
}

}  // namespace

std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

ControllerServerImpl::ControllerServerImpl(
    const ControllerServerOptions& options, Clock* clock)
    : options_(options), clock_(clock) {}

ControllerServerImpl::~ControllerServerImpl() {
  Drain(absl::Seconds(2));
  if (retention_job_) retention_job_->Stop();
  // Stopped before any member is destroyed: their runs use many of them.
  if (store_checker_) store_checker_->Stop();
  if (guard_) guard_->Stop();
}

absl::Status ControllerServerImpl::Start() {
  FC_RETURN_IF_ERROR(PrepareDataDir());
  SetRetentionFromConfig();
  FC_RETURN_IF_ERROR(OpenStoreAndLead());
  FC_RETURN_IF_ERROR(BuildCore());
  FC_RETURN_IF_ERROR(ApplyFleetFile());
  ConnectSchedulerMetrics();
  FC_RETURN_IF_ERROR(BuildSessions());
  FC_RETURN_IF_ERROR(StartAdmin());
  FC_RETURN_IF_ERROR(StartGrpc());
  StartListenerGuard();
  FC_RETURN_IF_ERROR(StartHttp());
  FC_RETURN_IF_ERROR(StartPeriodicJobs());
  UpdateServing();
  LogStarted();
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::PrepareDataDir() {
  v1::ControllerConfig& c = options_.config;
  if (c.grpc_listen().empty()) c.set_grpc_listen("127.0.0.1:0");
  if (c.data_dir().empty()) c.set_data_dir(".");
  std::error_code ec;
  std::filesystem::create_directories(c.data_dir(), ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data_dir: cannot create ", c.data_dir(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

void ControllerServerImpl::SetRetentionFromConfig() {
  const v1::ControllerConfig& c = options_.config;
  retention_.raw_retention =
      DurationFromProtoOr(c.raw_retention(), absl::Hours(24 * 7));
  retention_.aggregate_retention =
      DurationFromProtoOr(c.aggregate_retention(), absl::Hours(24 * 90));
  retention_.hourly_retention =
      DurationFromProtoOr(c.hourly_retention(), absl::Hours(24 * 730));
  if (c.retention_max_rows_per_transaction() > 0) {
    retention_.max_rows_per_transaction =
        c.retention_max_rows_per_transaction();
  }
}

absl::Status ControllerServerImpl::OpenStoreAndLead() {
  if (options_.store_url.empty()) {
    FC_ASSIGN_OR_RETURN(
        store_,
        CreateSqliteStore({(std::filesystem::path(options_.config.data_dir()) /
                            "controller.db")
                               .string()}));
  } else {
    FC_ASSIGN_OR_RETURN(store_, OpenStore(options_.store_url, "--store"));
  }
  metrics_ = std::make_unique<ControllerMetrics>();
  if (options_.leader_election) {
    FC_RETURN_IF_ERROR(RunStandbyUntilLeader());
  } else {
    metrics_->SetLeader(true);
  }
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::BuildCore() {
  const v1::ControllerConfig& c = options_.config;
  FC_ASSIGN_OR_RETURN(auto totals, store_->LoadStreamTotals());
  FC_ASSIGN_OR_RETURN(auto counters, store_->LoadCounters());
  FC_ASSIGN_OR_RETURN(auto agents, store_->LoadAgents());
  metrics_->Restore(totals, counters, agents);
  IngestOptions io = options_.ingest;
  auto user_on_commit = io.on_commit;
  io.on_commit = [this, user_on_commit](const absl::Status& s) {
    SetStoreStatus(s, "commit");
    if (user_on_commit) user_on_commit(s);
  };
  FC_ASSIGN_OR_RETURN(ingest_,
                      Ingest::Create(io, store_.get(), metrics_.get(), clock_));
  FC_ASSIGN_OR_RETURN(verdicts_,
                      VerdictService::Create(VerdictOptions(c), store_.get(),
                                             metrics_.get(), clock_));
  ingest_->AddObserver(verdicts_.get());
  SchedulerOptions so;
  so.rotation_period = MetricsPeriod(c);
  so.heartbeat_interval = Heartbeat(c);
  so.liveness_timeout = Liveness(c);
  so.metrics = metrics_.get();
  so.forget_drained_after = options_.forget_drained_after;
  so.target_addresses = options_.target_guard;
  FC_ASSIGN_OR_RETURN(scheduler_, Scheduler::Create(so, store_.get(), clock_));
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::ApplyFleetFile() {
  if (options_.fleet.targets_size() > 0 ||
      options_.fleet.schedules_size() > 0) {
    // The fleet file is declarative: at every start the stored schedules
    // become exactly the file's (created, updated, and pruned when no
    // longer named), so a schedule removed from the file stops, and one
    // changed or deleted only through the admin API is back to what the
    // file says (docs/operations.md, "The fleet file").
    v1::ApplySchedulesRequest req;
    *req.mutable_targets() = options_.fleet.targets();
    *req.mutable_schedules() = options_.fleet.schedules();
    req.set_prune(true);
    auto applied = scheduler_->ApplySchedules(req);
    if (!applied.ok()) return Annotate(applied.status(), "fleet");
    LogInfo("fleet_file_applied",
            {{"created", absl::StrJoin(applied->created(), ",")},
             {"updated", absl::StrJoin(applied->updated(), ",")},
             {"unchanged", absl::StrCat(applied->unchanged_size())},
             {"deleted", absl::StrJoin(applied->deleted(), ",")}});
  }
  return absl::OkStatus();
}

void ControllerServerImpl::ConnectSchedulerMetrics() {
  Scheduler* scheduler = scheduler_.get();
  metrics_->SetAgentCountsProvider(
      [scheduler] { return scheduler->AgentCounts(); });
  metrics_->SetRegionsWithoutAgentsProvider(
      [scheduler] { return scheduler->RegionsWithoutAgents(); });
  metrics_->SetConfiguredStreamsProvider(
      [scheduler] { return scheduler->Configured(); });
}

absl::Status ControllerServerImpl::BuildSessions() {
  const v1::ControllerConfig& c = options_.config;
  SessionHubOptions ho;
  ho.heartbeat_interval = Heartbeat(c);
  ho.liveness_timeout = Liveness(c);
  ho.metrics_period = MetricsPeriod(c);
  FC_ASSIGN_OR_RETURN(hub_,
                      SessionHub::Create(ho, ingest_.get(), scheduler_.get(),
                                         metrics_.get(), clock_));
  AgentSessionAuth auth;
  auth.allowed_regions = options_.allowed_regions;
  auth.require_certificate =
      !options_.tls.insecure && !options_.tls.ca_file.empty();
  if (!options_.agent_id_pattern.empty()) {
    try {
      std::regex check(
          absl::StrReplaceAll(options_.agent_id_pattern, {{"{cert}", "cert"}}));
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "agent_id_pattern: not a regular expression: ", e.what()));
    }
    auth.agent_id_pattern = options_.agent_id_pattern;
  }
  ControllerMetrics* metrics = metrics_.get();
  auth.on_refused = [metrics](const absl::Status&) {
    metrics->AddCounter("session_refused_total", 1);
  };
  auth_ = auth;
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::LoadAdminAuth() {
  if (admin_auth_ != nullptr) return absl::OkStatus();
  if (!options_.admin_tokens_file.empty()) {
    FC_ASSIGN_OR_RETURN(admin_auth_,
                        AdminAuthorizer::FromFile(options_.admin_tokens_file));
  } else if (options_.admin_allow_all) {
    admin_auth_ = AdminAuthorizer::AllowAll();
    LogWarning("admin_api_open",
               {{"reason",
                 "--insecure without --admin_tokens: every admin "
                 "call is allowed"}});
  }
  // Admin tokens are checked on the headers, before a body is read (a
  // standby's admin server too).
  admin_gate_ = CreateAdminTokenGate(admin_auth_.get());
  return absl::OkStatus();
}

// The admin API: live verdicts, Analyze over the store, ad-hoc probes
// through the hub, results live and through ingest.
absl::Status ControllerServerImpl::StartAdmin() {
  FC_RETURN_IF_ERROR(LoadAdminAuth());
  // Analyze and Report run the detectors with the configured settings.
  StoreVerdictSourceOptions so;
  so.detection = options_.config.detection();
  FC_ASSIGN_OR_RETURN(verdict_source_,
                      CreateStoreVerdictSource(so, store_.get(), clock_));
  AdminCoreDeps deps;
  deps.scheduler = scheduler_.get();
  deps.ingest = ingest_.get();
  deps.store = store_.get();
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
  ao.max_probes_per_run = options_.adhoc_max_probes;
  ao.detection = options_.config.detection();
  FC_ASSIGN_OR_RETURN(admin_core_, AdminCore::Create(ao, deps));
  AdminCore* core = admin_core_.get();
  hub_->SetAdhocResultHandler(
      [core](const std::string& agent_id, const v1::AdhocResult& r) {
        core->OnAdhocResult(agent_id, r);
      });
  hub_->SetAgentWelcomedHandler([core](const std::string& agent_id) {
    core->OnAgentConnected(agent_id);
  });
  ingest_->AddObserver(core);
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::StartPeriodicJobs() {
  RetentionJobOptions ro;
  ro.retention = retention_;
  ro.interval = DurationFromProtoOr(options_.config.retention_interval(),
                                    options_.prune_interval);
  FC_ASSIGN_OR_RETURN(
      retention_job_,
      RetentionJob::Start(ro, store_.get(), metrics_.get(), clock_));
  store_checker_ = std::make_unique<PeriodicTask>(
      clock_, options_.store_check_interval, [this] { StoreCheck(); });
  return absl::OkStatus();
}

void ControllerServerImpl::LogStarted() {
  LogInfo("controller_started",
          {{"grpc", grpc_address_},
           {"http", http_address()},
           {"health", health_address_},
           {"admin", admin_address_},
           {"tls", options_.tls.insecure          ? "off"
                   : options_.tls.ca_file.empty() ? "tls"
                                                  : "mtls"},
           {"data_dir", options_.config.data_dir()},
           {"store", options_.store_url.empty()
                         ? "sqlite"
                         : RedactStoreUrl(options_.store_url)}});
}

bool ControllerServerImpl::store_healthy() const {
  absl::MutexLock lock(&health_mu_);
  return store_up_;
}

void ControllerServerImpl::Drain(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (drain_started_) {
      mu_.Await(absl::Condition(&drained_));
      return;
    }
    drain_started_ = true;
  }
  {
    absl::MutexLock lock(&health_mu_);
    draining_ = true;
  }
  UpdateServing();
  if (retention_job_) retention_job_->Stop();
  if (hub_) hub_->Drain("shutdown", timeout);
  if (standby_) {
    standby_->Shutdown(
        absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(100)));
  }
  if (server_)
    server_->Shutdown(absl::ToChronoTime(Clock::Real()->Now() + timeout));
  if (main_listener_) main_listener_->Stop();
  if (admin_core_) admin_core_->Shutdown();
  if (admin_service_) admin_service_->Shutdown();
  if (admin_server_) {
    admin_server_->Shutdown(
        absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(100)));
  }
  if (admin_listener_) admin_listener_->Stop();
  if (hub_) hub_->Shutdown();
  if (ingest_) ingest_->Shutdown();
  if (verdicts_) verdicts_->Shutdown();
  if (scheduler_) scheduler_->Shutdown();
  if (elector_) elector_->Shutdown();  // Releases the lease.
  if (health_server_)
    health_server_->Shutdown(
        absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(100)));
  LogInfo("controller_drained");
  absl::MutexLock lock(&mu_);
  drained_ = true;
}

void ControllerServerImpl::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&drained_));
}

void ControllerServerImpl::SetStoreStatus(const absl::Status& status,
                                          const char* source) {
  const bool up = status.ok();
  bool changed;
  {
    absl::MutexLock lock(&health_mu_);
    changed = up != store_up_;
    store_up_ = up;
    store_error_ = up ? "" : status.ToString();
  }
  metrics_->SetStoreUp(up);
  if (!up) metrics_->AddCounter("store_check_failures_total", 1);
  if (!changed) return;
  if (up) {
    LogInfo("store_available", {{"via", source}});
  } else {
    LogError("store_unavailable",
             {{"via", source},
              {"error", status.ToString()},
              {"effect",
               "outcomes not acknowledged (agents keep them); not ready"}});
  }
  UpdateServing();
}

void ControllerServerImpl::UpdateServing() {
  bool serving;
  {
    absl::MutexLock lock(&health_mu_);
    serving = store_up_ && !draining_ && listener_ok_;
  }
  absl::MutexLock listeners(&listener_mu_);
  for (grpc::Server* s :
       {server_.get(), health_server_.get(), admin_server_.get()}) {
    if (s != nullptr) s->GetHealthCheckService()->SetServingStatus(serving);
  }
}

void ControllerServerImpl::StoreCheck() {
  {
    absl::MutexLock lock(&mu_);
    if (drain_started_) return;
  }
  // A ping, then an empty write transaction: a locked, full or read-only
  // database may still answer reads.
  absl::Status s = store_->Ping();
  if (s.ok()) s = store_->Commit(WriteBatch{}, nullptr);
  SetStoreStatus(s, "check");
}

absl::StatusOr<std::unique_ptr<ControllerServer>>
ControllerServer::BuildAndStart(const ControllerServerOptions& options,
                                Clock* clock) {
  auto server = std::make_unique<ControllerServerImpl>(options, clock);
  FC_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<ControllerServer>(std::move(server));
}

}  // namespace controller
}  // namespace fleetcanary
