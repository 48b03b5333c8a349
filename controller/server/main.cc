// fleetcanary-controller: flags → options → BuildAndStart() → wait for
// SIGTERM/SIGINT → drain.
//
// fleetcanary-controller migrate --from=URL --to=URL copies a store (e.g.
// SQLite to PostgreSQL) and exits.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/config/loader.h"
#include "common/flags/daemon_flags.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "common/units/units.h"
#include "controller/server/controller_server.h"

ABSL_FLAG(std::string, config, "",
          "Controller settings (YAML, fleetcanary.v1.ControllerConfig).");
ABSL_FLAG(std::string, fleet, "",
          "Targets and schedules (YAML, fleetcanary.v1.FleetConfig), "
          "declarative: at every start the stored fleet becomes exactly the "
          "file's (schedules it no longer names are deleted); overrides the "
          "config's fleet_file.");
ABSL_FLAG(std::string, grpc_listen, "",
          "gRPC listen address (default from config, else 127.0.0.1:0).");
ABSL_FLAG(std::string, http_listen, "",
          "/metrics listen address (default from config, else 127.0.0.1:0).");
ABSL_FLAG(std::string, data_dir, "",
          "Directory of controller.db (default from config, else .).");
ABSL_FLAG(std::string, store, "",
          "Store URL: postgresql://user[:password]@host:port/db (several "
          "replicas share one database) or sqlite:///path.db. Default: "
          "SQLite at <data_dir>/controller.db. The password may also come "
          "from PGPASSWORD or ~/.pgpass.");
ABSL_FLAG(bool, leader_election, false,
          "Several replicas on one PostgreSQL store: run as a standby until "
          "this replica holds the leader lease (default: on with a "
          "postgresql:// --store).");
ABSL_FLAG(std::string, replica_id, "",
          "This replica's name in the leader lease (default hostname-pid).");
ABSL_FLAG(std::string, advertise_address, "",
          "host:port agents use to reach this replica, told to agents that "
          "reach a standby (default: the bound --grpc_listen).");
ABSL_FLAG(std::string, leader_lease, "10s",
          "Leader lease: a dead leader is replaced within about this long.");
ABSL_FLAG(std::string, from, "", "migrate: source store URL.");
ABSL_FLAG(std::string, to, "",
          "migrate: destination store URL (an empty database).");
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
ABSL_FLAG(std::string, admin_listen, "",
          "Optional listener for the admin API (canaryctl) alone, e.g. "
          "0.0.0.0:7445: server-side TLS with --tls_cert/--tls_key, no client "
          "certificate asked for, bearer tokens from --admin_tokens. When "
          "set, --grpc_listen serves agent sessions only.");
ABSL_FLAG(std::string, store_check_interval, "10s",
          "How often the store is checked for writes; while it fails the "
          "health service is NOT_SERVING and /readyz answers 503.");
ABSL_FLAG(std::string, forget_drained_after, "1h",
          "How long an agent that shut down cleanly (goodbye, state "
          "DRAINED) stays listed before it is forgotten.");
ABSL_FLAG(std::vector<std::string>, target_allow_hosts, {},
          "Extra hosts (names or IP literals) that ad-hoc RunProbe URLs may "
          "name, comma-separated; hosts of registered targets and "
          "*.lambda-url.*.on.aws are always allowed.");
ABSL_FLAG(bool, target_allow_loopback, false,
          "Let targets (fleet file, ApplySchedules) and ad-hoc RunProbe URLs "
          "name loopback addresses (local demo with the "
          "function-url-emulator).");
ABSL_FLAG(bool, target_allow_private, false,
          "Let targets and ad-hoc URLs name private addresses (10/8, "
          "172.16/12, 192.168/16, 100.64/10, fc00::/7).");
ABSL_FLAG(std::vector<std::string>, target_allow_networks, {},
          "Networks (CIDR, comma-separated) targets and ad-hoc URLs may name "
          "even inside a refused range, e.g. 10.20.0.0/16 for a deliberate "
          "private target.");
