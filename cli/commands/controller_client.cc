#include "cli/commands/controller_client.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/commands/tls_diagnosis.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::StatusOr<std::string> ReadFile(const std::string& flag,
                                     const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The part of a gRPC connection error a person recognises.
std::string ConnectReason(const std::string& message) {
  const std::string lower = absl::AsciiStrToLower(message);
  for (const char* reason :
       {"connection refused", "name resolution", "dns resolution",
        "no route to host", "network is unreachable", "timed out", "handshake",
        "certificate", "socket closed", "connection reset"}) {
    if (absl::StrContains(lower, reason)) {
      return std::string(reason) == "handshake" ||
                     std::string(reason) == "certificate"
                 ? "TLS handshake failed"
                 : reason;
    }
  }
  return message;
}

// The bearer token: --token-file's contents (trimmed; an empty file is an
// error), else FLEETCANARY_TOKEN (trimmed; may be empty = no token).
absl::StatusOr<std::string> ResolveToken(const ControllerFlags& flags) {
  if (flags.token_file.empty()) {
    return std::string(absl::StripAsciiWhitespace(Env("FLEETCANARY_TOKEN")));
  }
  absl::StatusOr<std::string> token =
      ReadFile("--token-file", flags.token_file);
  if (!token.ok()) return token.status();
  std::string trimmed(absl::StripAsciiWhitespace(*token));
  if (trimmed.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: \"", flags.token_file, "\" is empty"));
  }
  return trimmed;
}

// --rpc-timeout as a positive duration; InvalidArgument otherwise.
absl::StatusOr<absl::Duration> ParseRpcTimeout(const std::string& text) {
  absl::StatusOr<absl::Duration> timeout = ParseDuration(text);
  if (!timeout.ok() || *timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rpc-timeout: \"", text, "\" is not a positive duration (e.g. 30s)"));
  }
  return *timeout;
}

// PEM material for a TLS connection; "" for each file not given.
struct TlsPem {
  std::string ca;
  std::string cert;
  std::string key;
};

// Reads the CA bundle and the client certificate + key (both or neither).
// InvalidArgument, naming the flag, when a file is unreadable or holds no
// PEM of its kind, or when only one of cert and key is given.
absl::StatusOr<TlsPem> ReadTlsPem(const std::string& ca_file,
                                  const std::string& cert_file,
                                  const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        cert_file.empty() ? "--key: given without --cert (FLEETCANARY_CERT)"
                          : "--cert: given without --key (FLEETCANARY_KEY)");
  }
  TlsPem pem;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFile("--ca", ca_file);
    if (!ca.ok()) return ca.status();
    pem.ca = *std::move(ca);
  }
  if (cert_file.empty()) return pem;
  absl::StatusOr<std::string> cert = ReadFile("--cert", cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile("--key", key_file);
  if (!key.ok()) return key.status();
  if (!absl::StrContains(*cert, "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cert: \"", cert_file, "\" holds no PEM certificate"));
  }
  if (!absl::StrContains(*key, "PRIVATE KEY-----")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--key: \"", key_file, "\" holds no PEM private key"));
  }
  pem.cert = *std::move(cert);
  pem.key = *std::move(key);
  return pem;
}

}  // namespace

void AddControllerFlags(CLI::App* cmd, ControllerFlags* flags) {
  cmd->add_option("--controller", flags->address,
                  absl::StrCat("Controller gRPC address HOST:PORT (env "
                               "FLEETCANARY_CONTROLLER; default ",
                               kDefaultController, ")"))
      ->group("Controller connection");
  cmd->add_option("--token-file", flags->token_file,
                  "File holding the admin API bearer token (env "
                  "FLEETCANARY_TOKEN holds the token itself)")
      ->group("Controller connection");
  cmd->add_flag("--insecure", flags->insecure,
                "Plaintext connection to the controller, no TLS (env "
                "FLEETCANARY_INSECURE=1)")
      ->group("Controller connection");
  cmd->add_option("--ca", flags->ca_file,
                  "CA bundle (PEM) that signed the controller's certificate "
                  "(env FLEETCANARY_CA; default: the system roots)")
      ->group("Controller connection");
  cmd->add_option("--cert", flags->cert_file,
                  "Client certificate (PEM) for a controller port that asks "
                  "for one (mutual TLS; env FLEETCANARY_CERT)")
      ->group("Controller connection");
  cmd->add_option("--key", flags->key_file,
                  "Private key (PEM) of --cert (env FLEETCANARY_KEY)")
      ->group("Controller connection");
  cmd->add_option("--server-name", flags->server_name,
                  "Name the controller's certificate must carry, when it "
                  "differs from --controller's host (env "
                  "FLEETCANARY_SERVER_NAME)")
      ->group("Controller connection");
  cmd->add_option("--rpc-timeout", flags->timeout,
                  "Deadline of each call to the controller")
      ->capture_default_str()
      ->group("Controller connection");
}

