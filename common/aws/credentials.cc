// The credential providers (environment, web identity, assume role,
// container, IMDS) and the default chain; the profile provider lives in
// profile_provider.cc, the cache in credentials_cache.cc.
#include "common/aws/credentials.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/aws/credentials_internal.h"
#include "common/aws/http.h"
#include "common/aws/partition.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace aws {
namespace {

using json = nlohmann::json;

}  // namespace

namespace credentials_internal {

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

StsOptions StsOptionsFor(const ProviderOptions& o) {
  StsOptions so;
  so.region = Region(o);
  so.endpoint = StsEndpointFromEnv(o.env, so.region);
  so.clock = o.clock;
  so.timeout = o.http_timeout;
  return so;
}

ProviderOptions WithDefaults(ProviderOptions o) {
  if (!o.env) o.env = ProcessEnvironment();
  return o;
}

AssumeRoleProvider::AssumeRoleProvider(
    const ProviderOptions& o,
    std::function<absl::StatusOr<sigv4::Credentials>()> source,
    std::string role_arn, std::string label)
    : o_(o),
      source_(std::move(source)),
      role_arn_(std::move(role_arn)),
      label_(std::move(label)) {}

absl::StatusOr<AwsCredentials> AssumeRoleProvider::Fetch() {
  absl::StatusOr<sigv4::Credentials> source = source_();
  if (!source.ok()) {
    return absl::Status(source.status().code() == absl::StatusCode::kNotFound
                            ? absl::StatusCode::kFailedPrecondition
                            : source.status().code(),
                        absl::StrCat(label_, ": source credentials: ",
                                     source.status().message()));
  }
  absl::StatusOr<AwsCredentials> creds =
      AssumeRole(StsOptionsFor(o_), *source, role_arn_, o_.session_name);
  if (!creds.ok()) return Prefixed(label_, creds.status());
  creds->provider = label_;
  return creds;
}

}  // namespace credentials_internal

namespace {

using credentials_internal::AssumeRoleProvider;
using credentials_internal::ParseCredentialsJson;
using credentials_internal::Prefixed;
using credentials_internal::ReadSmallFile;
using credentials_internal::StsOptionsFor;
using credentials_internal::WithDefaults;

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
    absl::StatusOr<AwsCredentials> creds =
        AssumeRoleWithWebIdentity(StsOptionsFor(o_), role, session, *token);
    if (!creds.ok()) return Prefixed(name(), creds.status());
    creds->provider = name();
    return creds;
  }

 private:
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

}  // namespace aws
}  // namespace fleetcanary
