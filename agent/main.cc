// fleetcanary-agent: flags → options → BuildAndStart() → wait for
// SIGTERM/SIGINT → drain (flush the outbox to the controller).
#include <signal.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/agent_app.h"
#include "common/config/loader.h"
#include "common/flags/daemon_flags.h"
#include "common/log/log.h"
#include "common/units/units.h"

ABSL_FLAG(std::string, config, "",
          "Agent settings (YAML, fleetcanary.v1.AgentConfig); flags below "
          "override it.");
ABSL_FLAG(std::string, agent_id, "", "Agent id (unique in the fleet).");
ABSL_FLAG(std::string, region, "", "Region this agent probes.");
ABSL_FLAG(std::string, controller, "", "Controller gRPC address host:port.");
ABSL_FLAG(std::string, data_dir, "", "Directory of the outbox.");
ABSL_FLAG(std::string, http_listen, "",
          "/metrics listen address (default from config's metrics_listen, "
          "else 127.0.0.1:0; \"off\" disables).");
ABSL_FLAG(std::string, outbox_max_bytes, "", "Outbox bound, e.g. 256Mi.");
ABSL_FLAG(std::string, heartbeat_interval, "", "Heartbeat interval, e.g. 10s.");
ABSL_FLAG(std::string, reconnect_min, "", "Smallest reconnect backoff.");
ABSL_FLAG(std::string, reconnect_max, "", "Largest reconnect backoff.");
ABSL_FLAG(std::string, outcome_journal, "",
          "Debug/testing: append '<sequence> <probe_id> <class>' of every "
          "produced outcome to this file.");
ABSL_FLAG(uint64_t, seed, 0,
          "Random seed of probe ids and payloads (0 = fresh each start).");
ABSL_FLAG(std::string, drain_timeout, "20s",
          "Longest graceful drain (outbox flush) on SIGTERM.");
ABSL_FLAG(std::string, tls_cert, "",
          "Client certificate chain (PEM) for mutual TLS with the controller; "
          "its URI SAN spiffe://fleetcanary/agent/<region>/<name> must match "
          "--region and --agent_id (<name> or <name>-...).");
ABSL_FLAG(std::string, tls_key, "", "Client private key (PEM).");
ABSL_FLAG(std::string, ca, "",
          "CA bundle (PEM) verifying the controller's certificate "
          "(default: the system roots).");
ABSL_FLAG(std::string, server_name, "",
          "Name the controller's certificate must carry, when it differs "
          "from --controller's host.");
ABSL_FLAG(bool, insecure, false,
          "Plaintext gRPC to the controller (local demo and tests only).");
ABSL_FLAG(std::vector<std::string>, target_allow_hosts, {},
          "Hosts (names or IP literals) probes may reach besides "
          "*.lambda-url.*.on.aws, comma-separated; added to the config's "
          "target_allow_hosts. The controller cannot widen this list.");
ABSL_FLAG(bool, target_allow_loopback, false,
          "Let probes reach loopback (localhost, 127.0.0.0/8, ::1): local "
          "demo with the function-url-emulator.");

namespace {

using fleetcanary::OverrideFromFlag;

int Fail(const absl::Status& status) {
  fleetcanary::LogError("agent_failed", {{"error", status.ToString()}});
  std::fprintf(stderr, "fleetcanary-agent: %s\n", status.ToString().c_str());
  return 1;
}

// What main() runs: the app's options and how long the drain may take.
struct AgentRun {
  fleetcanary::agent::AgentAppOptions options;
  absl::Duration drain_timeout;
};

// --http_listen over the config's metrics_listen: "off" disables the port;
// neither set means 127.0.0.1:0.
void ApplyHttpListenFlag(fleetcanary::v1::AgentConfig* c) {
  const std::string http = absl::GetFlag(FLAGS_http_listen);
  if (http == "off") {
    c->clear_metrics_listen();
  } else if (!http.empty()) {
    c->set_metrics_listen(http);
  } else if (c->metrics_listen().empty()) {
    c->set_metrics_listen("127.0.0.1:0");
  }
}

// The agent's config: --config (YAML), then the flags that override it, then
// validated. The first bad file, value or field is the error.
absl::Status ConfigFromFlags(fleetcanary::v1::AgentConfig* c) {
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::Status s = fleetcanary::LoadYamlFile(absl::GetFlag(FLAGS_config), c);
    if (!s.ok()) return s;
  }
  OverrideFromFlag(absl::GetFlag(FLAGS_agent_id), c->mutable_agent_id());
  OverrideFromFlag(absl::GetFlag(FLAGS_region), c->mutable_region());
  OverrideFromFlag(absl::GetFlag(FLAGS_controller),
                   c->mutable_controller_address());
  OverrideFromFlag(absl::GetFlag(FLAGS_data_dir), c->mutable_data_dir());
  ApplyHttpListenFlag(c);
  if (!absl::GetFlag(FLAGS_outbox_max_bytes).empty()) {
    auto b = fleetcanary::ParseBytes(absl::GetFlag(FLAGS_outbox_max_bytes));
    if (!b.ok()) return b.status();
    c->set_outbox_max_bytes(*b);
  }
  for (absl::Status s :
       {OverrideFromFlag(absl::GetFlag(FLAGS_heartbeat_interval),
                         "heartbeat_interval", c->mutable_heartbeat_interval()),
        OverrideFromFlag(absl::GetFlag(FLAGS_reconnect_min), "reconnect_min",
                         c->mutable_reconnect_min()),
        OverrideFromFlag(absl::GetFlag(FLAGS_reconnect_max), "reconnect_max",
                         c->mutable_reconnect_max())}) {
    if (!s.ok()) return s;
  }
  for (const std::string& h : absl::GetFlag(FLAGS_target_allow_hosts)) {
    if (!h.empty()) c->add_target_allow_hosts(h);
  }
  if (absl::GetFlag(FLAGS_target_allow_loopback)) {
    c->set_target_allow_loopback(true);
  }
  return fleetcanary::ValidateMessage(*c);
}

