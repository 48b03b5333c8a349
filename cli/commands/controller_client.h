// How canaryctl commands reach the controller's admin API (CanaryAdmin).
//
// Every controller command takes the same connection flags, each with an
// environment variable for the default:
//   --controller HOST:PORT   FLEETCANARY_CONTROLLER (default 127.0.0.1:7443)
//   --token-file FILE        FLEETCANARY_TOKEN (the token itself)
//   --insecure               FLEETCANARY_INSECURE=1 (plaintext, no TLS)
//   --ca FILE                FLEETCANARY_CA: CA bundle for the controller's
//                            TLS certificate (default: the system roots)
//   --cert FILE, --key FILE  FLEETCANARY_CERT, FLEETCANARY_KEY: client
//                            certificate and key, for a controller port that
//                            asks for one (mutual TLS)
//   --server-name NAME       FLEETCANARY_SERVER_NAME: name the controller's
//                            certificate must carry when it differs from the
//                            host dialled (e.g. through kubectl port-forward)
//   --rpc-timeout DURATION   deadline of each call (not of streams)
// Errors become one line a person can act on and an exit code (command.h).
//
// Thread-safety: a ControllerClient may be used from several threads (gRPC
// stubs are thread-safe); flags are read once.
#ifndef FLEETCANARY_CLI_COMMANDS_CONTROLLER_CLIENT_H_
#define FLEETCANARY_CLI_COMMANDS_CONTROLLER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/commands/command.h"
#include "fleetcanary/v1/admin.grpc.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace fleetcanary {
namespace cli {

inline constexpr char kDefaultController[] = "127.0.0.1:7443";

// Connection flags as typed.
struct ControllerFlags {
  std::string address;
  std::string token_file;
  bool insecure = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;
  std::string timeout = "30s";
};

// Adds the flags above to `cmd`.
void AddControllerFlags(CLI::App* cmd, ControllerFlags* flags);

class ControllerClient {
 public:
  // Resolves flags and environment, reads the token and CA files.
  // INVALID_ARGUMENT naming the flag for unreadable files or bad values.
  static absl::StatusOr<std::unique_ptr<ControllerClient>> Create(
      const ControllerFlags& flags);

  v1::CanaryAdmin::Stub* stub() { return stub_.get(); }
  const std::string& address() const { return address_; }
  absl::Duration timeout() const { return timeout_; }

  // Adds the bearer token and, when `with_deadline`, the --timeout deadline.
  void Prepare(grpc::ClientContext* ctx, bool with_deadline = true) const;

  // Prints "canaryctl <command>: ..." for a failed call, with a hint, and
  // returns the exit code: 3 unreachable/unavailable/deadline/internal (a
  // failed TLS handshake is redone once to say which side wanted what),
  // 4 UNAUTHENTICATED or PERMISSION_DENIED for the token, 1 for every other
  // refusal of the request (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
  // a URL the target guard refuses, ...).
  int Fail(const grpc::Status& status, const std::string& command,
           CliContext* ctx) const;

 private:
  std::string address_;
  std::string token_;
  // For the TLS diagnosis of a failed connection.
  bool insecure_ = false;
  std::string server_name_;
  std::string ca_pem_;
  std::string cert_pem_;
  std::string key_pem_;
  absl::Duration timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CanaryAdmin::Stub> stub_;
};

// "canaryctl <command>: <message>" to ctx->err; returns kExitUsage.
int UsageError(CliContext* ctx, const std::string& command,
               const std::string& message);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_CONTROLLER_CLIENT_H_
