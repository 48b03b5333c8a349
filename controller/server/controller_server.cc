#include "controller/server/controller_server.h"

#include <grpc/support/log.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <regex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "analysis/report/report_render.h"
#include "common/log/log.h"
#include "common/metrics/metrics_export.h"
#include "common/metrics/process_metrics.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "common/time/periodic_task.h"
#include "common/units/units.h"
#include "controller/api/admin_gate.h"
#include "controller/api/admin_service.h"
#include "controller/api/verdict_source.h"
#include "controller/leader/leader_elector.h"
#include "controller/retention/retention_job.h"
#include "controller/server/capped_listener.h"
#include "controller/session/agent_session_service.h"
#include "controller/session/session_hub.h"
#include "controller/web/status_data.h"

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

std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

// gRPC (1.51) stops accepting on a listener for good after accept4 fails
// (EMFILE: the fd limit was reached). Its log line is the only signal, so a
// log hook raises this flag; the listener guard then rebuilds the listeners.
std::atomic<int> g_accept_failures{0};

void GrpcLogHook(gpr_log_func_args* args) {
  if (args->message != nullptr &&
      std::strstr(args->message, "Failed accept4") != nullptr) {
    g_accept_failures.fetch_add(1);
  }
  std::fprintf(stderr, "grpc %s %s:%d] %s\n",
               gpr_log_severity_string(args->severity), args->file, args->line,
               args->message);
}

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit.
uint64_t RaiseFdLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      LogInfo("fd_limit_raised", {{"from", absl::StrCat(before)},
                                  {"to", absl::StrCat(rl.rlim_cur)}});
    } else {
      getrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  return rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : rl.rlim_cur;
}

