#include "common/aws/credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/aws/http.h"
#include "common/aws/partition.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace fleetcanary {
namespace aws {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxTokenFileBytes = 64 * 1024;
constexpr size_t kMaxProcessOutput = 64 * 1024;

absl::Status Prefixed(absl::string_view provider, const absl::Status& s) {
  if (absl::StartsWith(s.message(), provider)) return s;
  return absl::Status(s.code(), absl::StrCat(provider, ": ", s.message()));
}

std::string Region(const ProviderOptions& o) {
  if (!o.region.empty()) return o.region;
  for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    std::string r = o.env(name);
    if (!r.empty()) return r;
  }
  return "us-east-1";
}

// Reads a small file whole. NOT_FOUND / FAILED_PRECONDITION naming it.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", path, ": cannot be read"));
  }
  std::string data(kMaxTokenFileBytes + 1, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() > kMaxTokenFileBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " ", path, ": larger than ", kMaxTokenFileBytes, " bytes"));
  }
  return std::string(absl::StripAsciiWhitespace(data));
}

// Credentials JSON as served by the container endpoint, IMDS and
// credential_process ({AccessKeyId, SecretAccessKey, Token|SessionToken,
// Expiration}).
absl::StatusOr<AwsCredentials> ParseCredentialsJson(absl::string_view provider,
                                                    absl::string_view body,
                                                    Clock* clock,
                                                    bool require_expiration) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        absl::StrCat(provider, ": response is not a JSON object"));
  }
  auto str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  if (!str("Code").empty() && str("Code") != "Success") {
    return absl::UnavailableError(
        absl::StrCat(provider, ": Code ", str("Code"), ": ", str("Message")));
  }
  AwsCredentials out;
  out.provider = std::string(provider);
  out.keys.access_key_id = str("AccessKeyId");
  out.keys.secret_access_key = str("SecretAccessKey");
  out.keys.session_token = str("Token");
  if (out.keys.session_token.empty())
    out.keys.session_token = str("SessionToken");
  if (out.keys.access_key_id.empty() || out.keys.secret_access_key.empty()) {
    return absl::DataLossError(absl::StrCat(
        provider, ": response lacks AccessKeyId or SecretAccessKey"));
  }
  const std::string expiration = str("Expiration");
  if (expiration.empty()) {
    if (require_expiration) {
      return absl::DataLossError(
          absl::StrCat(provider, ": response lacks Expiration"));
    }
  } else {
    absl::StatusOr<absl::Time> t = ParseIso8601(expiration);
    if (!t.ok()) {
      return absl::DataLossError(
          absl::StrCat(provider, ": Expiration: ", t.status().message()));
    }
    out.expiration = *t;
  }
  if (out.expiration <= clock->Now()) {
    return absl::FailedPreconditionError(absl::StrCat(
        provider, ": credentials already expired at ",
        absl::FormatTime(absl::RFC3339_sec, out.expiration,
                         absl::UTCTimeZone()),
        " (local clock ",
        absl::FormatTime(absl::RFC3339_sec, clock->Now(), absl::UTCTimeZone()),
        "; clock skew?)"));
  }
  return out;
}

// ---------------------------------------------------------------------------

class EnvironmentProvider : public CredentialsProvider {
 public:
  explicit EnvironmentProvider(const ProviderOptions& o) : o_(o) {}
  std::string name() const override { return "environment"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    AwsCredentials out;
    out.provider = name();
    out.keys.access_key_id = o_.env("AWS_ACCESS_KEY_ID");
    out.keys.secret_access_key = o_.env("AWS_SECRET_ACCESS_KEY");
    out.keys.session_token = o_.env("AWS_SESSION_TOKEN");
    if (out.keys.access_key_id.empty() && out.keys.secret_access_key.empty()) {
      return absl::NotFoundError("environment: AWS_ACCESS_KEY_ID not set");
    }
    if (out.keys.access_key_id.empty() || out.keys.secret_access_key.empty()) {
      return absl::InvalidArgumentError(
          "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be "
          "set together");
    }
    return out;
  }

 private:
  const ProviderOptions o_;
};