// Transport to the controller. INVALID_ARGUMENT when --insecure is combined
// with a certificate or CA bundle.
absl::Status TlsFromFlags(fleetcanary::TlsOptions* tls) {
  tls->insecure = absl::GetFlag(FLAGS_insecure);
  tls->cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls->key_file = absl::GetFlag(FLAGS_tls_key);
  tls->ca_file = absl::GetFlag(FLAGS_ca);
  tls->server_name_override = absl::GetFlag(FLAGS_server_name);
  if (tls->insecure && (!tls->cert_file.empty() || !tls->ca_file.empty())) {
    return absl::InvalidArgumentError(
        "--insecure (plaintext) contradicts --tls_cert/--ca");
  }
  return absl::OkStatus();
}

// --seed, or (0) a fresh seed per process: probe ids and payload seeds never
// repeat across restarts of the same agent (--seed pins them for
// reproduction).
uint64_t SeedFromFlag(const std::string& agent_id) {
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) {
    std::random_device entropy;
    seed = (std::hash<std::string>()(agent_id) ^
            (static_cast<uint64_t>(entropy()) << 32) ^ entropy()) |
           1;
  }
  return seed;
}

// All flags -> what main() runs; the first error in flag order.
absl::StatusOr<AgentRun> RunFromFlags() {
  AgentRun run;
  fleetcanary::agent::AgentAppOptions& options = run.options;
  if (absl::Status s = ConfigFromFlags(&options.config); !s.ok()) return s;
  if (absl::Status s = TlsFromFlags(&options.tls); !s.ok()) return s;
  options.outcome_journal = absl::GetFlag(FLAGS_outcome_journal);
  options.seed = SeedFromFlag(options.config.agent_id());
  auto drain_timeout =
      fleetcanary::ParseDuration(absl::GetFlag(FLAGS_drain_timeout));
  if (!drain_timeout.ok()) return drain_timeout.status();
  run.drain_timeout = *drain_timeout;
  return run;
}

// Starts the agent, prints its HTTP address, waits for one of `signals`,
// then drains. Exit code: 0 drained with the outbox flushed, 3 not flushed,
// 1 failed to start.
int Run(const AgentRun& run, sigset_t signals) {
  auto app = fleetcanary::agent::AgentApp::BuildAndStart(
      run.options, fleetcanary::Clock::Real());
  if (!app.ok()) return Fail(app.status());
  std::printf("listening http=%s\n", (*app)->http_address().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  fleetcanary::LogInfo("signal", {{"signal", sig == SIGTERM ? "TERM" : "INT"}});
  const bool flushed = (*app)->Drain(run.drain_timeout);
  app->reset();
  return flushed ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  fleetcanary::ParseDaemonFlags(
      argc, argv, "fleetcanary-agent",
      "fleetcanary-agent --config=agent.yaml | --agent_id=a --region=r "
      "--controller=host:port --data_dir=dir");

  sigset_t signals = fleetcanary::BlockStopSignals();

  absl::StatusOr<AgentRun> run = RunFromFlags();
  if (!run.ok()) return Fail(run.status());
  return Run(*run, signals);
}
