// The profile provider: AWS_PROFILE in the shared credentials and config
// files (static keys, role_arn + source_profile, credential_process).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <cerrno>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/aws/credentials.h"
#include "common/aws/credentials_internal.h"

extern char** environ;

namespace fleetcanary {
namespace aws {
namespace {

using credentials_internal::AssumeRoleProvider;
using credentials_internal::ParseCredentialsJson;
using credentials_internal::Prefixed;

constexpr size_t kMaxProcessOutput = 64 * 1024;

// Runs `command` with /bin/sh, returns its stdout. Bounded in time and size.
absl::StatusOr<std::string> RunProcess(const std::string& command, Clock* clock,
                                       absl::Duration timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError("credential_process: pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr,
                             const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::FailedPreconditionError(
        "credential_process: cannot start /bin/sh");
  }
  std::string out;
  bool timed_out = false, too_big = false;
  const absl::Duration deadline = clock->MonotonicNow() + timeout;
  for (;;) {
    const absl::Duration left = deadline - clock->MonotonicNow();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = poll(&p, 1,
                       static_cast<int>(std::min<int64_t>(
                           absl::ToInt64Milliseconds(left) + 1, 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
    if (out.size() > kMaxProcessOutput) {
      too_big = true;
      break;
    }
  }
  close(fds[0]);
  if (timed_out || too_big) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("credential_process: no answer within ",
                     absl::FormatDuration(timeout)));
  }
  if (too_big) {
    return absl::ResourceExhaustedError(
        "credential_process: output larger than 64 KiB");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("credential_process: exited with status ",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  return out;
}

using Ini = boost::property_tree::ptree;

absl::StatusOr<Ini> ReadIni(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " not found"));
  Ini tree;
  try {
    boost::property_tree::ini_parser::read_ini(in, tree);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile: ", path, ": ", e.what()));
  }
  return tree;
}

class ProfileProvider : public CredentialsProvider {
 public:
  explicit ProfileProvider(const ProviderOptions& o) : o_(o) {}
  std::string name() const override { return "profile"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    const std::string home = o_.env("HOME");
    std::string creds_path = o_.env("AWS_SHARED_CREDENTIALS_FILE");
    if (creds_path.empty() && !home.empty()) {
      creds_path = home + "/.aws/credentials";
    }
    std::string config_path = o_.env("AWS_CONFIG_FILE");
    if (config_path.empty() && !home.empty()) {
      config_path = home + "/.aws/config";
    }
    Ini creds, config;
    for (auto [path, tree] : {std::make_pair(&creds_path, &creds),
                              std::make_pair(&config_path, &config)}) {
      if (path->empty()) continue;
      absl::StatusOr<Ini> t = ReadIni(*path);
      if (t.ok()) {
        *tree = *std::move(t);
      } else if (t.status().code() != absl::StatusCode::kNotFound) {
        return t.status();
      }
    }
    std::string profile = o_.env("AWS_PROFILE");
    const bool explicit_profile = !profile.empty();
    if (profile.empty()) profile = "default";
    absl::StatusOr<AwsCredentials> out =
        Resolve(creds, config, profile, /*depth=*/0);
    if (!out.ok() && out.status().code() == absl::StatusCode::kNotFound &&
        explicit_profile) {
      // AWS_PROFILE naming a profile that does not exist is a mistake.
      return absl::FailedPreconditionError(out.status().message());
    }
    return out;
  }

 private:
  // The settings of `profile`: credentials file section "[p]" merged over
  // config file section "[profile p]" ("[default]" for default).
  static std::map<std::string, std::string> Settings(const Ini& creds,
                                                     const Ini& config,
                                                     const std::string& p) {
    std::map<std::string, std::string> out;
    auto take = [&](const Ini& tree, const std::string& section) {
      auto it = tree.find(section);
      if (it == tree.not_found()) return;
      for (const auto& [k, v] : it->second) {
        out[std::string(absl::StripAsciiWhitespace(k))] =
            std::string(absl::StripAsciiWhitespace(v.data()));
      }
    };
    take(config, p == "default" ? "default" : "profile " + p);
    take(creds, p);
    return out;
  }

  absl::StatusOr<AwsCredentials> Resolve(const Ini& creds, const Ini& config,
                                         const std::string& profile,
                                         int depth) {
    if (depth > 4) {
      return absl::FailedPreconditionError(
          "profile: source_profile chain deeper than 4 (a cycle?)");
    }
    const std::map<std::string, std::string> s =
        Settings(creds, config, profile);
    auto get = [&](const char* k) -> std::string {
      auto it = s.find(k);
      return it == s.end() ? "" : it->second;
    };
    if (s.empty()) {
      return absl::NotFoundError(
          absl::StrCat("profile: no profile \"", profile, "\""));
    }
    const std::string label = absl::StrCat("profile ", profile);
    if (!get("role_arn").empty() && depth == 0) {
      const std::string source = get("source_profile");
      if (source.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            label,
            ": role_arn needs source_profile (credential_source is "
            "not supported)"));
      }
      absl::StatusOr<AwsCredentials> base =
          source == profile ? StaticKeys(s, label)
                            : Resolve(creds, config, source, depth + 1);
      if (!base.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            label, ": source_profile ", source, ": ", base.status().message()));
      }
      const sigv4::Credentials keys = base->keys;
      AssumeRoleProvider assume(
          o_, [keys]() -> absl::StatusOr<sigv4::Credentials> { return keys; },
          get("role_arn"), label);
      return assume.Fetch();
    }
    if (!get("credential_process").empty()) {
      absl::StatusOr<std::string> out =
          RunProcess(get("credential_process"), o_.clock, o_.process_timeout);
      if (!out.ok()) return Prefixed(label, out.status());
      absl::StatusOr<AwsCredentials> c = ParseCredentialsJson(
          absl::StrCat(label, ": credential_process"), *out, o_.clock,
          /*require_expiration=*/false);
      if (c.ok()) c->provider = label;
      return c;
    }
    return StaticKeys(s, label);
  }

  static absl::StatusOr<AwsCredentials> StaticKeys(
      const std::map<std::string, std::string>& s, const std::string& label) {
    auto get = [&](const char* k) -> std::string {
      auto it = s.find(k);
      return it == s.end() ? "" : it->second;
    };
    AwsCredentials out;
    out.provider = label;
    out.keys.access_key_id = get("aws_access_key_id");
    out.keys.secret_access_key = get("aws_secret_access_key");
    out.keys.session_token = get("aws_session_token");
    if (out.keys.access_key_id.empty() || out.keys.secret_access_key.empty()) {
      return absl::NotFoundError(absl::StrCat(
          label,
          ": no aws_access_key_id/aws_secret_access_key, role_arn or "
          "credential_process"));
    }
    return out;
  }

  const ProviderOptions o_;
};

}  // namespace

std::unique_ptr<CredentialsProvider> NewProfileProvider(
    const ProviderOptions& options) {
  return std::make_unique<ProfileProvider>(
      credentials_internal::WithDefaults(options));
}

}  // namespace aws
}  // namespace fleetcanary