class WebIdentityProvider : public CredentialsProvider {
 public:
  explicit WebIdentityProvider(const ProviderOptions& o) : o_(o) {}
  std::string name() const override { return "web-identity"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    const std::string role = o_.env("AWS_ROLE_ARN");
    const std::string file = o_.env("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (role.empty() && file.empty()) {
      return absl::NotFoundError(
          "web-identity: AWS_WEB_IDENTITY_TOKEN_FILE not set");
    }
    if (role.empty() || file.empty()) {
      return absl::InvalidArgumentError(
          "web-identity: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE must be "
          "set together");
    }
    absl::StatusOr<std::string> token =
        ReadSmallFile(file, "web-identity: token file");
    if (!token.ok()) return token.status();
    if (token->empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("web-identity: token file ", file, " is empty"));
    }
    std::string session = o_.env("AWS_ROLE_SESSION_NAME");
    if (session.empty()) session = o_.session_name;
    StsOptions so;
    so.region = Region(o_);
    so.endpoint = StsEndpointFromEnv(o_.env, so.region);
    so.clock = o_.clock;
    so.timeout = o_.http_timeout;
    absl::StatusOr<AwsCredentials> creds =
        AssumeRoleWithWebIdentity(so, role, session, *token);
    if (!creds.ok()) return Prefixed(name(), creds.status());
    creds->provider = name();
    return creds;
  }

 private:
  const ProviderOptions o_;
};

class AssumeRoleProvider : public CredentialsProvider {
 public:
  AssumeRoleProvider(const ProviderOptions& o,
                     std::function<absl::StatusOr<sigv4::Credentials>()> source,
                     std::string role_arn, std::string label)
      : o_(o),
        source_(std::move(source)),
        role_arn_(std::move(role_arn)),
        label_(std::move(label)) {}
  std::string name() const override { return label_; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    absl::StatusOr<sigv4::Credentials> source = source_();
    if (!source.ok()) {
      return absl::Status(source.status().code() == absl::StatusCode::kNotFound
                              ? absl::StatusCode::kFailedPrecondition
                              : source.status().code(),
                          absl::StrCat(label_, ": source credentials: ",
                                       source.status().message()));
    }
    StsOptions so;
    so.region = Region(o_);
    so.endpoint = StsEndpointFromEnv(o_.env, so.region);
    so.clock = o_.clock;
    so.timeout = o_.http_timeout;
    absl::StatusOr<AwsCredentials> creds =
        AssumeRole(so, *source, role_arn_, o_.session_name);
    if (!creds.ok()) return Prefixed(label_, creds.status());
    creds->provider = label_;
    return creds;
  }

 private:
  const ProviderOptions o_;
  const std::function<absl::StatusOr<sigv4::Credentials>()> source_;
  const std::string role_arn_;
  const std::string label_;
};

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

bool IsAllowedContainerHost(absl::string_view host) {
  // What SDKs accept over plain http: loopback, the ECS and EKS Pod
  // Identity agent addresses.
  return host == "localhost" || absl::StartsWith(host, "127.") ||
         host == "::1" || host == "169.254.170.2" || host == "169.254.170.23" ||
         absl::EqualsIgnoreCase(host, "fd00:ec2::23");
}

