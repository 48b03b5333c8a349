// `canaryctl probe --direct`: runs the agent's probe engine from this machine
// against a BUFFERED and/or RESPONSE_STREAM URL over a ladder of body sizes,
// interleaving modes and sizes so they are concurrent controls, then prints
// one row per mode x size (or a RunProbeEvent.Done as JSON).
//
// Thread-safety: one run at a time per CliContext.
#ifndef FLEETCANARY_CLI_COMMANDS_PROBE_DIRECT_H_
#define FLEETCANARY_CLI_COMMANDS_PROBE_DIRECT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "cli/commands/command.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace cli {

struct ProbeDirectOptions {
  // (mode, Function URL base) pairs; at least one.
  std::vector<std::pair<v1::InvokeMode, std::string>> urls;
  std::vector<uint64_t> sizes;
  // Probes per mode x size.
  uint32_t count = 10;
  // Most probes in flight at once.
  uint32_t concurrency = 8;
  // Probes per second over the whole run; 0 = as fast as concurrency allows.
  double rate = 0;
  v1::AuthType auth = v1::NONE;
  // Signing region when the host is not a Function URL host; summary label.
  std::string region;
  uint64_t chunk_bytes = 0;
  absl::Duration chunk_gap = absl::ZeroDuration();
  v1::ProbeLimits limits;
  v1::TransportOptions transport;
  // Exit 2 when any mode x size error rate is above this.
  double max_error_rate = 0;
  bool json = false;
  bool progress = false;  // Force the progress bar even if stderr is no TTY.
  // Also write every outcome as JSON Lines here ("" = don't).
  std::string outcomes_path;
  // Seed for probe ids and body seeds; 0 = random.
  uint64_t seed = 0;
};

// Runs the probes and prints the results. Returns kExitOk, kExitCheckFailed
// (an error rate above max_error_rate), kExitUsage (bad options) or
// kExitUnavailable (nothing could be measured: every probe was AGENT_ERROR).
int RunProbeDirect(const ProbeDirectOptions& options, CliContext* ctx);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_PROBE_DIRECT_H_