ABSL_FLAG(std::string, agent_id_pattern, "",
          "Agent ids a client certificate may claim besides its own name: a "
          "regular expression matched against the whole id, {cert} standing "
          "for the certificate's name (e.g. '{cert}-[a-z0-9]+-[a-z0-9]{5}' "
          "for the pods of a Deployment). Empty: exactly the name.");
ABSL_FLAG(std::string, grpc_handshake_timeout, "5s",
          "A gRPC connection must finish its TLS/HTTP2 handshake within this.");
ABSL_FLAG(std::string, grpc_max_connection_idle, "5m",
          "gRPC connections without a call for this long are closed.");
ABSL_FLAG(uint64_t, adhoc_max_probes, 10000,
          "Most probes one ad-hoc RunProbe may ask for (count x modes x sizes "
          "x regions).");
ABSL_FLAG(int, grpc_max_threads, 64, "Most threads serving gRPC.");
ABSL_FLAG(int, grpc_memory_mib, 512,
          "Memory the gRPC transport may use for agent connections (buffers "
          "and HTTP/2 windows; ingest's pending outcomes are bounded "
          "separately). At least 16.");
ABSL_FLAG(int64_t, ingest_max_pending_outcomes, 100000,
          "Outcomes read but not yet committed at which ingest saturates and "
          "the agents' streams stop being read (flow control); each takes "
          "about 2 KiB. At least 1000.");
ABSL_FLAG(int, grpc_max_message_bytes, 4 << 20,
          "Largest gRPC message accepted (agent batches are <= 1 MiB).");
ABSL_FLAG(uint64_t, max_unexplained_sequence_gap, 1000,
          "An outcome batch may skip this many sequence numbers beyond the "
          "agent's reported dropped count; a larger jump (a forged or corrupt "
          "batch) is refused and the agent's watermark kept.");
ABSL_FLAG(int, grpc_max_connections, 0,
          "Open gRPC connections at most; more are closed at once (counted "
          "in fleetcanary_grpc_connections_refused_total). 0 = three "
          "quarters of the file-descriptor limit.");
ABSL_FLAG(int, admin_max_connections, 256,
          "Open connections at most on --admin_listen.");
ABSL_FLAG(int, admin_max_message_bytes, 1 << 20,
          "Largest admin API (canaryctl) request accepted; its bearer token "
          "is checked before the request is read.");