class ContainerProvider : public CredentialsProvider {
 public:
  explicit ContainerProvider(const ProviderOptions& o) : o_(o) {}
  std::string name() const override { return "container"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    std::string url;
    const std::string relative =
        o_.env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const std::string full = o_.env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!relative.empty()) {
      url = absl::StrCat("http://169.254.170.2", relative);
    } else if (!full.empty()) {
      FC_ASSIGN_OR_RETURN(
          ParsedUrl parsed,
          ParseHttpUrl(full, "container: AWS_CONTAINER_CREDENTIALS_FULL_URI"));
      if (parsed.scheme == "http" && !IsAllowedContainerHost(parsed.host)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "container: AWS_CONTAINER_CREDENTIALS_FULL_URI host ", parsed.host,
            " is not loopback or a container agent address (use https)"));
      }
      url = full;
    } else {
      return absl::NotFoundError(
          "container: AWS_CONTAINER_CREDENTIALS_*_URI not set");
    }
    HttpExchange ex;
    ex.url = url;
    ex.timeout = o_.http_timeout;
    ex.max_response_bytes = 64 * 1024;
    std::string token;
    const std::string token_file =
        o_.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (!token_file.empty()) {
      absl::StatusOr<std::string> t =
          ReadSmallFile(token_file, "container: authorization token file");
      if (!t.ok()) return t.status();
      token = *t;
    } else {
      token = o_.env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    }
    if (!token.empty()) ex.headers.emplace_back("Authorization", token);
    absl::StatusOr<HttpReply> reply = HttpCall(ex);
    if (!reply.ok()) return Prefixed(name(), reply.status());
    if (reply->status != 200) {
      return absl::Status(
          reply->status == 401 || reply->status == 403
              ? absl::StatusCode::kPermissionDenied
              : absl::StatusCode::kUnavailable,
          absl::StrCat("container: HTTP ", reply->status, " from ", url, ": ",
                       reply->body.substr(0, 256)));
    }
    return ParseCredentialsJson(name(), reply->body, o_.clock,
                                /*require_expiration=*/true);
  }

 private:
  const ProviderOptions o_;
};

class ImdsProvider : public CredentialsProvider {
 public:
  explicit ImdsProvider(const ProviderOptions& o) : o_(o) {}
  std::string name() const override { return "imds"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    if (absl::EqualsIgnoreCase(o_.env("AWS_EC2_METADATA_DISABLED"), "true")) {
      return absl::NotFoundError("imds: AWS_EC2_METADATA_DISABLED=true");
    }
    std::string base = o_.env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (base.empty()) base = "http://169.254.169.254";
    while (absl::EndsWith(base, "/")) base.pop_back();
    HttpExchange put;
    put.method = "PUT";
    put.url = base + "/latest/api/token";
    put.headers = {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}};
    put.connect_timeout = std::min(o_.http_timeout, absl::Seconds(1));
    put.timeout = o_.http_timeout;
    put.max_response_bytes = 4096;
    absl::StatusOr<HttpReply> token = HttpCall(put);
    if (!token.ok()) {
      // No metadata service: not on EC2. Not an error of the chain.
      return absl::NotFoundError(
          absl::StrCat("imds: unreachable: ", token.status().message()));
    }
    if (token->status != 200 || token->body.empty()) {
      return absl::UnavailableError(
          absl::StrCat("imds: token PUT answered HTTP ", token->status));
    }
    auto get = [&](const std::string& path) -> absl::StatusOr<HttpReply> {
      HttpExchange ex;
      ex.url = base + path;
      ex.headers = {{"X-aws-ec2-metadata-token", token->body}};
      ex.timeout = o_.http_timeout;
      ex.max_response_bytes = 64 * 1024;
      absl::StatusOr<HttpReply> r = HttpCall(ex);
      if (!r.ok()) return Prefixed("imds", r.status());
      return r;
    };
    const std::string prefix = "/latest/meta-data/iam/security-credentials/";
    FC_ASSIGN_OR_RETURN(HttpReply roles, get(prefix));
    if (roles.status == 404) {
      return absl::NotFoundError("imds: the instance has no IAM role");
    }
    if (roles.status != 200) {
      return absl::UnavailableError(
          absl::StrCat("imds: role list answered HTTP ", roles.status));
    }
    std::string role(absl::StripAsciiWhitespace(roles.body));
    role = role.substr(0, role.find('\n'));
    if (role.empty() || role.find('/') != std::string::npos) {
      return absl::DataLossError("imds: malformed role name");
    }
    FC_ASSIGN_OR_RETURN(HttpReply creds, get(prefix + role));
    if (creds.status != 200) {
      return absl::UnavailableError(absl::StrCat(
          "imds: credentials of role ", role, " answered HTTP ", creds.status));
    }
    return ParseCredentialsJson(name(), creds.body, o_.clock,
                                /*require_expiration=*/true);
  }

 private:
  const ProviderOptions o_;
};

