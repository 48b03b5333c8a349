// The controller's gRPC side: the main server (agent sessions, and the admin
// API unless it has its own listener), the health-only and admin-only
// servers, and the listener guard that rebuilds them when accept fails.
#include <grpc/support/log.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "controller/server/controller_server_impl.h"

namespace fleetcanary {
namespace controller {
namespace {

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

// Counts connections a capped listener refused.
std::function<void(uint64_t)> CountRefused(ControllerMetrics* metrics) {
  return [metrics](uint64_t n) {
    metrics->AddCounter("grpc_connections_refused_total",
                        static_cast<double>(n));
  };
}

}  // namespace

absl::Status ControllerServerImpl::StartGrpc() {
  const v1::ControllerConfig& c = options_.config;
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
  return absl::OkStatus();
}

void ControllerServerImpl::StartListenerGuard() {
  if (options_.self_check_interval <= absl::ZeroDuration()) return;
  // Ticks at most every kGuardRecheck: a full check every
  // self_check_interval while healthy, every tick while not, so SERVING
  // returns within a tick of the descriptors coming back.
  guard_ = std::make_unique<PeriodicTask>(
      clock_, std::min(options_.self_check_interval, kGuardRecheck),
      [this] { GuardCheck(); });
}

int ControllerServerImpl::MaxConnections(int configured) const {
  if (configured > 0) return configured;
  return static_cast<int>(
      std::max<uint64_t>(16, std::min<uint64_t>(fd_limit_ * 3 / 4, 1 << 20)));
}

absl::Status ControllerServerImpl::BuildMainServer(const std::string& listen) {
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
    lo.on_refused = CountRefused(metrics_.get());
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
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.handshake_timeout)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(
                                 options_.max_connection_idle)));
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 1);
  grpc::ResourceQuota quota("fleetcanary-controller");
  quota.SetMaxThreads(std::max(4, options_.max_threads));
  quota.Resize(static_cast<size_t>(options_.grpc_memory_bytes));
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
    old->Shutdown(absl::ToChronoTime(Clock::Real()->Now() + absl::Seconds(1)));
    old.reset();
    if (old_admin) old_admin->Shutdown();
  }
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::BuildHealthServer(
    const std::string& listen) {
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
      static_cast<int>(absl::ToInt64Milliseconds(options_.handshake_timeout)));
  health_server_ = health_builder.BuildAndStart();
  if (health_server_ == nullptr || health_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("health_listen: cannot bind ", listen));
  }
  health_port_ = health_port;
  return absl::OkStatus();
}

absl::Status ControllerServerImpl::StartAdminServer() {
  FC_ASSIGN_OR_RETURN(admin_server_,
                      BuildAdminOnlyServer(admin_service_.get()));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<grpc::Server>>
ControllerServerImpl::BuildAdminOnlyServer(grpc::Service* service) {
  TlsOptions tls = options_.tls;
  tls.ca_file.clear();
  FC_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(tls));
  credentials = WithAdminTokenGate(credentials, tls.insecure, admin_gate_);
  CappedListenerOptions lo;
  lo.name = "admin";
  lo.max_connections = options_.admin_max_connections;
  lo.on_refused = CountRefused(metrics_.get());
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
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.handshake_timeout)));
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

void ControllerServerImpl::GuardCheck() {
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
  const int reserve = static_cast<int>(std::max<uint64_t>(16, fd_limit_ / 20));
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
      LogError("grpc_listener_rebuild_failed", {{"error", rebuilt.ToString()}});
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

void ControllerServerImpl::SetServing(bool serving) {
  {
    absl::MutexLock lock(&health_mu_);
    listener_ok_ = serving;
  }
  UpdateServing();
}

absl::Status ControllerServerImpl::RebuildListenersLocked() {
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

}  // namespace controller
}  // namespace fleetcanary
