// Child processes for integration tests: spawn a built binary (found under
// FLEETCANARY_BINARY_DIR), read its machine-readable stdout line, signal it,
// and wait for its exit with a deadline. stderr goes to a log file.
//
// Thread-safety: a Process is used from one thread.
#ifndef FLEETCANARY_TESTS_INTEGRATION_PROCESS_H_
#define FLEETCANARY_TESTS_INTEGRATION_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace testing {

class Process {
 public:
  // Starts `path` with `args` (argv[1..]); stderr is appended to `log_path`.
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(
      const std::string& path, const std::vector<std::string>& args,
      const std::string& log_path);
  // SIGKILLs and reaps the child if it still runs. A child that ended by
  // itself, unwaited and unsignalled, is reported on stderr (with its log
  // file), and one that a crash signal ended (SIGSEGV, SIGABRT, SIGBUS,
  // SIGFPE, SIGILL) fails the running test: a binary that died mid-test
  // explains whatever the test then missed.
  ~Process();

  // The first stdout line starting with `prefix`, within `timeout`.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix,
                                          absl::Duration timeout);
  // Sends `sig` (the exit that follows is the test's doing, not reported).
  void Signal(int sig);
  // Exit code (or 128+signal) once it exited, nullopt on timeout.
  std::optional<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  Process(pid_t pid, int stdout_fd, int pidfd, std::string path,
          std::string log_path)
      : pid_(pid),
        stdout_fd_(stdout_fd),
        pidfd_(pidfd),
        path_(std::move(path)),
        log_path_(std::move(log_path)) {}
  // Reports an exit nobody waited for or caused (see ~Process).
  void ReportUnexpectedExit(int code) const;
  pid_t pid_;
  int stdout_fd_;
  int pidfd_;
  const std::string path_;
  const std::string log_path_;
  std::string buffer_;
  std::optional<int> exit_code_;
  bool signalled_ = false;
};

// Path of a built binary: FLEETCANARY_BINARY_DIR/<relative>.
std::string BinaryPath(const std::string& relative);

// Value of "key=value" in a "listening ..." line ("" if absent).
std::string FieldOf(const std::string& line, const std::string& key);

// GET http://<address><path> over loopback; "" on failure.
std::string HttpGet(const std::string& address, const std::string& path);

// The value of the first sample of `metric` (exact series text, e.g.
// "fleetcanary_agent_assignments{region=\"r1\"}") in a /metrics body.
std::optional<double> MetricValue(const std::string& body,
                                  const std::string& series);

// The value of the first /metrics sample of `family` (labelled or not) whose
// line contains every string of `labels` (e.g. "region=\"us-east-1\"");
// nullopt when there is none.
std::optional<double> MetricSample(const std::string& body,
                                   const std::string& family,
                                   const std::vector<std::string>& labels);

// The sum of every such sample (0 when there is none).
double MetricSum(const std::string& body, const std::string& family,
                 const std::vector<std::string>& labels);

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_INTEGRATION_PROCESS_H_
