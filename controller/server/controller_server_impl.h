// Private to controller/server: the ControllerServer implementation, one
// class whose methods live in one file per concern:
// - controller_server.cc: start-up order, the domain core (store, metrics,
//   ingest, verdicts, scheduler, session hub, admin core), store health,
//   periodic jobs, drain;
// - grpc_servers.cc: the gRPC servers (main, health-only, admin-only) and
//   the listener guard that rebuilds them when accept fails;
// - http_pages.cc: /metrics, /status, /report, /readyz, /healthz;
// - standby.cc: leader election, serving as a standby until this replica
//   leads.
//
// Thread-safety: as ControllerServer; members are set up by Start() on one
// thread before any server, timer or page can run, then used as annotated.
#ifndef FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_IMPL_H_
#define FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/metrics_export.h"
#include "common/time/periodic_task.h"
#include "controller/api/admin_gate.h"
#include "controller/api/admin_service.h"
#include "controller/api/verdict_source.h"
#include "controller/leader/leader_elector.h"
#include "controller/retention/retention_job.h"
#include "controller/server/capped_listener.h"
#include "controller/server/controller_server.h"
#include "controller/server/standby_session_service.h"
#include "controller/session/agent_session_service.h"
#include "controller/session/session_hub.h"

namespace fleetcanary {
namespace controller {

// "host" of a "host:port" listen address (the whole string without a colon).
std::string HostOf(const std::string& listen);

// How often the listener guard re-checks while it reports NOT_SERVING.
inline constexpr absl::Duration kGuardRecheck = absl::Milliseconds(250);

class ControllerServerImpl : public ControllerServer {
 public:
  ControllerServerImpl(const ControllerServerOptions& options, Clock* clock);
  // Drains (2 s) and stops the timers before any member is destroyed.
  ~ControllerServerImpl() override;

  // Builds everything in order and starts serving; errors name the setting.
  // REQUIRES: called once, before any other method.
  absl::Status Start();

  std::string grpc_address() const override { return grpc_address_; }
  std::string http_address() const override {
    return http_ ? http_->address() : "";
  }
  std::string health_address() const override { return health_address_; }
  std::string admin_address() const override { return admin_address_; }
  bool store_healthy() const override;
  Scheduler* scheduler() override { return scheduler_.get(); }
  Ingest* ingest() override { return ingest_.get(); }
  Store* store() override { return store_.get(); }
  ControllerMetrics* metrics() override { return metrics_.get(); }
  bool is_leader() override { return !elector_ || elector_->is_leader(); }
  VerdictService* verdicts() override { return verdicts_.get(); }
  AdminCore* admin() override { return admin_core_.get(); }

  void Drain(absl::Duration timeout) override;
  void Wait() override;

 private:
  // What a standby serves besides its gRPC server, kept until it leads.
  // Members are destroyed in reverse order (http first, core last).
  struct StandbyParts {
    std::unique_ptr<AdminCore> core;
    std::unique_ptr<AdminService> admin;
    std::unique_ptr<grpc::Server> admin_server;
    std::unique_ptr<MetricsHttpServer> http;
  };

  // --- Start-up steps (controller_server.cc), in the order Start() runs
  // them. Each returns the first error, naming the setting.
  // Defaults for grpc_listen and data_dir; creates data_dir.
  absl::Status PrepareDataDir();
  // retention_ from the config's durations and row limit.
  void SetRetentionFromConfig();
  // Opens the store (store_url, else <data_dir>/controller.db), creates the
  // metrics and, with leader election, waits as a standby until leading.
  absl::Status OpenStoreAndLead();
  // Restores the metrics from the store, builds ingest (its commits feed
  // the store health), verdicts and the scheduler.
  absl::Status BuildCore();
  // Makes the stored fleet exactly the fleet file's (when one is given).
  absl::Status ApplyFleetFile();
  // Agent counts, regions without agents and configured streams in the
  // metrics come from the scheduler.
  void ConnectSchedulerMetrics();
  // The session hub over ingest and the scheduler, and auth_ for sessions.
  absl::Status BuildSessions();
  // Loads the admin tokens (once) and sets admin_gate_.
  absl::Status LoadAdminAuth();
  // The admin core over the live objects, wired to the hub and ingest.
  absl::Status StartAdmin();
  // Retention pruning and the store check timer.
  absl::Status StartPeriodicJobs();
  void LogStarted();

