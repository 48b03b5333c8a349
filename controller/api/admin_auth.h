// Bearer-token authorization for the admin API (CanaryAdmin).
//
// Tokens come from the --admin_tokens file (v1::AdminTokens): each has a
// holder name, a role and the token, inline or in a file of its own (a
// mounted Kubernetes Secret). Two roles:
//   VIEWER   — ListSchedules, ListAgents, GetVerdicts, WatchVerdicts, Analyze,
//              Report, server reflection (ServerReflectionInfo)
//   OPERATOR — everything a viewer may, plus RunProbe, ApplySchedules,
//              DeleteSchedule
// Clients send `authorization: Bearer <token>`. Tokens are compared in
// constant time and never logged; refusals are counted.
//
// Thread-safety: immutable after Create(); Authorize() is thread-safe.
#ifndef FLEETCANARY_CONTROLLER_API_ADMIN_AUTH_H_
#define FLEETCANARY_CONTROLLER_API_ADMIN_AUTH_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {

// Who made an authorized call.
struct AdminPrincipal {
  std::string name;
  v1::AdminRole role = v1::ADMIN_ROLE_UNSPECIFIED;
};

class AdminAuthorizer {
 public:
  // Loads tokens; token_file paths are read now. INVALID_ARGUMENT naming the
  // entry (tokens[2].token_file: cannot read ...) for a bad entry, an empty
  // or duplicate token, or a missing role.
  static absl::StatusOr<std::unique_ptr<AdminAuthorizer>> Create(
      const v1::AdminTokens& tokens);
  // Reads and validates a tokens YAML file, then Create().
  static absl::StatusOr<std::unique_ptr<AdminAuthorizer>> FromFile(
      const std::string& path);
  // Lets every call through as an operator named "anonymous": only for
  // controllers started with --insecure and no token file.
  static std::unique_ptr<AdminAuthorizer> AllowAll();

  // The role `method` (e.g. "RunProbe") needs. Unknown methods need OPERATOR.
  static v1::AdminRole RequiredRole(absl::string_view method);

  // `authorization` is the value of the request's authorization metadata
  // ("" when absent). UNAUTHENTICATED when missing/malformed/unknown,
  // PERMISSION_DENIED when the token's role is not enough for `method`.
  absl::StatusOr<AdminPrincipal> Authorize(absl::string_view authorization,
                                           absl::string_view method) const;

  uint64_t unauthenticated_total() const { return unauthenticated_.load(); }
  uint64_t permission_denied_total() const { return denied_.load(); }

 private:
  struct Entry {
    std::string token;
    AdminPrincipal principal;
  };
  AdminAuthorizer() = default;

  bool allow_all_ = false;
  std::vector<Entry> entries_;
  mutable std::atomic<uint64_t> unauthenticated_{0};
  mutable std::atomic<uint64_t> denied_{0};
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_ADMIN_AUTH_H_