namespace fleetcanary {
namespace controller {
namespace {

// What `fleetcanary-controller` (no command) runs.
struct ControllerRun {
  ControllerServerOptions options;
  // Longest graceful drain on SIGTERM/SIGINT (--drain_timeout).
  absl::Duration drain_timeout;
};

// --config, the listeners, --data_dir, --heartbeat_interval and the fleet
// file.
absl::Status ConfigFromFlags(ControllerServerOptions* options) {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (!config_path.empty()) {
    FC_RETURN_IF_ERROR(LoadYamlFile(config_path, &options->config));
  }
  v1::ControllerConfig& c = options->config;
  OverrideFromFlag(absl::GetFlag(FLAGS_grpc_listen), c.mutable_grpc_listen());
  OverrideFromFlag(absl::GetFlag(FLAGS_http_listen), c.mutable_http_listen());
  if (c.http_listen().empty()) c.set_http_listen("127.0.0.1:0");
  OverrideFromFlag(absl::GetFlag(FLAGS_data_dir), c.mutable_data_dir());
  // Only when given: an unset heartbeat_interval stays absent.
  if (!absl::GetFlag(FLAGS_heartbeat_interval).empty()) {
    FC_RETURN_IF_ERROR(OverrideFromFlag(absl::GetFlag(FLAGS_heartbeat_interval),
                                        "heartbeat_interval",
                                        c.mutable_heartbeat_interval()));
  }
  std::string fleet_path = absl::GetFlag(FLAGS_fleet);
  if (fleet_path.empty()) fleet_path = c.fleet_file();
  if (!fleet_path.empty()) {
    FC_RETURN_IF_ERROR(LoadYamlFile(fleet_path, &options->fleet));
  }
  return absl::OkStatus();
}

// --store and leader election.
absl::Status StoreFromFlags(ControllerServerOptions* options) {
  options->store_url = absl::GetFlag(FLAGS_store);
  options->leader_election =
      absl::GetFlag(FLAGS_leader_election) ||
      options->store_url.rfind("postgresql://", 0) == 0 ||
      options->store_url.rfind("postgres://", 0) == 0;
  options->replica_id = absl::GetFlag(FLAGS_replica_id);
  options->advertise_address = absl::GetFlag(FLAGS_advertise_address);
  FC_ASSIGN_OR_RETURN(options->leader_lease,
                      ParseDuration(absl::GetFlag(FLAGS_leader_lease)));
  // Crash-only demotion: a replica that lost the lease exits at once
  // (nothing unacknowledged is lost: agents keep it) and is restarted as a
  // standby.
  options->leader_on_lost = [] {
    LogError("controller_exit", {{"reason", "leadership lost"}});
    std::fflush(stderr);
    std::_Exit(75);
  };
  return absl::OkStatus();
}

// Admin tokens and the gRPC transport (TLS, mTLS or --insecure).
absl::Status TlsFromFlags(ControllerServerOptions* options) {
  options->admin_tokens_file = absl::GetFlag(FLAGS_admin_tokens);
  options->admin_allow_all = absl::GetFlag(FLAGS_insecure);
  TlsOptions& tls = options->tls;
  tls.insecure = absl::GetFlag(FLAGS_insecure);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.ca_file = absl::GetFlag(FLAGS_client_ca);
  if (!tls.insecure && (tls.cert_file.empty() || tls.key_file.empty())) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key are required (gRPC is served over TLS); "
        "pass --insecure for plaintext on a trusted machine");
  }
  if (tls.insecure && (!tls.cert_file.empty() || !tls.ca_file.empty())) {
    return absl::InvalidArgumentError(
        "--insecure (plaintext) contradicts --tls_cert/--client_ca");
  }
  return absl::OkStatus();
}

// Regions, the extra listeners, the store check, forgetting drained agents
// and the target guard.
absl::Status AdmissionFromFlags(ControllerServerOptions* options) {
  for (const std::string& r : absl::GetFlag(FLAGS_allowed_regions)) {
    if (!r.empty()) options->allowed_regions.push_back(r);
  }
  options->health_listen = absl::GetFlag(FLAGS_health_listen);
  options->admin_listen = absl::GetFlag(FLAGS_admin_listen);
  auto store_check = ParseDuration(absl::GetFlag(FLAGS_store_check_interval));
  if (!store_check.ok() || *store_check <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--store_check_interval: not a positive duration (e.g. 10s)");
  }
  options->store_check_interval = *store_check;
  auto forget_drained =
      ParseDuration(absl::GetFlag(FLAGS_forget_drained_after));
  if (!forget_drained.ok() || *forget_drained < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--forget_drained_after: not a duration (e.g. 1h)");
  }
  options->forget_drained_after = *forget_drained;
  TargetGuardOptions& guard = options->target_guard;
  guard.allowed_hosts = absl::GetFlag(FLAGS_target_allow_hosts);
  guard.allow_loopback = absl::GetFlag(FLAGS_target_allow_loopback);
  guard.allow_private = absl::GetFlag(FLAGS_target_allow_private);
  guard.allowed_networks = absl::GetFlag(FLAGS_target_allow_networks);
  return absl::OkStatus();
}

// Hardening: agent ids, handshake and idle timeouts, threads, message sizes,
// connection caps, sequence gaps.
absl::Status LimitsFromFlags(ControllerServerOptions* options) {
  options->agent_id_pattern = absl::GetFlag(FLAGS_agent_id_pattern);
  FC_ASSIGN_OR_RETURN(
      options->handshake_timeout,
      ParseDuration(absl::GetFlag(FLAGS_grpc_handshake_timeout)));
  FC_ASSIGN_OR_RETURN(
      options->max_connection_idle,
      ParseDuration(absl::GetFlag(FLAGS_grpc_max_connection_idle)));
  options->max_threads = absl::GetFlag(FLAGS_grpc_max_threads);
  options->adhoc_max_probes = absl::GetFlag(FLAGS_adhoc_max_probes);
  options->max_message_bytes = absl::GetFlag(FLAGS_grpc_max_message_bytes);
  const int memory_mib = absl::GetFlag(FLAGS_grpc_memory_mib);
  if (memory_mib < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc_memory_mib: ", memory_mib, " is below 16"));
  }
  options->grpc_memory_bytes = int64_t{memory_mib} << 20;
  options->admin_max_message_bytes =
      absl::GetFlag(FLAGS_admin_max_message_bytes);
  options->max_connections = absl::GetFlag(FLAGS_grpc_max_connections);
  options->admin_max_connections = absl::GetFlag(FLAGS_admin_max_connections);
  if (options->max_connections < 0 || options->admin_max_connections <= 0) {
    return absl::InvalidArgumentError(
        "grpc_max_connections / admin_max_connections: must be positive "
        "(0 = automatic for grpc_max_connections)");
  }
  options->ingest.max_unexplained_gap =
      absl::GetFlag(FLAGS_max_unexplained_sequence_gap);
  options->ingest.max_queued_outcomes =
      absl::GetFlag(FLAGS_ingest_max_pending_outcomes);
  if (options->ingest.max_queued_outcomes < 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ingest_max_pending_outcomes: ", options->ingest.max_queued_outcomes,
        " is below 1000"));
  }
  if (options->admin_max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        "admin_max_message_bytes: must be positive");
  }
  return absl::OkStatus();
}

