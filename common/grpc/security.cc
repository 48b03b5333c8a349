#include "common/grpc/security.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace {

constexpr absl::string_view kSpiffePrefix = "spiffe://fleetcanary/agent/";

absl::Status CheckReadable(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  return absl::OkStatus();
}

unsigned RefreshSeconds(const TlsOptions& options) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.refresh_interval)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options) {
  if (options.insecure) {
    LogWarning("insecure_server",
               {{"detail", "serving gRPC in plaintext (--insecure)"}});
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert and tls_key are required unless --insecure is given");
  }
  for (const auto& [flag, path] : {std::pair<absl::string_view, std::string>{
                                       "tls_cert", options.cert_file},
                                   {"tls_key", options.key_file}}) {
    if (absl::Status s = CheckReadable(flag, path); !s.ok()) return s;
  }
  if (!options.ca_file.empty()) {
    if (absl::Status s = CheckReadable("client_ca", options.ca_file); !s.ok()) {
      return s;
    }
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          options.key_file, options.cert_file, options.ca_file,
          RefreshSeconds(options));
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (!options.ca_file.empty()) {
    tls.watch_root_certs();
    tls.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsOptions& options,
                       grpc::ChannelArguments* args) {
  if (options.insecure) {
    return grpc::InsecureChannelCredentials();
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert and tls_key must be given together");
  }
  if (!options.cert_file.empty()) {
    if (absl::Status s = CheckReadable("tls_cert", options.cert_file);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckReadable("tls_key", options.key_file); !s.ok()) {
      return s;
    }
  }
  if (!options.ca_file.empty()) {
    if (absl::Status s = CheckReadable("ca", options.ca_file); !s.ok())
      return s;
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          options.key_file, options.cert_file, options.ca_file,
          RefreshSeconds(options));
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(provider);
  if (!options.ca_file.empty()) tls.watch_root_certs();
  if (!options.cert_file.empty()) tls.watch_identity_key_cert_pairs();
  if (!options.server_name_override.empty() && args != nullptr) {
    args->SetSslTargetNameOverride(options.server_name_override);
  }
  return grpc::experimental::TlsCredentials(tls);
}

std::string AgentSpiffeId(absl::string_view region,
                          absl::string_view agent_id) {
  return absl::StrCat(kSpiffePrefix, region, "/", agent_id);
}

absl::StatusOr<AgentIdentity> AgentIdentityFromAuthContext(
    const grpc::AuthContext& context) {
  if (!context.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError(
        "no verified client certificate (mutual TLS is required for agents)");
  }
  std::vector<std::string> seen;
  for (const grpc::string_ref& value :
       context.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    std::string san(value.data(), value.size());
    seen.push_back(san);
    if (!absl::StartsWith(san, kSpiffePrefix)) continue;
    std::vector<std::string> parts =
        absl::StrSplit(san.substr(kSpiffePrefix.size()), '/');
    if (parts.size() == 2 && !parts[0].empty() && !parts[1].empty()) {
      return AgentIdentity{parts[0], parts[1]};
    }
  }
  return absl::UnauthenticatedError(
      absl::StrCat("client certificate has no SAN of the form ", kSpiffePrefix,
                   "<region>/<agent_id> (found: ",
                   seen.empty() ? "none" : absl::StrJoin(seen, ", "), ")"));
}

absl::Status CheckAgentClaim(const AgentIdentity& identity,
                             absl::string_view claimed_agent_id,
                             absl::string_view claimed_region,
                             const std::vector<std::string>& allowed_regions) {
  if (claimed_region != identity.region) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agent claims region \"", claimed_region,
        "\" but its certificate is for region \"", identity.region, "\""));
  }
  if (claimed_agent_id != identity.agent_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agent claims id \"", claimed_agent_id,
        "\" but its certificate is for agent \"", identity.agent_id, "\""));
  }
  if (!allowed_regions.empty() &&
      std::find(allowed_regions.begin(), allowed_regions.end(),
                identity.region) == allowed_regions.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "region \"", identity.region, "\" is not allowed on this controller"));
  }
  return absl::OkStatus();
}

}  // namespace fleetcanary