class ChainProvider : public CredentialsProvider {
 public:
  explicit ChainProvider(const ProviderOptions& o) {
    providers_.push_back(NewEnvironmentProvider(o));
    providers_.push_back(NewWebIdentityProvider(o));
    providers_.push_back(NewProfileProvider(o));
    providers_.push_back(NewContainerProvider(o));
    providers_.push_back(NewImdsProvider(o));
  }
  std::string name() const override { return "chain"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    {
      absl::MutexLock lock(&mu_);
      if (chosen_ != nullptr) return chosen_->Fetch();
    }
    std::vector<std::string> tried;
    for (const auto& p : providers_) {
      absl::StatusOr<AwsCredentials> c = p->Fetch();
      if (c.ok()) {
        absl::MutexLock lock(&mu_);
        chosen_ = p.get();
        LogInfo("aws_credentials_provider", {{"provider", c->provider}});
        return c;
      }
      if (c.status().code() != absl::StatusCode::kNotFound) return c;
      tried.push_back(std::string(c.status().message()));
    }
    return absl::NotFoundError(absl::StrCat("no AWS credentials found (",
                                            absl::StrJoin(tried, "; "), ")"));
  }

 private:
  std::vector<std::unique_ptr<CredentialsProvider>> providers_;
  absl::Mutex mu_;
  CredentialsProvider* chosen_ ABSL_GUARDED_BY(mu_) = nullptr;
};

ProviderOptions WithDefaults(ProviderOptions o) {
  if (!o.env) o.env = ProcessEnvironment();
  return o;
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](absl::string_view name) -> std::string {
    const char* v = std::getenv(std::string(name).c_str());
    return v == nullptr ? "" : v;
  };
}

std::string StsEndpointFromEnv(const EnvLookup& env, absl::string_view region) {
  for (const char* name : {"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"}) {
    std::string v = env(name);
    if (!v.empty()) return v;
  }
  return StsEndpoint(region);
}

std::unique_ptr<CredentialsProvider> NewEnvironmentProvider(
    const ProviderOptions& options) {
  return std::make_unique<EnvironmentProvider>(WithDefaults(options));
}
std::unique_ptr<CredentialsProvider> NewWebIdentityProvider(
    const ProviderOptions& options) {
  return std::make_unique<WebIdentityProvider>(WithDefaults(options));
}
std::unique_ptr<CredentialsProvider> NewProfileProvider(
    const ProviderOptions& options) {
  return std::make_unique<ProfileProvider>(WithDefaults(options));
}
std::unique_ptr<CredentialsProvider> NewContainerProvider(
    const ProviderOptions& options) {
  return std::make_unique<ContainerProvider>(WithDefaults(options));
}
std::unique_ptr<CredentialsProvider> NewImdsProvider(
    const ProviderOptions& options) {
  return std::make_unique<ImdsProvider>(WithDefaults(options));
}

std::unique_ptr<CredentialsProvider> NewAssumeRoleProvider(
    const ProviderOptions& options,
    std::function<absl::StatusOr<sigv4::Credentials>()> source,
    std::string role_arn) {
  std::string label = absl::StrCat("assume-role ", role_arn);
  return std::make_unique<AssumeRoleProvider>(
      WithDefaults(options), std::move(source), std::move(role_arn),
      std::move(label));
}

absl::StatusOr<std::unique_ptr<CredentialsProvider>> NewDefaultChain(
    const ProviderOptions& options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("ProviderOptions.clock: required");
  }
  return std::unique_ptr<CredentialsProvider>(
      new ChainProvider(WithDefaults(options)));
}

// ---------------------------------------------------------------------------
// CredentialsCache

absl::StatusOr<std::unique_ptr<CredentialsCache>> CredentialsCache::Create(
    std::unique_ptr<CredentialsProvider> provider, Clock* clock,
    const CacheOptions& options) {
  if (provider == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "CredentialsCache: provider and clock are required");
  }
  if (options.retry_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "CacheOptions.retry_interval: must be positive");
  }
  std::unique_ptr<CredentialsCache> cache(
      new CredentialsCache(std::move(provider), clock, options));
  if (options.start_now) cache->Start();
  cache->thread_ = std::thread([c = cache.get()] { c->Loop(); });
  return cache;
}

