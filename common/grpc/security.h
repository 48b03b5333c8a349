// Transport security for every gRPC server and channel of fleetcanary.
//
// - TLS everywhere; plaintext only when `insecure` is set explicitly (and a
//   warning is logged).
// - Mutual TLS between agents and the controller: the controller asks for and
//   verifies client certificates against `ca_file`; an agent's identity and
//   region come from its certificate's URI SAN
//     spiffe://fleetcanary/agent/<region>/<agent_id>
//   (see deploy/README.md for issuing such certificates with cert-manager).
// - Certificate, key and CA files are watched and reloaded without restart
//   (gRPC's FileWatcherCertificateProvider, every `refresh_interval`).
//
// Thread-safety: pure functions, thread-safe.
#ifndef FLEETCANARY_COMMON_GRPC_SECURITY_H_
#define FLEETCANARY_COMMON_GRPC_SECURITY_H_

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {

struct TlsOptions {
  // Plaintext. Only for local demos and tests on loopback.
  bool insecure = false;
  // PEM files: our certificate chain and key (servers always; clients for
  // mTLS), and the CA bundle that verifies the peer (servers: client
  // certificates are then required; clients: the server's certificate).
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // How often the files are checked for changes.
  absl::Duration refresh_interval = absl::Seconds(10);
  // Client only: name the server certificate must carry, when it differs
  // from the address's host (e.g. connecting by IP).
  std::string server_name_override;
};

// Server credentials for `options`. INVALID_ARGUMENT when a file is missing
// or unreadable (named), or when cert/key are not both given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

// Channel credentials for `options`, with the channel arguments they need
// (the TLS server-name override) added to `args`.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsOptions& options, grpc::ChannelArguments* args);

// The agent a verified client certificate speaks for.
struct AgentIdentity {
  std::string region;
  std::string agent_id;
};

// "spiffe://fleetcanary/agent/<region>/<agent_id>" for a certificate.
std::string AgentSpiffeId(absl::string_view region, absl::string_view agent_id);

// Reads the identity from a connection's auth context (the peer's URI SANs).
// UNAUTHENTICATED when the peer presented no verified certificate or no SAN
// of the agent form; the message says what was found instead.
absl::StatusOr<AgentIdentity> AgentIdentityFromAuthContext(
    const grpc::AuthContext& context);

// Checks an agent's Hello against its certificate identity and the regions
// the controller allows (empty = any). PERMISSION_DENIED naming the mismatch.
absl::Status CheckAgentClaim(const AgentIdentity& identity,
                             absl::string_view claimed_agent_id,
                             absl::string_view claimed_region,
                             const std::vector<std::string>& allowed_regions);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_GRPC_SECURITY_H_
