// fleetcanary-agent: flags → options → BuildAndStart() → wait for
// SIGTERM/SIGINT → drain (flush the outbox to the controller).
#include <signal.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
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

int Fail(const absl::Status& status) {
  fleetcanary::LogError("agent_failed", {{"error", status.ToString()}});
  std::fprintf(stderr, "fleetcanary-agent: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  fleetcanary::ParseDaemonFlags(
      argc, argv, "fleetcanary-agent",
      "fleetcanary-agent --config=agent.yaml | --agent_id=a --region=r "
      "--controller=host:port --data_dir=dir");

  sigset_t signals = fleetcanary::BlockStopSignals();

  fleetcanary::agent::AgentAppOptions options;
  fleetcanary::v1::AgentConfig& c = options.config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::Status s = fleetcanary::LoadYamlFile(absl::GetFlag(FLAGS_config), &c);
    if (!s.ok()) return Fail(s);
  }
  using fleetcanary::OverrideFromFlag;
  OverrideFromFlag(absl::GetFlag(FLAGS_agent_id), c.mutable_agent_id());
  OverrideFromFlag(absl::GetFlag(FLAGS_region), c.mutable_region());
  OverrideFromFlag(absl::GetFlag(FLAGS_controller),
                   c.mutable_controller_address());
  OverrideFromFlag(absl::GetFlag(FLAGS_data_dir), c.mutable_data_dir());
  const std::string http = absl::GetFlag(FLAGS_http_listen);
  if (http == "off") {
    c.clear_metrics_listen();
  } else if (!http.empty()) {
    c.set_metrics_listen(http);
  } else if (c.metrics_listen().empty()) {
    c.set_metrics_listen("127.0.0.1:0");
  }
  if (!absl::GetFlag(FLAGS_outbox_max_bytes).empty()) {
    auto b = fleetcanary::ParseBytes(absl::GetFlag(FLAGS_outbox_max_bytes));
    if (!b.ok()) return Fail(b.status());
    c.set_outbox_max_bytes(*b);
  }
  for (absl::Status s :
       {OverrideFromFlag(absl::GetFlag(FLAGS_heartbeat_interval),
                         "heartbeat_interval", c.mutable_heartbeat_interval()),
        OverrideFromFlag(absl::GetFlag(FLAGS_reconnect_min), "reconnect_min",
                         c.mutable_reconnect_min()),
        OverrideFromFlag(absl::GetFlag(FLAGS_reconnect_max), "reconnect_max",
                         c.mutable_reconnect_max())}) {
    if (!s.ok()) return Fail(s);
  }
  for (const std::string& h : absl::GetFlag(FLAGS_target_allow_hosts)) {
    if (!h.empty()) c.add_target_allow_hosts(h);
  }
  if (absl::GetFlag(FLAGS_target_allow_loopback)) {
    c.set_target_allow_loopback(true);
  }
  if (absl::Status s = fleetcanary::ValidateMessage(c); !s.ok()) return Fail(s);
  options.tls.insecure = absl::GetFlag(FLAGS_insecure);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.ca_file = absl::GetFlag(FLAGS_ca);
  options.tls.server_name_override = absl::GetFlag(FLAGS_server_name);
  if (options.tls.insecure &&
      (!options.tls.cert_file.empty() || !options.tls.ca_file.empty())) {
    return Fail(absl::InvalidArgumentError(
        "--insecure (plaintext) contradicts --tls_cert/--ca"));
  }
  options.outcome_journal = absl::GetFlag(FLAGS_outcome_journal);
  options.seed = absl::GetFlag(FLAGS_seed);
  if (options.seed == 0) {
    // Fresh per process: probe ids and payload seeds never repeat across
    // restarts of the same agent (--seed pins them for reproduction).
    std::random_device entropy;
    options.seed = (std::hash<std::string>()(c.agent_id()) ^
                    (static_cast<uint64_t>(entropy()) << 32) ^ entropy()) |
                   1;
  }
  auto drain_timeout =
      fleetcanary::ParseDuration(absl::GetFlag(FLAGS_drain_timeout));
  if (!drain_timeout.ok()) return Fail(drain_timeout.status());

  auto app = fleetcanary::agent::AgentApp::BuildAndStart(
      options, fleetcanary::Clock::Real());
  if (!app.ok()) return Fail(app.status());
  std::printf("listening http=%s\n", (*app)->http_address().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  fleetcanary::LogInfo("signal", {{"signal", sig == SIGTERM ? "TERM" : "INT"}});
  const bool flushed = (*app)->Drain(*drain_timeout);
  app->reset();
  return flushed ? 0 : 3;
}
