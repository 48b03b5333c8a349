// Leader election: a replica serves as a standby until it holds the lease.
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/server/controller_server_impl.h"

namespace fleetcanary {
namespace controller {

absl::Status ControllerServerImpl::RunStandbyUntilLeader() {
  grpc::EnableDefaultHealthCheckService(true);
  FC_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options_.tls));
  LeaderElectorOptions eo = StandbyElectorOptions();
  // The address is known once bound: bind first, then elect.
  StandbyParts parts;
  std::string bound;
  FC_RETURN_IF_ERROR(StartStandbyGrpc(credentials, &parts, &bound));
  eo.address =
      options_.advertise_address.empty() ? bound : options_.advertise_address;
  FC_ASSIGN_OR_RETURN(elector_, LeaderElector::Create(eo, store_.get(),
                                                      metrics_.get(), clock_));
  standby_service_->set_elector(elector_.get());
  FC_RETURN_IF_ERROR(StartStandbyHttp(&parts));
  LogInfo("controller_standby",
          {{"replica", eo.replica_id},
           {"grpc", bound},
           {"advertise", eo.address},
           {"http", parts.http ? parts.http->address() : ""},
           {"admin", admin_address_}});
  absl::StatusOr<LeaderLease> lease = elector_->AwaitLeadership();
  StopStandby(&parts);
  if (!lease.ok()) return lease.status();
  LogInfo("controller_leading",
          {{"replica", eo.replica_id}, {"epoch", absl::StrCat(lease->epoch)}});
  return absl::OkStatus();
}

LeaderElectorOptions ControllerServerImpl::StandbyElectorOptions() const {
  LeaderElectorOptions eo;
  eo.replica_id = options_.replica_id;
  if (eo.replica_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    eo.replica_id = absl::StrCat(host, "-", getpid());
  }
  eo.lease = options_.leader_lease;
  eo.on_lost = options_.leader_on_lost;
  return eo;
}

absl::Status ControllerServerImpl::BuildStandbyAdmin(StandbyParts* parts) {
  const v1::ControllerConfig& c = options_.config;
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
  FC_ASSIGN_OR_RETURN(parts->core, AdminCore::Create({}, deps));
  parts->admin = CreateAdminService({}, parts->core.get(), admin_auth_.get());
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::StartStandbyGrpc(
    const std::shared_ptr<grpc::ServerCredentials>& credentials,
    StandbyParts* parts, std::string* bound) {
  v1::ControllerConfig& c = options_.config;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(c.grpc_listen(), credentials, &port);
  standby_service_ = std::make_unique<StandbySessionService>();
  builder.RegisterService(standby_service_.get());
  FC_RETURN_IF_ERROR(BuildStandbyAdmin(parts));
  if (options_.admin_listen.empty()) {
    builder.RegisterService(parts->admin.get());
  } else {
    FC_ASSIGN_OR_RETURN(parts->admin_server,
                        BuildAdminOnlyServer(parts->admin.get()));
    parts->admin_server->GetHealthCheckService()->SetServingStatus(false);
  }
  standby_ = builder.BuildAndStart();
  if (standby_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("grpc_listen: cannot bind ", c.grpc_listen()));
  }
  standby_->GetHealthCheckService()->SetServingStatus(false);
  *bound = absl::StrCat(HostOf(c.grpc_listen()), ":", port);
  // Keep the port for the full start.
  c.set_grpc_listen(absl::StrCat(HostOf(c.grpc_listen()), ":", port));
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::StartStandbyHttp(StandbyParts* parts) {
  v1::ControllerConfig& c = options_.config;
  if (c.http_listen().empty()) return absl::OkStatus();
  FC_ASSIGN_OR_RETURN(parts->http, MetricsHttpServer::Create(c.http_listen()));
  MetricsHttpServer* http = parts->http.get();
  http->Register(metrics_->collectable());
  c.set_http_listen(http->address());
  // The status page from the store (no live agents section).
  http->AddPage("/status", [this] { return StatusPage(); });
  http->AddPage("/healthz", [] {
    return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
  });
  StandbySessionService* sessions = standby_service_.get();
  http->AddPage("/readyz", [sessions] {
    const std::string leader = sessions->leader_address();
    return HttpPage{"text/plain; charset=utf-8",
                    absl::StrCat("standby; leader=",
                                 leader.empty() ? "unknown" : leader, "\n"),
                    503};
  });
  return absl::OkStatus();
}

void ControllerServerImpl::StopStandby(StandbyParts* parts) {
  standby_->Shutdown(
      absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(200)));
  standby_->Wait();
  standby_.reset();
  if (parts->admin_server != nullptr) {
    parts->admin_server->Shutdown(
        absl::ToChronoTime(Clock::Real()->Now() + absl::Milliseconds(200)));
    parts->admin_server->Wait();
    parts->admin_server.reset();
  }
  parts->admin->Shutdown();
  parts->admin.reset();
  parts->core->Shutdown();
  parts->core.reset();
  parts->http.reset();
}

}  // namespace controller
}  // namespace fleetcanary