// Open file descriptors of this process.
int OpenFds() {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// How often the listener guard re-checks while it reports NOT_SERVING.
constexpr absl::Duration kGuardRecheck = absl::Milliseconds(250);

class ControllerServerImpl : public ControllerServer {
  // The cap on the main listener: `configured`, or (0) three quarters of the
  // descriptor limit, so the cap is reached before descriptors run out.
  int MaxConnections(int configured) const {
    if (configured > 0) return configured;
    return static_cast<int>(
        std::max<uint64_t>(16, std::min<uint64_t>(fd_limit_ * 3 / 4, 1 << 20)));
  }

 public:
 public:
  ControllerServerImpl(const ControllerServerOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}

  ~ControllerServerImpl() override {
    Drain(absl::Seconds(2));
    if (retention_job_) retention_job_->Stop();
    // Stopped before any member is destroyed: their runs use many of them.
    if (store_checker_) store_checker_->Stop();
    if (guard_) guard_->Stop();
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
        DurationFromProtoOr(c.heartbeat_interval(), absl::Seconds(10));
    const absl::Duration liveness =
        DurationFromProtoOr(c.liveness_timeout(), 2 * heartbeat);
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

    if (options_.store_url.empty()) {
      FC_ASSIGN_OR_RETURN(
          store_, CreateSqliteStore(
                      {(std::filesystem::path(c.data_dir()) / "controller.db")
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
    FC_ASSIGN_OR_RETURN(
        ingest_, Ingest::Create(io, store_.get(), metrics_.get(), clock_));
    FC_ASSIGN_OR_RETURN(verdicts_,
                        VerdictService::Create(VerdictOptions(c), store_.get(),
                                               metrics_.get(), clock_));
    ingest_->AddObserver(verdicts_.get());
    SchedulerOptions so;
    so.rotation_period =
        DurationFromProtoOr(c.metrics_period(), absl::Seconds(60));
    so.heartbeat_interval = heartbeat;
    so.liveness_timeout = liveness;
    so.metrics = metrics_.get();
    so.forget_drained_after = options_.forget_drained_after;
    so.target_addresses = options_.target_guard;
    FC_ASSIGN_OR_RETURN(scheduler_,
                        Scheduler::Create(so, store_.get(), clock_));
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
    ho.metrics_period =
        DurationFromProtoOr(c.metrics_period(), absl::Seconds(60));
    FC_ASSIGN_OR_RETURN(hub_, SessionHub::Create(ho, ingest_.get(), scheduler,
                                                 metrics_.get(), clock_));
    AgentSessionAuth auth;
    auth.allowed_regions = options_.allowed_regions;
    auth.require_certificate =
        !options_.tls.insecure && !options_.tls.ca_file.empty();
    if (!options_.agent_id_pattern.empty()) {
      try {
        std::regex check(absl::StrReplaceAll(options_.agent_id_pattern,
                                             {{"{cert}", "cert"}}));
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
    FC_RETURN_IF_ERROR(StartAdmin());

    fd_limit_ = RaiseFdLimit();
    gpr_set_log_function(GrpcLogHook);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    FC_ASSIGN_OR_RETURN(credentials_, MakeServerCredentials(options_.tls));
    // Admin tokens are checked on the headers, before a body is read.
    if (admin_gate_ == nullptr) {
      admin_gate_ = CreateAdminTokenGate(admin_auth_.get());
    }
    credentials_ =
        WithAdminTokenGate(credentials_, options_.tls.insecure, admin_gate_);
    {
      absl::MutexLock listeners(&listener_mu_);
      FC_RETURN_IF_ERROR(BuildMainServer(c.grpc_listen()));
      grpc_address_ = absl::StrCat(HostOf(c.grpc_listen()), ":", grpc_port_);
      if (!options_.health_listen.empty()) {
        FC_RETURN_IF_ERROR(BuildHealthServer(options_.health_listen));
        health_address_ =
            absl::StrCat(HostOf(options_.health_listen), ":", health_port_);
      }
      if (!options_.admin_listen.empty()) {
        FC_RETURN_IF_ERROR(StartAdminServer());
      }
    }
    if (options_.self_check_interval > absl::ZeroDuration()) {
      // Ticks at most every kGuardRecheck: a full check every
      // self_check_interval while healthy, every tick while not, so SERVING
      // returns within a tick of the descriptors coming back.
      guard_ = std::make_unique<PeriodicTask>(
          clock_, std::min(options_.self_check_interval, kGuardRecheck),
          [this] { GuardCheck(); });
    }
    if (!c.http_listen().empty()) {
      FC_ASSIGN_OR_RETURN(http_, MetricsHttpServer::Create(c.http_listen()));
      http_->Register(metrics_->collectable());
      process_metrics_ = NewProcessMetrics({"fleetcanary-controller"});
      http_->Register(process_metrics_);
      http_->AddPage("/status", [this] { return StatusPage(); });
      http_->AddQueryPage("/report", [this](const std::string& query) {
        return ReportPage(query);
      });
      http_->AddPage("/readyz", [this] { return ReadyPage(); });
      // Liveness: the process serves HTTP. A failing store is a readiness
      // matter (a restart would not fix a full or locked disk).
      http_->AddPage("/healthz", [] {
        return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
      });
    }
    {
      RetentionJobOptions ro;
      ro.retention = retention_;
      ro.interval =
          DurationFromProtoOr(c.retention_interval(), options_.prune_interval);
      FC_ASSIGN_OR_RETURN(
          retention_job_,
          RetentionJob::Start(ro, store_.get(), metrics_.get(), clock_));
    }
    store_checker_ = std::make_unique<PeriodicTask>(
        clock_, options_.store_check_interval, [this] { StoreCheck(); });
    UpdateServing();
    LogInfo("controller_started",
            {{"grpc", grpc_address_},
             {"http", http_address()},
             {"health", health_address_},
             {"admin", admin_address_},
             {"tls", options_.tls.insecure          ? "off"
                     : options_.tls.ca_file.empty() ? "tls"
                                                    : "mtls"},
             {"data_dir", c.data_dir()},
             {"store", options_.store_url.empty()
                           ? "sqlite"
                           : RedactStoreUrl(options_.store_url)}});
    return absl::OkStatus();
  }

  std::string grpc_address() const override { return grpc_address_; }
  std::string http_address() const override {
    return http_ ? http_->address() : "";
  }
  std::string health_address() const override { return health_address_; }
  std::string admin_address() const override { return admin_address_; }
  bool store_healthy() const override {
    absl::MutexLock lock(&health_mu_);
    return store_up_;
  }
  Scheduler* scheduler() override { return scheduler_.get(); }
  Ingest* ingest() override { return ingest_.get(); }
  Store* store() override { return store_.get(); }
  ControllerMetrics* metrics() override { return metrics_.get(); }
  bool is_leader() override { return !elector_ || elector_->is_leader(); }
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

  void Wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&drained_));
  }

 private:
  // Agent sessions reaching a standby: refused, naming the leader.
  class StandbySessionService : public v1::AgentSession::CallbackService {
   public:
    void set_elector(LeaderElector* elector) {
      absl::MutexLock lock(&mu_);
      elector_ = elector;
    }
    grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
        grpc::CallbackServerContext*) override {
      class Refuse : public grpc::ServerBidiReactor<v1::AgentMessage,
                                                    v1::ControllerMessage> {
       public:
        explicit Refuse(const std::string& message) {
          Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
        }
        void OnDone() override { delete this; }
      };
      const std::string leader = leader_address();
      return new Refuse(absl::StrCat("not the leader; leader=",
                                     leader.empty() ? "unknown" : leader));
    }

    // The leader's address as last read ("" when unknown).
    std::string leader_address() {
      absl::MutexLock lock(&mu_);
      return elector_ != nullptr ? elector_->lease().address : std::string();
    }

   private:
    absl::Mutex mu_;
    LeaderElector* elector_ ABSL_GUARDED_BY(mu_) = nullptr;
  };

  // Serves as a standby (health NOT_SERVING, sessions refused with the
  // leader's address, /metrics) until this replica holds the lease, then
  // frees the listeners for the full start.
  absl::Status RunStandbyUntilLeader() {
    v1::ControllerConfig& c = options_.config;
    grpc::EnableDefaultHealthCheckService(true);
    FC_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options_.tls));
    LeaderElectorOptions eo;
    eo.replica_id = options_.replica_id;
    if (eo.replica_id.empty()) {
      char host[256] = {};
      gethostname(host, sizeof(host) - 1);
      eo.replica_id = absl::StrCat(host, "-", getpid());
    }
    eo.lease = options_.leader_lease;
    eo.on_lost = options_.leader_on_lost;
    // The address is known once bound: bind first, then elect.
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(c.grpc_listen(), credentials, &port);
    standby_service_ = std::make_unique<StandbySessionService>();
    builder.RegisterService(standby_service_.get());
    // The admin API's reads from the shared store; changes and probes are
    // refused with the leader's address.
    FC_RETURN_IF_ERROR(LoadAdminAuth());
    StoreVerdictSourceOptions so;
    so.detection = c.detection();
    FC_ASSIGN_OR_RETURN(verdict_source_,
                        CreateStoreVerdictSource(so, store_.get(), clock_));
    AdminCoreDeps deps;
    deps.verdicts = verdict_source_.get();
    deps.clock = clock_;
    deps.standby_store = store_.get();
    StandbySessionService* sessions = standby_service_.get();
    deps.leader_address = [sessions] { return sessions->leader_address(); };
    const absl::Duration heartbeat =
        DurationFromProtoOr(c.heartbeat_interval(), absl::Seconds(10));
    deps.standby_liveness =
        DurationFromProtoOr(c.liveness_timeout(), 2 * heartbeat);
    FC_ASSIGN_OR_RETURN(std::unique_ptr<AdminCore> standby_core,
                        AdminCore::Create({}, deps));
    std::unique_ptr<AdminService> standby_admin =
        CreateAdminService({}, standby_core.get(), admin_auth_.get());
    std::unique_ptr<grpc::Server> standby_admin_server;
    if (options_.admin_listen.empty()) {
      builder.RegisterService(standby_admin.get());
    } else {
      FC_ASSIGN_OR_RETURN(standby_admin_server,
                          BuildAdminOnlyServer(standby_admin.get()));
      standby_admin_server->GetHealthCheckService()->SetServingStatus(false);
    }
    standby_ = builder.BuildAndStart();
    if (standby_ == nullptr || port == 0) {
      return absl::UnavailableError(
          absl::StrCat("grpc_listen: cannot bind ", c.grpc_listen()));
    }
    standby_->GetHealthCheckService()->SetServingStatus(false);
    const std::string bound = absl::StrCat(HostOf(c.grpc_listen()), ":", port);
    // Keep the port for the full start.
    c.set_grpc_listen(absl::StrCat(HostOf(c.grpc_listen()), ":", port));
    eo.address =
        options_.advertise_address.empty() ? bound : options_.advertise_address;
    FC_ASSIGN_OR_RETURN(
        elector_,
        LeaderElector::Create(eo, store_.get(), metrics_.get(), clock_));
    standby_service_->set_elector(elector_.get());
    std::unique_ptr<MetricsHttpServer> standby_http;
    if (!c.http_listen().empty()) {
      FC_ASSIGN_OR_RETURN(standby_http,
                          MetricsHttpServer::Create(c.http_listen()));
      standby_http->Register(metrics_->collectable());
      c.set_http_listen(standby_http->address());
      // The status page from the store (no live agents section).
      standby_http->AddPage("/status", [this] { return StatusPage(); });
      standby_http->AddPage("/healthz", [] {
        return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
      });
      standby_http->AddPage("/readyz", [sessions] {
        const std::string leader = sessions->leader_address();
        return HttpPage{"text/plain; charset=utf-8",
                        absl::StrCat("standby; leader=",
                                     leader.empty() ? "unknown" : leader, "\n"),
                        503};
      });
    }
    LogInfo("controller_standby",
            {{"replica", eo.replica_id},
             {"grpc", bound},
             {"advertise", eo.address},
             {"http", standby_http ? standby_http->address() : ""},
             {"admin", admin_address_}});
    absl::StatusOr<LeaderLease> lease = elector_->AwaitLeadership();
    standby_->Shutdown(
        absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(200)));
    standby_->Wait();
    standby_.reset();
    if (standby_admin_server != nullptr) {
      standby_admin_server->Shutdown(
          absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(200)));
      standby_admin_server->Wait();
      standby_admin_server.reset();
    }
    standby_admin->Shutdown();
    standby_admin.reset();
    standby_core->Shutdown();
    standby_core.reset();
    standby_http.reset();
    if (!lease.ok()) return lease.status();
    LogInfo("controller_leading", {{"replica", eo.replica_id},
                                   {"epoch", absl::StrCat(lease->epoch)}});
    return absl::OkStatus();
  }

  // (Re)builds the main gRPC server on `listen` with fresh service adapters
  // over the same core objects, hardened (docs/hardening.md).
  absl::Status BuildMainServer(const std::string& listen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_) {
    auto service = std::make_unique<AgentSessionService>(hub_.get(), auth_);
    AdminServiceOptions admin_options;
    admin_options.max_request_bytes = options_.admin_max_message_bytes;
    auto admin =
        CreateAdminService(admin_options, admin_core_.get(), admin_auth_.get());
    // The listening socket is ours (kept across rebuilds): it caps open
    // connections and hands each to the server.
    if (main_listener_ == nullptr) {
      CappedListenerOptions lo;
      lo.name = "grpc";
      lo.max_connections = MaxConnections(options_.max_connections);
      lo.on_refused = [metrics = metrics_.get()](uint64_t n) {
        metrics->AddCounter("grpc_connections_refused_total",
                            static_cast<double>(n));
      };
      // The listener guard says NOT_SERVING while accept fails.
      lo.on_accept_failed = [this] { own_accept_failures_.fetch_add(1); };
      FC_ASSIGN_OR_RETURN(main_listener_, CappedListener::Listen(listen, lo));
    }
    grpc::ServerBuilder builder;
    auto acceptor = builder.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
        credentials_);
    const int port = main_listener_->port();
    builder.RegisterService(service.get());
    // With admin_listen the admin API has its own listener (StartAdminServer).
    if (options_.admin_listen.empty()) builder.RegisterService(admin.get());
    builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options_.handshake_timeout)));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options_.max_connection_idle)));
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 1);
    grpc::ResourceQuota quota("fleetcanary-controller");
    quota.SetMaxThreads(std::max(4, options_.max_threads));
    builder.SetResourceQuota(quota);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr || port == 0) {
      return absl::UnavailableError(
          absl::StrCat("grpc_listen: cannot bind ", listen));
    }
    main_listener_->SetAcceptor(std::move(acceptor));
    std::unique_ptr<grpc::Server> old = std::move(server_);
    std::unique_ptr<AgentSessionService> old_service = std::move(service_);
    // With admin_listen, the admin service lives on its own server and is
    // kept; otherwise it moves with the main listener.
    std::unique_ptr<AdminService> old_admin;
    if (options_.admin_listen.empty() || admin_service_ == nullptr) {
      old_admin = std::move(admin_service_);
      admin_service_ = std::move(admin);
    }
    server_ = std::move(server);
    service_ = std::move(service);
    grpc_port_ = port;
    if (old != nullptr) {
      // Its streams end; agents reconnect to the new listener.
      old->Shutdown(
          absl::ToChronoTime(Clock::Real()->Now() + absl::Seconds(1)));
      old.reset();
      if (old_admin) old_admin->Shutdown();
    }
    return absl::OkStatus();
  }

  // Health only: a server with no services of ours gets just the default
  // health service.
  absl::Status BuildHealthServer(const std::string& listen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_) {
    if (health_server_ != nullptr) {
      health_server_->Shutdown(
          absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(100)));
      health_server_.reset();
    }
    grpc::ServerBuilder health_builder;
    int health_port = 0;
    health_builder.AddListeningPort(listen, grpc::InsecureServerCredentials(),
                                    &health_port);
    health_builder.AddChannelArgument(
        GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
        static_cast<int>(
            absl::ToInt64Milliseconds(options_.handshake_timeout)));
    health_server_ = health_builder.BuildAndStart();
    if (health_server_ == nullptr || health_port == 0) {
      return absl::UnavailableError(
          absl::StrCat("health_listen: cannot bind ", listen));
    }
    health_port_ = health_port;
    return absl::OkStatus();
  }

  // The listener guard: the health services say NOT_SERVING while the
  // process is short of file descriptors or a listener failed to accept,
  // and a failed listener is rebuilt on the same port once descriptors are
  // free again (half-open connections end at the handshake timeout). One
  // check every self_check_interval while healthy, every kGuardRecheck while
  // not, until the drain starts.
  void GuardCheck() {
    {
      absl::MutexLock lock(&mu_);
      if (drain_started_) return;
    }
    const absl::Duration now = clock_->MonotonicNow();
    if (guard_serving_ &&
        now - last_guard_check_ < options_.self_check_interval) {
      return;
    }
    last_guard_check_ = now;
    const int reserve =
        static_cast<int>(std::max<uint64_t>(16, fd_limit_ / 20));
    const int free_fds = static_cast<int>(fd_limit_) - OpenFds();
    const int failures = g_accept_failures.load();
    const bool failed = failures != accept_failures_seen_;
    // Our own listeners retry by themselves: unhealthy while it lasts,
    // no rebuild.
    const uint64_t own = own_accept_failures_.load();
    const bool starved = own != own_accept_failures_seen_;
    own_accept_failures_seen_ = own;
    const bool short_of_fds = free_fds < reserve || starved;
    if ((failed || short_of_fds) && guard_serving_) {
      guard_serving_ = false;
      metrics_->AddCounter("grpc_listener_unhealthy_total", 1);
      LogError("grpc_listener_unhealthy",
               {{"free_fds", absl::StrCat(free_fds)},
                {"fd_limit", absl::StrCat(fd_limit_)},
                {"accept_failed", failed || starved ? "true" : "false"}});
      SetServing(false);
    }
    if (failed && !short_of_fds) {
      absl::MutexLock listeners(&listener_mu_);
      absl::Status rebuilt = RebuildListenersLocked();
      if (rebuilt.ok()) {
        accept_failures_seen_ = failures;
      } else {
        LogError("grpc_listener_rebuild_failed",
                 {{"error", rebuilt.ToString()}});
      }
    }
    // A rebuilt server starts SERVING: say what is true again.
    if (failed && !short_of_fds) UpdateServing();
    if (!guard_serving_ && !short_of_fds &&
        g_accept_failures.load() == accept_failures_seen_) {
      guard_serving_ = true;
      LogInfo("grpc_listener_healthy", {{"free_fds", absl::StrCat(free_fds)}});
      SetServing(true);
    }
  }

  // The listener guard's view, one input of what the health services say.
  void SetServing(bool serving) {
    {
      absl::MutexLock lock(&health_mu_);
      listener_ok_ = serving;
    }
    UpdateServing();
  }

  absl::Status RebuildListenersLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (drain_started_) return absl::OkStatus();
    }
    LogWarning("grpc_listener_rebuild",
               {{"reason", "a listener stopped accepting (fd limit)"},
                {"grpc", grpc_address_}});
    metrics_->AddCounter("grpc_listener_restarts_total", 1);
    FC_RETURN_IF_ERROR(
        BuildMainServer(absl::StrCat(HostOf(grpc_address_), ":", grpc_port_)));
    if (!health_address_.empty()) {
      FC_RETURN_IF_ERROR(BuildHealthServer(
          absl::StrCat(HostOf(health_address_), ":", health_port_)));
    }
    return absl::OkStatus();
  }

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

  // The incident evidence report as HTML (or ?format=json|markdown):
  // ?target=T (default: the target of the current non-healthy verdicts),
  // ?since=DURATION (default 6h). Same numbers as the Report RPC.
  HttpPage ReportPage(const std::string& query) {
    auto text = [](int status, std::string body) {
      return HttpPage{"text/plain; charset=utf-8", std::move(body) + "\n",
                      status};
    };
    std::string target, format = "html";
    absl::Duration since = absl::Hours(6);
    for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
      if (p.first == "target") {
        target = p.second;
      } else if (p.first == "format") {
        format = p.second;
      } else if (p.first == "since") {
        absl::StatusOr<absl::Duration> d = ParseDuration(p.second);
        if (!d.ok() || *d <= absl::ZeroDuration()) {
          return text(400, "since: not a positive duration (e.g. 6h)");
        }
        since = *d;
      } else {
        return text(400, absl::StrCat("unknown parameter \"", p.first,
                                      "\" (target, since, format)"));
      }
    }
    if (format != "html" && format != "json" && format != "markdown") {
      return text(400, "format: html, json or markdown");
    }
    if (admin_core_ == nullptr) return text(503, "the admin API is not up");
    if (target.empty()) {
      absl::StatusOr<v1::GetVerdictsResponse> current =
          admin_core_->GetVerdicts(v1::GetVerdictsRequest());
      if (current.ok() && current->verdicts_size() > 0) {
        target = current->verdicts(0).key().target();
      }
      if (target.empty()) {
        return text(404,
                    "no current incident: every verdict is healthy "
                    "(name one with ?target=)");
      }
    }
    const absl::Time now = clock_->Now();
    v1::ReportRequest request;
    request.set_target(target);
    *request.mutable_from() = TimeToProto(now - since);
    *request.mutable_to() = TimeToProto(now + absl::Seconds(1));
    absl::StatusOr<v1::IncidentReport> r = admin_core_->Report(request);
    if (!r.ok()) {
      return text(r.status().code() == absl::StatusCode::kNotFound ? 404
                  : r.status().code() == absl::StatusCode::kInvalidArgument
                      ? 400
                      : 500,
                  std::string(r.status().message()));
    }
    if (format == "json") {
      return HttpPage{"application/json", report::RenderReportJson(*r), 200};
    }
    if (format == "markdown") {
      return HttpPage{"text/markdown; charset=utf-8",
                      report::RenderReportMarkdown(*r), 200};
    }
    return HttpPage{"text/html; charset=utf-8", report::RenderReportHtml(*r),
                    200};
  }

  // The admin API alone on admin_listen: server-side TLS with the
  // controller's certificate and no client certificate requested (bearer
  // tokens authenticate), or plaintext with --insecure.
  absl::Status StartAdminServer() {
    FC_ASSIGN_OR_RETURN(admin_server_,
                        BuildAdminOnlyServer(admin_service_.get()));
    return absl::OkStatus();
  }

  // A server on admin_listen serving `service` (and health); sets
  // admin_address_ and keeps the bound port in options_.admin_listen (a
  // standby's port stays the leader's).
  absl::StatusOr<std::unique_ptr<grpc::Server>> BuildAdminOnlyServer(
      grpc::Service* service) {
    TlsOptions tls = options_.tls;
    tls.ca_file.clear();
    FC_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(tls));
    credentials = WithAdminTokenGate(credentials, tls.insecure, admin_gate_);
    CappedListenerOptions lo;
    lo.name = "admin";
    lo.max_connections = options_.admin_max_connections;
    lo.on_refused = [metrics = metrics_.get()](uint64_t n) {
      metrics->AddCounter("grpc_connections_refused_total",
                          static_cast<double>(n));
    };
    // One listening socket for the process: a standby's admin server and
    // the leader's that replaces it take connections from the same one.
    if (admin_listener_ == nullptr) {
      FC_ASSIGN_OR_RETURN(admin_listener_,
                          CappedListener::Listen(options_.admin_listen, lo));
    }
    grpc::ServerBuilder builder;
    auto acceptor = builder.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
        credentials);
    const int port = admin_listener_->port();
    builder.RegisterService(service);
    // Only admin calls here: gRPC refuses a larger message itself.
    builder.SetMaxReceiveMessageSize(options_.admin_max_message_bytes);
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options_.handshake_timeout)));
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr || port == 0) {
      return absl::UnavailableError(
          absl::StrCat("admin_listen: cannot bind ", options_.admin_listen));
    }
    admin_listener_->SetAcceptor(std::move(acceptor));
    admin_address_ = absl::StrCat(HostOf(options_.admin_listen), ":", port);
    options_.admin_listen = admin_address_;
    return server;
  }

  // GET /readyz: 200 while the store accepts writes and the controller is
  // not draining, 503 otherwise (with the reason).
  HttpPage ReadyPage() {
    absl::MutexLock lock(&health_mu_);
    if (draining_) {
      return HttpPage{"text/plain; charset=utf-8", "draining\n", 503};
    }
    if (!store_up_) {
      return HttpPage{"text/plain; charset=utf-8",
                      absl::StrCat("store: ", store_error_, "\n"), 503};
    }
    return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
  }

  // The admin API: live verdicts, Analyze over the store, ad-hoc probes
  // through the hub, results live and through ingest.
  // Loads the admin API's tokens (once: a standby's serve the leader too).
  absl::Status LoadAdminAuth() {
    if (admin_auth_ != nullptr) return absl::OkStatus();
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
    // Admin tokens are checked on the headers, before a body is read (a
    // standby's admin server too).
    admin_gate_ = CreateAdminTokenGate(admin_auth_.get());
    return absl::OkStatus();
  }

  absl::Status StartAdmin() {
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

  // Records what the store last did (a commit or a ping): readiness and
  // fleetcanary_store_up follow it; transitions are logged.
  void SetStoreStatus(const absl::Status& status, const char* source) {
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

  // gRPC health: SERVING while the store is up and not draining.
  // Both health services say SERVING only while the store answers, the
  // listeners accept and the controller is not draining. A rebuilt server
  // starts SERVING, so the guard calls this again after a rebuild.
  void UpdateServing() {
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

  // One store check, every store_check_interval until the drain starts.
  void StoreCheck() {
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
  std::shared_ptr<grpc::AuthMetadataProcessor> admin_gate_;
  std::unique_ptr<VerdictSource> verdict_source_;
  std::unique_ptr<VerdictSource> admin_verdicts_;
  std::unique_ptr<AdminCore> admin_core_;
  std::unique_ptr<AdminService> admin_service_;
  AgentSessionAuth auth_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  uint64_t fd_limit_ = 0;
  int accept_failures_seen_ = 0;  // Guard thread only.
  // Accept failures of the capped listeners (lack of descriptors).
  std::atomic<uint64_t> own_accept_failures_{0};
  uint64_t own_accept_failures_seen_ = 0;  // Guard thread only.
  bool guard_serving_ = true;              // Guard thread only.
  absl::Duration last_guard_check_ = -absl::InfiniteDuration();  // Ditto.
  // The listener guard (GuardCheck), when self_check_interval > 0. Stopped
  // by the destructor before members are destroyed.
  std::unique_ptr<PeriodicTask> guard_;
  // Guards the listeners (rebuilt by the guard, shut down by Drain).
  absl::Mutex listener_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Declared before the servers, so destroyed after them (Drain stops them
  // first; a connection handed to a stopped server is closed by gRPC).
  std::unique_ptr<CappedListener> main_listener_;
  std::unique_ptr<CappedListener> admin_listener_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  int grpc_port_ = 0;
  int health_port_ = 0;
  std::string health_address_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::string admin_address_;
  std::unique_ptr<MetricsHttpServer> http_;
  std::shared_ptr<prometheus::Collectable> process_metrics_;
  std::string grpc_address_;
  std::unique_ptr<RetentionJob> retention_job_;
  // StoreCheck's timer. Stopped by the destructor before members are
  // destroyed.
  std::unique_ptr<PeriodicTask> store_checker_;
  std::unique_ptr<LeaderElector> elector_;
  // Declared before standby_, so it outlives that server.
  std::unique_ptr<StandbySessionService> standby_service_;
  std::unique_ptr<grpc::Server> standby_;

  mutable absl::Mutex health_mu_;
  // State below is protected by health_mu_.
  bool store_up_ ABSL_GUARDED_BY(health_mu_) = true;
  bool draining_ ABSL_GUARDED_BY(health_mu_) = false;
  bool listener_ok_ ABSL_GUARDED_BY(health_mu_) = true;
  std::string store_error_ ABSL_GUARDED_BY(health_mu_);

  mutable absl::Mutex mu_;
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
