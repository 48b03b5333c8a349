// The admin API's token gate: bearer tokens are checked on a call's initial
// metadata, before gRPC reads the request message.
//
// gRPC hands a callback-API handler its request only once the whole message
// arrived, so a token check in the service runs after an unauthenticated
// client made the controller buffer its body. The gate is a server-side
// AuthMetadataProcessor instead: it runs when the call's headers arrive and
// fails it with UNAUTHENTICATED (or PERMISSION_DENIED for a role that is not
// enough) before any message is received, so a refused request costs at
// most what the transport's flow-control window lets the client send.
//
// Calls it checks: every CanaryAdmin method (by its own required role) and
// server reflection (viewer role; its schema is part of the admin API).
// Everything else passes: agent sessions (authenticated by mTLS) and the
// health service (kubelet probes carry no token).
//
// Thread-safety: the gate is immutable; the authorizer must outlive the
// credentials it is installed on.
#ifndef FLEETCANARY_CONTROLLER_API_ADMIN_GATE_H_
#define FLEETCANARY_CONTROLLER_API_ADMIN_GATE_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "controller/api/admin_auth.h"

namespace fleetcanary {
namespace controller {

// What the gate says about a call to `path` ("/pkg.Service/Method") with the
// given `authorization` metadata: OK for calls it does not check. A null
// `authorizer` means the admin API is closed (UNAUTHENTICATED saying how to
// open it).
absl::Status CheckAdminCall(const AdminAuthorizer* authorizer,
                            absl::string_view path,
                            absl::string_view authorization);

// A processor that applies CheckAdminCall to every call.
std::shared_ptr<grpc::AuthMetadataProcessor> CreateAdminTokenGate(
    const AdminAuthorizer* authorizer);

// Server credentials whose calls pass through `gate` first. TLS credentials
// get the processor installed; for plaintext (`insecure`) ones gRPC's C++
// wrapper has no processor support, so plaintext credentials of the C core
// carrying the gate are returned instead. `credentials` is ignored when
// `insecure`.
std::shared_ptr<grpc::ServerCredentials> WithAdminTokenGate(
    std::shared_ptr<grpc::ServerCredentials> credentials, bool insecure,
    std::shared_ptr<grpc::AuthMetadataProcessor> gate);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_ADMIN_GATE_H_