// The controller's settings: --config with the flags over it, the fleet
// file, TLS, listeners and limits; errors name the flag or file.
absl::StatusOr<ControllerRun> ControllerRunFromFlags() {
  ControllerRun run;
  ControllerServerOptions& options = run.options;
  FC_RETURN_IF_ERROR(ConfigFromFlags(&options));
  FC_RETURN_IF_ERROR(StoreFromFlags(&options));
  FC_RETURN_IF_ERROR(TlsFromFlags(&options));
  FC_RETURN_IF_ERROR(AdmissionFromFlags(&options));
  FC_ASSIGN_OR_RETURN(run.drain_timeout,
                      ParseDuration(absl::GetFlag(FLAGS_drain_timeout)));
  FC_RETURN_IF_ERROR(LimitsFromFlags(&options));
  if (options.tls.insecure && !options.admin_tokens_file.empty()) {
    LogWarning("admin_tokens_over_plaintext",
               {{"reason",
                 "--insecure with --admin_tokens: bearer tokens cross the "
                 "network in clear text; use TLS outside a trusted machine"}});
  }
  return run;
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary

namespace {

using fleetcanary::controller::ControllerRun;
using fleetcanary::controller::ControllerRunFromFlags;
using fleetcanary::controller::ControllerServer;

int Fail(const absl::Status& status) {
  fleetcanary::LogError("controller_failed", {{"error", status.ToString()}});
  std::fprintf(stderr, "fleetcanary-controller: %s\n",
               status.ToString().c_str());
  return 1;
}

// `migrate`: copies --from into --to.
int Migrate() {
  using fleetcanary::controller::OpenStore;
  using fleetcanary::controller::RedactStoreUrl;
  const std::string from = absl::GetFlag(FLAGS_from);
  const std::string to = absl::GetFlag(FLAGS_to);
  if (from.empty() || to.empty()) {
    return Fail(absl::InvalidArgumentError(
        "migrate: --from and --to are required (store URLs)"));
  }
  auto source = OpenStore(from, "--from");
  if (!source.ok()) return Fail(source.status());
  auto destination = OpenStore(to, "--to");
  if (!destination.ok()) return Fail(destination.status());
  auto copied =
      fleetcanary::controller::CopyStore(source->get(), destination->get());
  if (!copied.ok()) return Fail(copied.status());
  std::printf(
      "migrated %s -> %s: targets=%lld schedules=%lld agents=%lld "
      "totals=%lld minutes=%lld failures=%lld platform_samples=%lld "
      "counters=%lld verdicts=%lld detector_state=%lld\n",
      RedactStoreUrl(from).c_str(), RedactStoreUrl(to).c_str(),
      static_cast<long long>(copied->targets),
      static_cast<long long>(copied->schedules),
      static_cast<long long>(copied->agents),
      static_cast<long long>(copied->totals),
      static_cast<long long>(copied->minutes),
      static_cast<long long>(copied->failures),
      static_cast<long long>(copied->platform_samples),
      static_cast<long long>(copied->counters),
      static_cast<long long>(copied->verdicts),
      static_cast<long long>(copied->detector_states));
  return 0;
}

// The "listening ..." line tests and scripts wait for.
void PrintListening(const ControllerServer& server, const ControllerRun& run) {
  const std::string health = server.health_address();
  const std::string admin = server.admin_address();
  const fleetcanary::TlsOptions& tls = run.options.tls;
  std::printf("listening grpc=%s http=%s%s%s tls=%s\n",
              server.grpc_address().c_str(), server.http_address().c_str(),
              health.empty() ? "" : (" health=" + health).c_str(),
              admin.empty() ? "" : (" admin=" + admin).c_str(),
              tls.insecure          ? "off"
              : tls.ca_file.empty() ? "tls"
                                    : "mtls");
  std::fflush(stdout);
}

// Starts the controller and serves until SIGTERM/SIGINT (taken from the
// blocked `signals`), then drains. A standby blocks in BuildAndStart until
// it leads: signals are taken on a thread so SIGTERM ends a standby too.
int Serve(const ControllerRun& run, sigset_t signals) {
  std::atomic<bool> started{false};
  std::atomic<int> received{0};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    received = sig;
    if (!started) {
      fleetcanary::LogInfo("signal", {{"signal", "standby exit"}});
      std::_Exit(0);
    }
  });
  auto server =
      ControllerServer::BuildAndStart(run.options, fleetcanary::Clock::Real());
  started = true;
  if (!server.ok()) {
    signal_thread.detach();
    return Fail(server.status());
  }
  PrintListening(**server, run);
  signal_thread.join();
  const int sig = received;
  fleetcanary::LogInfo("signal", {{"signal", sig == SIGTERM ? "TERM" : "INT"}});
  (*server)->Drain(run.drain_timeout);
  server->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> positional = fleetcanary::ParseDaemonFlags(
      argc, argv, "fleetcanary-controller",
      "fleetcanary-controller --config=controller.yaml --fleet=fleet.yaml\n"
      "  fleetcanary-controller migrate --from=sqlite:///data/controller.db "
      "--to=postgresql://user@host:5432/fleetcanary");
  if (positional.size() > 1) {
    if (std::string(positional[1]) == "migrate" && positional.size() == 2) {
      return Migrate();
    }
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", positional[1],
                     "\" (the only command is: migrate)")));
  }
  // Signals are taken synchronously by this thread; block them everywhere.
  sigset_t signals = fleetcanary::BlockStopSignals();
  absl::StatusOr<ControllerRun> run = ControllerRunFromFlags();
  if (!run.ok()) return Fail(run.status());
  return Serve(*run, signals);
}
