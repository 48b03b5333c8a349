// fleetcanary-controller: flags → options → BuildAndStart() → wait for
// SIGTERM/SIGINT → drain.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/config/loader.h"
#include "common/flags/daemon_flags.h"
#include "common/log/log.h"
#include "common/units/units.h"
#include "controller/server/controller_server.h"

ABSL_FLAG(std::string, config, "",
          "Controller settings (YAML, fleetcanary.v1.ControllerConfig).");
ABSL_FLAG(std::string, fleet, "",
          "Targets and schedules (YAML, fleetcanary.v1.FleetConfig); "
          "overrides the config's fleet_file.");
ABSL_FLAG(std::string, grpc_listen, "",
          "gRPC listen address (default from config, else 127.0.0.1:0).");
ABSL_FLAG(std::string, http_listen, "",
          "/metrics listen address (default from config, else 127.0.0.1:0).");
ABSL_FLAG(std::string, data_dir, "",
          "Directory of controller.db (default from config, else .).");
ABSL_FLAG(std::string, heartbeat_interval, "",
          "Heartbeat interval, e.g. 10s (default from config, else 10s).");
ABSL_FLAG(std::string, drain_timeout, "10s",
          "Longest graceful drain on SIGTERM.");
ABSL_FLAG(std::string, admin_tokens, "",
          "Admin API bearer tokens (YAML, fleetcanary.v1.AdminTokens). "
          "Without it the admin API refuses every call, unless --insecure.");
ABSL_FLAG(bool, insecure, false,
          "Trusted machine only (local demo, tests on loopback): plaintext "
          "gRPC, and without --admin_tokens every admin API call is allowed.");
ABSL_FLAG(std::string, tls_cert, "",
          "gRPC server certificate chain (PEM); required unless --insecure. "
          "Reloaded when it changes.");
ABSL_FLAG(std::string, tls_key, "",
          "gRPC server private key (PEM); required unless --insecure.");
ABSL_FLAG(std::string, client_ca, "",
          "CA bundle (PEM) verifying agent client certificates: mutual TLS, "
          "agents without a valid certificate are refused, and each agent's "
          "Hello must match its certificate's region.");
ABSL_FLAG(std::vector<std::string>, allowed_regions, {},
          "Regions agents may serve, comma-separated (empty = any).");
ABSL_FLAG(std::string, health_listen, "",
          "Optional plaintext listener serving only the gRPC health service "
          "(kubelet probes), e.g. 0.0.0.0:7444.");
ABSL_FLAG(std::vector<std::string>, target_allow_hosts, {},
          "Extra hosts (names or IP literals) that ad-hoc RunProbe URLs may "
          "name, comma-separated; hosts of registered targets and "
          "*.lambda-url.*.on.aws are always allowed.");
ABSL_FLAG(bool, target_allow_loopback, false,
          "Let ad-hoc RunProbe URLs reach loopback addresses (local demo "
          "with the function-url-emulator).");

namespace {

int Fail(const absl::Status& status) {
  fleetcanary::LogError("controller_failed", {{"error", status.ToString()}});
  std::fprintf(stderr, "fleetcanary-controller: %s\n",
               status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  fleetcanary::ParseDaemonFlags(
      argc, argv, "fleetcanary-controller",
      "fleetcanary-controller --config=controller.yaml --fleet=fleet.yaml");

  // Signals are taken synchronously by this thread; block them everywhere.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  fleetcanary::controller::ControllerServerOptions options;
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (!config_path.empty()) {
    absl::Status s = fleetcanary::LoadYamlFile(config_path, &options.config);
    if (!s.ok()) return Fail(s);
  }
  auto& c = options.config;
  if (!absl::GetFlag(FLAGS_grpc_listen).empty()) {
    c.set_grpc_listen(absl::GetFlag(FLAGS_grpc_listen));
  }
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    c.set_http_listen(absl::GetFlag(FLAGS_http_listen));
  }
  if (c.http_listen().empty()) c.set_http_listen("127.0.0.1:0");
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    c.set_data_dir(absl::GetFlag(FLAGS_data_dir));
  }
  if (!absl::GetFlag(FLAGS_heartbeat_interval).empty()) {
    auto d =
        fleetcanary::ParseDuration(absl::GetFlag(FLAGS_heartbeat_interval));
    if (!d.ok()) return Fail(d.status());
    c.mutable_heartbeat_interval()->set_seconds(absl::ToInt64Seconds(*d));
    c.mutable_heartbeat_interval()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(
            *d - absl::Seconds(absl::ToInt64Seconds(*d)))));
  }
  std::string fleet_path = absl::GetFlag(FLAGS_fleet);
  if (fleet_path.empty()) fleet_path = c.fleet_file();
  if (!fleet_path.empty()) {
    absl::Status s = fleetcanary::LoadYamlFile(fleet_path, &options.fleet);
    if (!s.ok()) return Fail(s);
  }
  options.admin_tokens_file = absl::GetFlag(FLAGS_admin_tokens);
  options.admin_allow_all = absl::GetFlag(FLAGS_insecure);
  options.tls.insecure = absl::GetFlag(FLAGS_insecure);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.ca_file = absl::GetFlag(FLAGS_client_ca);
  if (!options.tls.insecure &&
      (options.tls.cert_file.empty() || options.tls.key_file.empty())) {
    return Fail(absl::InvalidArgumentError(
        "--tls_cert and --tls_key are required (gRPC is served over TLS); "
        "pass --insecure for plaintext on a trusted machine"));
  }
  if (options.tls.insecure &&
      (!options.tls.cert_file.empty() || !options.tls.ca_file.empty())) {
    return Fail(absl::InvalidArgumentError(
        "--insecure (plaintext) contradicts --tls_cert/--client_ca"));
  }
  for (const std::string& r : absl::GetFlag(FLAGS_allowed_regions)) {
    if (!r.empty()) options.allowed_regions.push_back(r);
  }
  options.health_listen = absl::GetFlag(FLAGS_health_listen);
  options.target_guard.allowed_hosts = absl::GetFlag(FLAGS_target_allow_hosts);
  options.target_guard.allow_loopback =
      absl::GetFlag(FLAGS_target_allow_loopback);
  auto drain_timeout =
      fleetcanary::ParseDuration(absl::GetFlag(FLAGS_drain_timeout));
  if (!drain_timeout.ok()) return Fail(drain_timeout.status());

  auto server = fleetcanary::controller::ControllerServer::BuildAndStart(
      options, fleetcanary::Clock::Real());
  if (!server.ok()) return Fail(server.status());
  const std::string health = (*server)->health_address();
  std::printf("listening grpc=%s http=%s%s tls=%s\n",
              (*server)->grpc_address().c_str(),
              (*server)->http_address().c_str(),
              health.empty() ? "" : (" health=" + health).c_str(),
              options.tls.insecure          ? "off"
              : options.tls.ca_file.empty() ? "tls"
                                            : "mtls");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  fleetcanary::LogInfo("signal", {{"signal", sig == SIGTERM ? "TERM" : "INT"}});
  (*server)->Drain(*drain_timeout);
  server->reset();
  return 0;
}