CredentialsCache::CredentialsCache(
    std::unique_ptr<CredentialsProvider> provider, Clock* clock,
    const CacheOptions& options)
    : provider_(std::move(provider)), clock_(clock), options_(options) {}

CredentialsCache::~CredentialsCache() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CredentialsCache::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
}

absl::StatusOr<sigv4::Credentials> CredentialsCache::Get() {
  absl::MutexLock lock(&mu_);
  if (has_ && clock_->Now() < current_.expiration) return current_.keys;
  if (has_) {
    return absl::UnavailableError(
        absl::StrCat("AWS credentials from ", current_.provider, " expired at ",
                     absl::FormatTime(absl::RFC3339_sec, current_.expiration,
                                      absl::UTCTimeZone()),
                     "; last refresh error: ", last_error_));
  }
  return absl::UnavailableError(absl::StrCat(
      "no AWS credentials: ",
      attempted_ ? last_error_
      : started_ ? std::string("first fetch in progress")
                 : std::string("not needed so far (no AWS_IAM target or "
                               "signed CloudWatch read assigned)")));
}

absl::Status CredentialsCache::WaitForFirst(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&attempted_), timeout);
  }
  return Get().status();
}

CacheStats CredentialsCache::stats() {
  absl::MutexLock lock(&mu_);
  CacheStats s;
  s.has_credentials = has_ && clock_->Now() < current_.expiration;
  s.expiration = has_ ? current_.expiration : absl::InfinitePast();
  s.provider = current_.provider;
  s.refreshes_total = refreshes_;
  s.refresh_failures_total = failures_;
  s.last_error = last_error_;
  return s;
}

void CredentialsCache::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CredentialsCache* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return c->started_ || c->stopping_;
          },
          this));
      if (stopping_) return;
      const absl::Duration wait = next_refresh_ - clock_->Now();
      if (wait > absl::ZeroDuration()) {
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_), wait);
      }
      if (stopping_) return;
      if (next_refresh_ > clock_->Now()) continue;
    }
    absl::StatusOr<AwsCredentials> fetched = provider_->Fetch();
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    attempted_ = true;
    if (fetched.ok() && fetched->expiration > now) {
      current_ = *std::move(fetched);
      has_ = true;
      ++refreshes_;
      last_error_.clear();
      if (current_.expiration == absl::InfiniteFuture()) {
        next_refresh_ = absl::InfiniteFuture();
      } else {
        const absl::Duration lifetime = current_.expiration - now;
        next_refresh_ = current_.expiration -
                        std::min(options_.refresh_before, lifetime / 2);
      }
      LogInfo("aws_credentials_refreshed",
              {{"provider", current_.provider},
               {"expires",
                current_.expiration == absl::InfiniteFuture()
                    ? std::string("never")
                    : absl::FormatTime(absl::RFC3339_sec, current_.expiration,
                                       absl::UTCTimeZone())}});
      continue;
    }
    ++failures_;
    last_error_ = fetched.ok() ? absl::StrCat(fetched->provider,
                                              ": credentials already expired")
                               : fetched.status().ToString();
    absl::Duration retry = options_.retry_interval;
    if (!has_ && !fetched.ok() &&
        fetched.status().code() == absl::StatusCode::kNotFound) {
      // Nothing configured at all (a demo without AWS): look again now and
      // then rather than probing IMDS every few seconds.
      retry = std::max(retry, absl::Minutes(5));
    }
    if (has_ && current_.expiration > now) {
      // Try more often as expiry nears, never less than every second.
      retry = std::min(
          retry, std::max(absl::Seconds(1), (current_.expiration - now) / 4));
    }
    next_refresh_ = now + retry;
    if (now - last_log_ >= options_.log_interval) {
      last_log_ = now;
      LogWarning("aws_credentials_refresh_failed",
                 {{"error", last_error_},
                  {"failures", absl::StrCat(failures_)},
                  {"holding", has_ && current_.expiration > now
                                  ? "previous credentials"
                                  : "none"}});
    }
  }
}

}  // namespace aws
}  // namespace fleetcanary
