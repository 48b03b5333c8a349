#include "tests/integration/process.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace fleetcanary {
namespace testing {

absl::StatusOr<std::unique_ptr<Process>> Process::Spawn(
    const std::string& path, const std::vector<std::string>& args,
    const std::string& log_path) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The child starts with no blocked signals.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int rc =
      posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    return absl::InternalError(
        absl::StrCat("posix_spawn ", path, ": ", strerror(rc)));
  }
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return std::unique_ptr<Process>(
      new Process(pid, pipe_fds[0], pidfd, path, log_path));
}

Process::~Process() {
  if (!exit_code_.has_value()) {
    const std::optional<int> ended = Wait(absl::ZeroDuration());
    if (ended.has_value() && !signalled_) {
      ReportUnexpectedExit(*ended);
    } else if (!ended.has_value()) {
      kill(pid_, SIGKILL);
      Wait(absl::Seconds(10));
    }
  }
  close(stdout_fd_);
  if (pidfd_ >= 0) close(pidfd_);
}

void Process::ReportUnexpectedExit(int code) const {
  const std::string what = code > 128
                               ? absl::StrCat("signal ", code - 128, " (",
                                              strsignal(code - 128), ")")
                               : absl::StrCat("exit code ", code);
  const std::string message = absl::StrCat(
      path_, " (pid ", pid_, ") ended by itself during the test: ", what,
      "; its log: ", log_path_);
  switch (code - 128) {
    case SIGSEGV:
    case SIGABRT:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
      ADD_FAILURE() << message;
      break;
    default:
      fprintf(stderr, "note: %s\n", message.c_str());
  }
}

absl::StatusOr<std::string> Process::WaitForLine(const std::string& prefix,
                                                 absl::Duration timeout) {
  const absl::Time deadline = Clock::Real()->Now() + timeout;
  for (;;) {
    size_t nl;
    while ((nl = buffer_.find('\n')) != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.rfind(prefix, 0) == 0) return line;
    }
    const absl::Duration left = deadline - Clock::Real()->Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("no \"", prefix, "\" line from pid ", pid_));
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <=
        0) {
      continue;
    }
    char buf[4096];
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("pid ", pid_, " closed stdout before \"", prefix, "\""));
    }
    buffer_.append(buf, n);
  }
}

void Process::Signal(int sig) {
  if (exit_code_.has_value()) return;
  signalled_ = true;
  kill(pid_, sig);
}

std::optional<int> Process::Wait(absl::Duration timeout) {
  if (exit_code_.has_value()) return exit_code_;
  pollfd p{pidfd_, POLLIN, 0};
  poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

std::string BinaryPath(const std::string& relative) {
  return absl::StrCat(FLEETCANARY_BINARY_DIR, "/", relative);
}

std::string FieldOf(const std::string& line, const std::string& key) {
  for (absl::string_view part : absl::StrSplit(line, ' ')) {
    if (part.substr(0, key.size() + 1) == key + "=") {
      return std::string(part.substr(key.size() + 1));
    }
  }
  return "";
}

std::string HttpGet(const std::string& address, const std::string& path) {
  CURL* curl = curl_easy_init();
  std::string body;
  const std::string url = absl::StrCat("http://", address, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  // A bound far beyond a slow machine's need: callers treat "" as "not yet".
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* out) {
        static_cast<std::string*>(out)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  return rc == CURLE_OK ? body : "";
}

std::optional<double> MetricValue(const std::string& body,
                                  const std::string& series) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (line.substr(0, series.size()) == series &&
        line.size() > series.size() && line[series.size()] == ' ') {
      double v;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return std::nullopt;
}

namespace {

// The samples of `family` whose line contains every string of `labels`.
std::vector<double> MatchingSamples(const std::string& body,
                                    const std::string& family,
                                    const std::vector<std::string>& labels) {
  std::vector<double> values;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StartsWith(line, family) || line.size() <= family.size() ||
        (line[family.size()] != '{' && line[family.size()] != ' ')) {
      continue;
    }
    bool all = true;
    for (const std::string& l : labels) all = all && absl::StrContains(line, l);
    double v = 0;
    if (all && absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) {
      values.push_back(v);
    }
  }
  return values;
}

}  // namespace

std::optional<double> MetricSample(const std::string& body,
                                   const std::string& family,
                                   const std::vector<std::string>& labels) {
  const std::vector<double> values = MatchingSamples(body, family, labels);
  if (values.empty()) return std::nullopt;
  return values.front();
}

double MetricSum(const std::string& body, const std::string& family,
                 const std::vector<std::string>& labels) {
  double sum = 0;
  for (double v : MatchingSamples(body, family, labels)) sum += v;
  return sum;
}

}  // namespace testing
}  // namespace fleetcanary