  // --- Store health (controller_server.cc).
  // Records what the store last did (a commit or a ping): readiness and
  // fleetcanary_store_up follow it; transitions are logged.
  void SetStoreStatus(const absl::Status& status, const char* source);
  // Both health services say SERVING only while the store answers, the
  // listeners accept and the controller is not draining. A rebuilt server
  // starts SERVING, so the guard calls this again after a rebuild.
  void UpdateServing();
  // One store check, every store_check_interval until the drain starts.
  void StoreCheck();

  // --- gRPC servers and the listener guard (grpc_servers.cc).
  // Raises the fd limit, sets up gRPC globals and credentials, and starts
  // the main, health-only and admin-only servers; then the listener guard.
  absl::Status StartGrpc();
  void StartListenerGuard();
  // The cap on the main listener: `configured`, or (0) three quarters of the
  // descriptor limit, so the cap is reached before descriptors run out.
  int MaxConnections(int configured) const;
  // (Re)builds the main gRPC server on `listen` with fresh service adapters
  // over the same core objects, hardened (docs/hardening.md).
  absl::Status BuildMainServer(const std::string& listen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_);
  // Health only: a server with no services of ours gets just the default
  // health service.
  absl::Status BuildHealthServer(const std::string& listen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_);
  // The admin API alone on admin_listen (BuildAdminOnlyServer).
  absl::Status StartAdminServer();
  // A server on admin_listen serving `service` (and health): server-side
  // TLS with the controller's certificate and no client certificate
  // requested (bearer tokens authenticate), or plaintext with --insecure.
  // Sets admin_address_ and keeps the bound port in options_.admin_listen (a
  // standby's port stays the leader's).
  absl::StatusOr<std::unique_ptr<grpc::Server>> BuildAdminOnlyServer(
      grpc::Service* service);
  // The listener guard: the health services say NOT_SERVING while the
  // process is short of file descriptors or a listener failed to accept,
  // and a failed listener is rebuilt on the same port once descriptors are
  // free again (half-open connections end at the handshake timeout). One
  // check every self_check_interval while healthy, every kGuardRecheck while
  // not, until the drain starts.
  void GuardCheck();
  // The listener guard's view, one input of what the health services say.
  void SetServing(bool serving);
  absl::Status RebuildListenersLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(listener_mu_);

  // --- HTTP (http_pages.cc).
  // /metrics (controller and process), /status, /report, /readyz and
  // /healthz on http_listen; nothing when it is empty.
  absl::Status StartHttp();
  // The status page: verdicts, charts and agents, rendered on request.
  HttpPage StatusPage();
  // The incident evidence report (see report_page.h).
  HttpPage ReportPage(const std::string& query);
  // GET /readyz: 200 while the store accepts writes and the controller is
  // not draining, 503 otherwise (with the reason).
  HttpPage ReadyPage();

  // --- Standby (standby.cc).
  // Serves as a standby (health NOT_SERVING, sessions refused with the
  // leader's address, /metrics) until this replica holds the lease, then
  // frees the listeners for the full start.
  absl::Status RunStandbyUntilLeader();
  // replica_id (default hostname-pid), lease and on_lost; no address yet.
  LeaderElectorOptions StandbyElectorOptions() const;
  // The standby's admin API: reads from the shared store, changes and
  // probes refused with the leader's address.
  absl::Status BuildStandbyAdmin(StandbyParts* parts);
  // Binds grpc_listen (keeping the bound port in the config) and serves
  // sessions refused and the standby admin API; `bound` is host:port.
  absl::Status StartStandbyGrpc(
      const std::shared_ptr<grpc::ServerCredentials>& credentials,
      StandbyParts* parts, std::string* bound);
  // /metrics, /status (from the store), /healthz and /readyz (503).
  absl::Status StartStandbyHttp(StandbyParts* parts);
  // Stops the standby's servers and admin API, freeing the listeners.
  void StopStandby(StandbyParts* parts);

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

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SERVER_CONTROLLER_SERVER_IMPL_H_
