// Why a TLS connection to the controller failed, in words a person can act
// on. gRPC reports a failed handshake as "socket closed" or an OpenSSL error
// code (with TLS 1.3 a refused client certificate is only noticed after the
// client finished its handshake); this module redoes the handshake once with
// OpenSSL and watches what each side asked for:
//   - the controller sent a CertificateRequest and canaryctl had no
//     certificate ("the controller asked for a client certificate: pass
//     --cert/--key");
//   - the controller alerted after receiving canaryctl's certificate (e.g.
//     "unknown CA");
//   - canaryctl could not verify the controller's certificate against its CA
//     bundle, or the certificate does not carry the name dialled;
//   - the port does not speak TLS at all (a plaintext controller), or speaks
//     TLS while canaryctl was told --insecure.
//
// Thread-safety: DiagnoseTls is reentrant (no shared state).
#ifndef FLEETCANARY_CLI_COMMANDS_TLS_DIAGNOSIS_H_
#define FLEETCANARY_CLI_COMMANDS_TLS_DIAGNOSIS_H_

#include <string>

#include "absl/time/time.h"

namespace fleetcanary {
namespace cli {

struct TlsProbeOptions {
  // "host:port" (IPv6 literals in brackets).
  std::string address;
  // The name the controller's certificate must carry ("" = the host).
  std::string server_name;
  // PEM contents (not paths); empty ca_pem = the system roots.
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  // canaryctl was told the controller is plaintext.
  bool insecure = false;
  // Bound on connect + handshake + the first read.
  absl::Duration timeout = absl::Seconds(5);
};

// One sentence saying which side wanted what, or "" when the handshake
// succeeds with these settings (or the controller cannot be reached at all:
// the caller's own message is then the better one).
std::string DiagnoseTls(const TlsProbeOptions& options);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_TLS_DIAGNOSIS_H_