absl::StatusOr<std::unique_ptr<ControllerClient>> ControllerClient::Create(
    const ControllerFlags& flags) {
  auto c = std::unique_ptr<ControllerClient>(new ControllerClient());
  c->address_ = flags.address;
  if (c->address_.empty()) c->address_ = Env("FLEETCANARY_CONTROLLER");
  if (c->address_.empty()) c->address_ = kDefaultController;
  absl::StatusOr<std::string> token = ResolveToken(flags);
  if (!token.ok()) return token.status();
  c->token_ = *std::move(token);
  absl::StatusOr<absl::Duration> timeout = ParseRpcTimeout(flags.timeout);
  if (!timeout.ok()) return timeout.status();
  c->timeout_ = *timeout;
  const std::string env_insecure = Env("FLEETCANARY_INSECURE");
  const bool insecure = flags.insecure || env_insecure == "1" ||
                        absl::EqualsIgnoreCase(env_insecure, "true");
  const std::string ca_file =
      flags.ca_file.empty() ? Env("FLEETCANARY_CA") : flags.ca_file;
  const std::string cert_file =
      flags.cert_file.empty() ? Env("FLEETCANARY_CERT") : flags.cert_file;
  const std::string key_file =
      flags.key_file.empty() ? Env("FLEETCANARY_KEY") : flags.key_file;
  c->server_name_ = flags.server_name.empty() ? Env("FLEETCANARY_SERVER_NAME")
                                              : flags.server_name;
  c->insecure_ = insecure;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (insecure) {
    if (!ca_file.empty() || !cert_file.empty() || !key_file.empty()) {
      return absl::InvalidArgumentError(
          "--insecure (plaintext) excludes --ca, --cert and --key (or "
          "FLEETCANARY_CA/_CERT/_KEY)");
    }
    creds = grpc::InsecureChannelCredentials();
  } else {
    absl::StatusOr<TlsPem> pem = ReadTlsPem(ca_file, cert_file, key_file);
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = c->ca_pem_ = std::move(pem->ca);
    ssl.pem_cert_chain = c->cert_pem_ = std::move(pem->cert);
    ssl.pem_private_key = c->key_pem_ = std::move(pem->key);
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  if (!c->server_name_.empty()) {
    args.SetSslTargetNameOverride(c->server_name_);
  }
  c->channel_ = grpc::CreateCustomChannel(c->address_, creds, args);
  c->stub_ = v1::CanaryAdmin::NewStub(c->channel_);
  return c;
}

void ControllerClient::Prepare(grpc::ClientContext* ctx,
                               bool with_deadline) const {
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  if (with_deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(timeout_));
  }
}

int ControllerClient::Fail(const grpc::Status& status,
                           const std::string& command, CliContext* ctx) const {
  const std::string& msg = status.error_message();
  std::ostream& err = *ctx->err;
  err << "canaryctl " << command << ": ";
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE: {
      const std::string reason = ConnectReason(msg);
      if (reason != "connection refused" && reason != "name resolution" &&
          reason != "dns resolution" && reason != "no route to host" &&
          reason != "network is unreachable") {
        TlsProbeOptions probe;
        probe.address = address_;
        probe.server_name = server_name_;
        probe.ca_pem = ca_pem_;
        probe.cert_pem = cert_pem_;
        probe.key_pem = key_pem_;
        probe.insecure = insecure_;
        probe.timeout = std::min(timeout_, absl::Seconds(10));
        const std::string why = DiagnoseTls(probe);
        if (!why.empty()) {
          err << "TLS handshake with the controller at " << address_
              << " failed: " << why << "\n";
          return kExitUnavailable;
        }
      }
      err << "cannot reach controller at " << address_ << ": " << reason
          << " — is fleetcanary-controller running? (--controller / "
             "FLEETCANARY_CONTROLLER; --insecure for a plaintext "
             "controller)\n";
      return kExitUnavailable;
    }
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      err << "the controller at " << address_ << " did not answer in time ("
          << msg << "); raise --rpc-timeout or check the controller\n";
      return kExitUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
      err << "not authenticated: " << msg
          << " (--token-file FILE or FLEETCANARY_TOKEN)\n";
      return kExitUnauthorized;
    case grpc::StatusCode::PERMISSION_DENIED:
      if (absl::StrContains(msg, "target guard")) {
        // A URL outside the controller's allowlist: the request is wrong.
        err << "refused: " << msg << "\n";
        return kExitUsage;
      }
      err << "permission denied: " << msg << "\n";
      return kExitUnauthorized;
    case grpc::StatusCode::CANCELLED:
      err << "cancelled\n";
      return kExitUnavailable;
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::UNIMPLEMENTED:
      err << "controller error (" << status.error_code() << "): " << msg
          << "\n";
      return kExitUnavailable;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      err << "controller busy: " << msg << "\n";
      return kExitUnavailable;
    default:
      err << msg << "\n";
      return kExitUsage;
  }
}

int UsageError(CliContext* ctx, const std::string& command,
               const std::string& message) {
  *ctx->err << "canaryctl " << command << ": " << message << "\n";
  return kExitUsage;
}

}  // namespace cli
}  // namespace fleetcanary
