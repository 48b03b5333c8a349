// function-url-emulator: serves the canary function behind BUFFERED and
// RESPONSE_STREAM Function URLs in several regions, with fault scenarios and
// CloudWatch metrics. Prints one line per endpoint on stdout, then "ready",
// and runs until SIGINT/SIGTERM.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/flags/daemon_flags.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "emulator/emulator.h"
#include "emulator/scenario/engine.h"

ABSL_FLAG(std::string, config, "",
          "Emulator config (YAML of v1.EmulatorConfig).");
ABSL_FLAG(std::string, regions, "",
          "Comma-separated regions (overrides the config's regions).");
ABSL_FLAG(std::string, scenario, "", "Scenario file (YAML of v1.Scenario).");
ABSL_FLAG(std::string, listen_host, "", "Address to bind (default 127.0.0.1).");
ABSL_FLAG(absl::Duration, metrics_period, absl::ZeroDuration(),
          "Platform metrics period (default 60s, or the config's).");
ABSL_FLAG(absl::Duration, ingestion_delay, absl::ZeroDuration(),
          "Delay before a metrics period is visible (default 0s).");
ABSL_FLAG(bool, no_shape_streaming, false,
          "Do not limit streams to 2 MiB/s after 6 MiB.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve HTTPS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, auth, "",
          "NONE or AWS_IAM for every region (credentials from the config or "
          "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).");
ABSL_FLAG(int, io_threads, 1, "Server I/O threads.");
ABSL_FLAG(int, max_connections, 20000, "Open connection cap.");
ABSL_FLAG(absl::Duration, read_timeout, absl::Seconds(30),
          "Longest wait for a complete request (idle keep-alive included).");
ABSL_FLAG(int, base_port, 0,
          "First port; endpoints get consecutive ports (0 = ephemeral).");
ABSL_FLAG(uint64_t, request_id_seed, 0, "Seed of request and trace ids.");
ABSL_FLAG(int, payload_cache_mib, 16,
          "Memory for generated payload blocks, shared by all connections "
          "(0 = generate every body per response).");

namespace fleetcanary {
namespace {

absl::StatusOr<emulator::EmulatorOptions> OptionsFromFlags() {
  emulator::EmulatorOptions options;
  v1::EmulatorConfig& config = options.config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    auto loaded = emulator::LoadEmulatorConfig(absl::GetFlag(FLAGS_config));
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (!absl::GetFlag(FLAGS_regions).empty()) {
    config.clear_regions();
    for (absl::string_view r :
         absl::StrSplit(absl::GetFlag(FLAGS_regions), ',', absl::SkipEmpty())) {
      config.add_regions()->set_name(std::string(r));
    }
  }
  if (!absl::GetFlag(FLAGS_scenario).empty()) {
    auto scenario = emulator::LoadScenarioFile(absl::GetFlag(FLAGS_scenario));
    if (!scenario.ok()) return scenario.status();
    *config.mutable_scenario() = *std::move(scenario);
  }
  if (!absl::GetFlag(FLAGS_listen_host).empty()) {
    config.set_listen_host(absl::GetFlag(FLAGS_listen_host));
  }
  if (absl::GetFlag(FLAGS_metrics_period) > absl::ZeroDuration()) {
    *config.mutable_metrics_period() =
        DurationToProto(absl::GetFlag(FLAGS_metrics_period));
  }
  if (absl::GetFlag(FLAGS_ingestion_delay) > absl::ZeroDuration()) {
    *config.mutable_ingestion_delay() =
        DurationToProto(absl::GetFlag(FLAGS_ingestion_delay));
  }
  if (absl::GetFlag(FLAGS_no_shape_streaming))
    config.set_shape_streaming(false);
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    config.set_tls_cert_file(absl::GetFlag(FLAGS_tls_cert));
    config.set_tls_key_file(absl::GetFlag(FLAGS_tls_key));
  }
  const std::string auth = absl::GetFlag(FLAGS_auth);
  if (!auth.empty()) {
    v1::AuthType type;
    if (!v1::AuthType_Parse(auth, &type)) {
      return absl::InvalidArgumentError("--auth: NONE or AWS_IAM");
    }
    if (config.regions().empty()) config.add_regions()->set_name("us-east-1");
    for (auto& r : *config.mutable_regions()) r.set_auth(type);
    if (type == v1::AWS_IAM && config.credentials().empty()) {
      auto creds = sigv4::CredentialsFromEnvironment();
      if (!creds.ok()) return creds.status();
      v1::EmulatorCredential* c = config.add_credentials();
      c->set_access_key_id(creds->access_key_id);
      c->set_secret_access_key(creds->secret_access_key);
      c->set_session_token(creds->session_token);
    }
  }
  options.io_threads = absl::GetFlag(FLAGS_io_threads);
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.read_timeout = absl::GetFlag(FLAGS_read_timeout);
  options.base_port = absl::GetFlag(FLAGS_base_port);
  options.request_id_seed = absl::GetFlag(FLAGS_request_id_seed);
  if (absl::GetFlag(FLAGS_payload_cache_mib) < 0) {
    return absl::InvalidArgumentError("--payload_cache_mib must be >= 0");
  }
  options.payload_cache_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_payload_cache_mib)) << 20;
  return options;
}

int Main() {
  // Many idle clients are part of the job: use every descriptor allowed.
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  signal(SIGPIPE, SIG_IGN);
  // The packaged abseil checks every Mutex acquisition for lock-order
  // cycles (a debug aid; tests keep it): several per request on the serving
  // path, so the binary turns it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "function-url-emulator: " << options.status().message()
              << "\n";
    return 2;
  }
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop_signals = BlockStopSignals();

  auto emu = emulator::Emulator::Create(*options, Clock::Real());
  if (!emu.ok()) {
    std::cerr << "function-url-emulator: " << emu.status().message() << "\n";
    return 1;
  }
  for (const std::string& line : (*emu)->DescribeEndpoints()) {
    std::cout << line << "\n";
  }
  std::cout << "ready" << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  LogInfo("emulator_stopping", {{"signal", std::to_string(sig)}});
  (*emu)->Stop();
  return 0;
}

}  // namespace
}  // namespace fleetcanary

int main(int argc, char** argv) {
  fleetcanary::ParseDaemonFlags(
      argc, argv, "function-url-emulator",
      "Local Lambda Function URL emulator with fault scenarios.\n"
      "  function-url-emulator --regions=us-east-1,eu-west-1 "
      "--scenario=emulator/scenarios/healthy.yaml");
  return fleetcanary::Main();
}
