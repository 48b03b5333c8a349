// function-url-emulator: a local stand-in for the canary function behind
// BUFFERED and RESPONSE_STREAM Lambda Function URLs in several regions, with
// a fault-scenario engine, ground truth of what it injected, and the
// platform's CloudWatch metrics (see docs/function-contract.md).
//
// Endpoints, all on loopback ports chosen at start (0 = ephemeral):
//  - per region, one Function URL per mode: alias "buffered" (BUFFERED) and
//    alias "stream" (RESPONSE_STREAM), serving GET /canary?bytes=N&...;
//  - per region, a CloudWatch endpoint (GetMetricData, POST /, AWS JSON 1.0
//    or the Query protocol);
//  - STS (AssumeRoleWithWebIdentity, AssumeRole), IMDSv2 and container
//    credential endpoints issuing expiring credentials that every signed
//    endpoint accepts until they expire (emulator/identity/identity.h);
//  - one control endpoint: PUT/GET /_emulator/scenario (YAML in, JSON out),
//    GET /_emulator/truth[?since=SEQ] (JSON Lines of v1.InjectedFault),
//    DELETE /_emulator/truth, GET /_emulator/urls, GET /metrics
//    (Prometheus text), GET /healthz.
//
// Example (a test):
//   EmulatorOptions options;
//   options.config.add_regions()->set_name("us-east-1");
//   FC_ASSIGN_OR_RETURN(auto emu, Emulator::Create(options, Clock::Real()));
//   std::string url = emu->url("us-east-1", v1::RESPONSE_STREAM);
//   ... GET url + "canary?bytes=1024&chunk=256&seed=7" ...
//   for (const v1::InjectedFault& f : emu->truth()) ...
//
// Thread-safety: all methods are thread-safe. Ownership: `clock` must outlive
// the emulator.
#ifndef FLEETCANARY_EMULATOR_EMULATOR_H_
#define FLEETCANARY_EMULATOR_EMULATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "emulator/identity/identity.h"
#include "emulator/server/http_server.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

inline constexpr char kDefaultFunctionName[] = "fleetcanary-canary";
inline constexpr char kBufferedAlias[] = "buffered";
inline constexpr char kStreamAlias[] = "stream";

struct EmulatorOptions {
  // Regions (default: one, us-east-1), listen host (default 127.0.0.1),
  // metrics period (default 60s), ingestion delay (default 0), shaping
  // (default on), scenario, TLS files, credentials.
  v1::EmulatorConfig config;
  int io_threads = 1;
  size_t max_connections = 20000;
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
  size_t header_limit = 16 * 1024;
  // Bound of the shared cache of generated payload blocks (0 = no cache;
  // bodies are the same bytes either way).
  size_t payload_cache_bytes = 16 * 1024 * 1024;
  // Seeds request ids (x-amzn-RequestId) and trace ids.
  uint64_t request_id_seed = 0;
  // Ports: 0 = ephemeral. When non-zero, ports are assigned consecutively
  // from base_port in the order of DescribeEndpoints().
  int base_port = 0;
};

struct UrlInfo {
  std::string region;
  v1::InvokeMode mode = v1::BUFFERED;
  std::string alias;
  std::string function_name;
  v1::AuthType auth = v1::NONE;
  std::string url;  // "http://127.0.0.1:PORT/" (https with TLS).
  int port = 0;
};

struct CloudWatchEndpoint {
  std::string region;
  std::string url;
  int port = 0;
};

class Emulator {
 public:
  virtual ~Emulator() = default;

  // Validates the options, binds every endpoint and starts serving.
  // INVALID_ARGUMENT naming the field for bad configuration.
  static absl::StatusOr<std::unique_ptr<Emulator>> Create(
      const EmulatorOptions& options, Clock* clock);

  virtual std::vector<UrlInfo> urls() const = 0;
  // The URL of `region`'s function in `mode`, or "" if none.
  virtual std::string url(absl::string_view region,
                          v1::InvokeMode mode) const = 0;
  virtual std::vector<CloudWatchEndpoint> cloudwatch_endpoints() const = 0;
  virtual std::string cloudwatch_url(absl::string_view region) const = 0;
  virtual std::string control_url() const = 0;
  // Temporary credentials: STS (Query protocol), IMDSv2 base URL, and the
  // container credentials URL (AWS_CONTAINER_CREDENTIALS_FULL_URI).
  virtual std::string sts_url() const = 0;
  virtual std::string imds_url() const = 0;
  virtual std::string container_url() const = 0;
  // The issuer of temporary credentials (tests issue short-lived ones).
  virtual CredentialIssuer* issuer() = 0;

  // One machine-readable line per endpoint, e.g.
  //   url region=us-east-1 mode=RESPONSE_STREAM alias=stream auth=NONE
  //       function=fleetcanary-canary url=http://127.0.0.1:41234/
  //   cloudwatch region=us-east-1 url=http://127.0.0.1:41240/
  //   control url=http://127.0.0.1:41250/
  //   sts url=http://127.0.0.1:41251/
  //   imds url=http://127.0.0.1:41252/
  //   container url=http://127.0.0.1:41253/v2/credentials/fleetcanary
  virtual std::vector<std::string> DescribeEndpoints() const = 0;

  // Ground truth: faults injected with sequence > `after`, oldest first.
  virtual std::vector<v1::InjectedFault> truth(uint64_t after = 0) const = 0;
  virtual void ClearTruth() = 0;

  // Replaces the scenario (timeline restarts now). INVALID_ARGUMENT on a bad
  // scenario; the old one stays.
  virtual absl::Status SetScenario(v1::Scenario scenario) = 0;
  virtual v1::Scenario scenario() const = 0;

  virtual HttpServerStats server_stats() const = 0;

  // Stops serving; idempotent. The destructor stops too.
  virtual void Stop() = 0;
};

// Loads an emulator config file (YAML of v1.EmulatorConfig) and checks it
// like Emulator::Create does; errors name file, line and field.
absl::StatusOr<v1::EmulatorConfig> LoadEmulatorConfig(const std::string& path);

// Semantic checks of a config (regions unique and named, scenario valid).
absl::Status ValidateEmulatorConfig(const v1::EmulatorConfig& config);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_EMULATOR_H_
