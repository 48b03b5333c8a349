// The fleet's own binaries, started the way the end-to-end tests need them:
// the function-url-emulator (its endpoint lines, and a fleet file for what it
// serves), fleetcanary-controller and fleetcanary-agent on loopback with
// short periods, each waited for until it announced itself. Also a scratch
// directory per test and files in it.
//
// Every start returns an error status (the test asserts on it) instead of
// failing the test itself; a process that was started is killed when its
// Process is destroyed.
//
// Thread-safety: use from the test's thread.
#ifndef FLEETCANARY_TESTS_INTEGRATION_BINARIES_H_
#define FLEETCANARY_TESTS_INTEGRATION_BINARIES_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace testing {

// Paths of the binaries under the build directory (for BinaryPath).
inline constexpr char kEmulatorBinary[] = "emulator/function-url-emulator";
inline constexpr char kControllerBinary[] =
    "controller/server/fleetcanary-controller";
inline constexpr char kAgentBinary[] = "agent/fleetcanary-agent";

// <TempDir>/<name>, emptied and created.
std::string FreshDir(const std::string& name);
// Writes `text` to `dir`/`name` and returns that path.
std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& text);
// The whole file at `path` ("" when it cannot be read).
std::string ReadFile(const std::string& path);

// A fixture with a scratch directory dir_ for the test's files and the logs
// of the processes it starts: <TempDir>/<prefix>_<pid>, and _<test name>
// after that with `per_test`; fresh for each test, removed after a test that
// passed and kept after one that failed. A subclass that stops processes in
// TearDown does so before calling ScratchDirTest::TearDown().
class ScratchDirTest : public ::testing::Test {
 protected:
  explicit ScratchDirTest(std::string prefix, bool per_test = false)
      : prefix_(std::move(prefix)), per_test_(per_test) {}
  void SetUp() override;
  void TearDown() override;

  // Writes `text` to dir_/`name` and returns that path.
  std::string Write(const std::string& name, const std::string& text) const;

  std::string dir_;

 private:
  const std::string prefix_;
  const bool per_test_;
};

// An emulator config: the `regions` (each followed by `region_yaml`, lines
// indented under the region), listening on 127.0.0.1 with one-second
// platform metrics and a one-second ingestion delay, then `extra_yaml`.
std::string EmulatorYaml(const std::vector<std::string>& regions,
                         const std::string& region_yaml = "",
                         const std::string& extra_yaml = "");

// What a fleet file built from the emulator's endpoints adds to each URL.
struct FleetUrlOptions {
  std::string role_arn;   // The target's role_arn ("" = none).
  bool iam_auth = false;  // "auth: AWS_IAM" on every URL.
};

// The function-url-emulator binary, started and ready.
struct EmulatorProcess {
  std::unique_ptr<Process> process;
  // What it printed before "ready": one line per endpoint, "url ...",
  // "cloudwatch ...", "control ...", "sts ...".
  std::vector<std::string> lines;

  // url= of the first line of `kind` ("sts", "control", "cloudwatch"); ""
  // when there is none.
  std::string Url(const std::string& kind) const;
  // url= of each region's "cloudwatch" line, by region.
  std::map<std::string, std::string> CloudWatchUrls() const;
  // The control endpoint as host:port, for HttpGet.
  std::string ControlAddress() const;
  // A fleet file with one target "canary" probing, in each of `regions`,
  // every URL the emulator serves there (with its CloudWatch identity at
  // the region's endpoint), followed by `schedules_yaml` ("schedules:" on).
  std::string CanaryFleetYaml(const std::vector<std::string>& regions,
                              const std::string& schedules_yaml,
                              const FleetUrlOptions& options = {}) const;
};

// Starts the emulator binary with --config=`config` (and
// --scenario=`scenario` unless empty), stderr to `log`; each line until
// "ready" must come within `line_timeout`.
absl::StatusOr<EmulatorProcess> StartEmulatorBinary(
    const std::string& config, const std::string& scenario,
    const std::string& log, absl::Duration line_timeout);

// Controller config settings: one-second heartbeats and metrics, 3 s settle.
inline constexpr char kFastControllerYaml[] =
    "heartbeat_interval: 1s\nmetrics_period: 1s\nmetrics_settle: 3s\n";
// The demo's detection settings (a false alarm a month, 0.1 % floor, 5 s
// comparison buckets, 10 s trend window).
inline constexpr char kDemoDetectionYaml[] =
    "detection:\n  false_alarms_per_month: 1\n  p0_floor: 0.001\n"
    "  comparison_bucket: 5s\n  trend_window: 10s\n";

// An agent config: `id` in `region`, dialing `controller` (plaintext), its
// state in `data_dir`, one-second platform metrics polled every second (2 s
// ingestion delay; read unsigned when `cloudwatch_unsigned`), one-second
// heartbeats, loopback targets allowed.
std::string AgentYaml(const std::string& id, const std::string& region,
                      const std::string& controller,
                      const std::string& data_dir, bool cloudwatch_unsigned);

// A daemon that printed its "listening ..." line.
struct ListeningProcess {
  std::unique_ptr<Process> process;
  std::string line;  // The whole line (other fields: FieldOf).
  std::string grpc;  // grpc= of that line ("" when absent).
  std::string http;  // http= of that line.
};

// Spawns the program at `path` (e.g. BinaryPath(kControllerBinary)) with
// `args`, stderr to `log`, and waits up to `timeout` for its "listening "
// line.
absl::StatusOr<ListeningProcess> StartListening(
    const std::string& path, const std::vector<std::string>& args,
    const std::string& log, absl::Duration timeout);

// The controller binary with `flags` and then those of a plaintext
// controller on loopback (gRPC on `grpc_port`, 0 = any; HTTP on any port)
// with its state in `data_dir`, one-second heartbeats and loopback targets
// allowed; see StartListening.
absl::StatusOr<ListeningProcess> StartLoopbackController(
    const std::vector<std::string>& flags, const std::string& data_dir,
    int grpc_port, const std::string& log, absl::Duration timeout);

// The agent binary with --config=`config`, plaintext, its HTTP on any
// loopback port; see StartListening.
absl::StatusOr<ListeningProcess> StartAgentBinary(const std::string& config,
                                                  const std::string& log,
                                                  absl::Duration timeout);

// Runs the canaryctl binary with `args` through /bin/sh: stdout to `out`,
// stderr to `out`.stderr, stdin from `in` unless empty. Returns its exit
// code (-1, failing the test, when it cannot start or does not finish
// within 60 s). With `keep`, does not wait: the running process goes to
// *keep and 0 is returned.
int RunCanaryctl(const std::vector<std::string>& args, const std::string& out,
                 std::unique_ptr<Process>* keep = nullptr,
                 const std::string& in = "");

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_INTEGRATION_BINARIES_H_
