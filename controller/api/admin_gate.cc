#include "controller/api/admin_gate.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace controller {
namespace {

constexpr absl::string_view kAdminPrefix = "/fleetcanary.v1.CanaryAdmin/";
constexpr absl::string_view kReflectionPrefix = "/grpc.reflection.";

class AdminTokenGate : public grpc::AuthMetadataProcessor {
 public:
  explicit AdminTokenGate(const AdminAuthorizer* authorizer)
      : authorizer_(authorizer) {}

  // Inline on the call's path: a few string compares, no I/O.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& md, grpc::AuthContext*,
                       OutputMetadata*, OutputMetadata*) override {
    absl::string_view path;
    absl::string_view authorization;
    for (const auto& [key, value] : md) {
      const absl::string_view k(key.data(), key.size());
      if (k == ":path") path = absl::string_view(value.data(), value.size());
      if (k == "authorization") {
        authorization = absl::string_view(value.data(), value.size());
      }
    }
    absl::Status s = CheckAdminCall(authorizer_, path, authorization);
    if (s.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                        std::string(s.message()));
  }

 private:
  const AdminAuthorizer* const authorizer_;
};

// Plaintext credentials of the C core with the gate installed. gRPC's own
// InsecureServerCredentials() refuses SetAuthMetadataProcessor, though the
// core runs a processor on plaintext connections as on TLS ones.
class GatedInsecureCredentials : public grpc::ServerCredentials {
 public:
  explicit GatedInsecureCredentials(
      std::shared_ptr<grpc::AuthMetadataProcessor> gate)
      : creds_(grpc_insecure_server_credentials_create()) {
    SetAuthMetadataProcessor(std::move(gate));
  }
  ~GatedInsecureCredentials() override {
    grpc_server_credentials_release(creds_);
  }

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& processor) override {
    gate_ = processor;
    grpc_auth_metadata_processor p;
    p.process = &GatedInsecureCredentials::Process;
    p.destroy = nullptr;
    p.state = gate_.get();
    grpc_server_credentials_set_auth_metadata_processor(creds_, p);
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  static void Process(void* state, grpc_auth_context*, const grpc_metadata* md,
                      size_t num_md, grpc_process_auth_metadata_done_cb cb,
                      void* user_data) {
    auto* gate = static_cast<grpc::AuthMetadataProcessor*>(state);
    grpc::AuthMetadataProcessor::InputMetadata in;
    for (size_t i = 0; i < num_md; ++i) {
      in.emplace(
          grpc::string_ref(
              reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].key)),
              GRPC_SLICE_LENGTH(md[i].key)),
          grpc::string_ref(
              reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].value)),
              GRPC_SLICE_LENGTH(md[i].value)));
    }
    grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
    grpc::Status s = gate->Process(in, nullptr, &consumed, &response);
    cb(user_data, nullptr, 0, nullptr, 0,
       static_cast<grpc_status_code>(s.error_code()),
       s.ok() ? nullptr : s.error_message().c_str());
  }

  grpc_server_credentials* const creds_;
  std::shared_ptr<grpc::AuthMetadataProcessor> gate_;
};

}  // namespace

absl::Status CheckAdminCall(const AdminAuthorizer* authorizer,
                            absl::string_view path,
                            absl::string_view authorization) {
  absl::string_view method;
  if (absl::StartsWith(path, kAdminPrefix)) {
    method = path.substr(kAdminPrefix.size());
  } else if (absl::StartsWith(path, kReflectionPrefix)) {
    method = "ServerReflectionInfo";
  } else {
    return absl::OkStatus();
  }
  if (authorizer == nullptr) {
    return absl::UnauthenticatedError(
        "the admin API is closed: start fleetcanary-controller with "
        "--admin_tokens=FILE (or --insecure on a trusted machine)");
  }
  return authorizer->Authorize(authorization, method).status();
}

std::shared_ptr<grpc::AuthMetadataProcessor> CreateAdminTokenGate(
    const AdminAuthorizer* authorizer) {
  return std::make_shared<AdminTokenGate>(authorizer);
}

std::shared_ptr<grpc::ServerCredentials> WithAdminTokenGate(
    std::shared_ptr<grpc::ServerCredentials> credentials, bool insecure,
    std::shared_ptr<grpc::AuthMetadataProcessor> gate) {
  if (insecure) return std::make_shared<GatedInsecureCredentials>(gate);
  credentials->SetAuthMetadataProcessor(gate);
  return credentials;
}

}  // namespace controller
}  // namespace fleetcanary
