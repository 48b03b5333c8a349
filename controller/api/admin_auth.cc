#include "controller/api/admin_auth.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/config/loader.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

namespace {

// Secrets must not be readable by others nor writable by the group or
// others (0600 or 0640 are fine; 0644 and 0666 are refused).
absl::Status CheckSecretMode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();  // Read reports.
  if ((st.st_mode & 0027) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s has mode %04o: token files must not be readable by others nor "
        "writable by the group (chmod 600 %s)",
        path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminAuthorizer>> AdminAuthorizer::Create(
    const v1::AdminTokens& tokens) {
  if (absl::Status s = ValidateMessage(tokens); !s.ok()) return s;
  std::unique_ptr<AdminAuthorizer> auth(new AdminAuthorizer());
  std::set<std::string> seen;
  for (int i = 0; i < tokens.tokens_size(); ++i) {
    const v1::AdminToken& t = tokens.tokens(i);
    std::string where = absl::StrCat("tokens[", i, "]");
    if (t.role() == v1::ADMIN_ROLE_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".role: required (viewer or operator)"));
    }
    std::string token = t.token();
    if (!t.token_file().empty()) {
      if (!token.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": give token or token_file, not both"));
      }
      if (absl::Status m = CheckSecretMode(t.token_file()); !m.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".token_file: ", m.message()));
      }
      std::ifstream in(t.token_file());
      if (!in) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".token_file: cannot read \"", t.token_file(), "\""));
      }
      std::stringstream buffer;
      buffer << in.rdbuf();
      token = std::string(absl::StripAsciiWhitespace(buffer.str()));
    }
    if (token.size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": token missing or shorter than 16 characters"));
    }
    if (!seen.insert(token).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the same token is listed twice"));
    }
    auth->entries_.push_back({token, {t.name(), t.role()}});
  }
  return auth;
}

absl::StatusOr<std::unique_ptr<AdminAuthorizer>> AdminAuthorizer::FromFile(
    const std::string& path) {
  v1::AdminTokens tokens;
  if (absl::Status m = CheckSecretMode(path); !m.ok()) return m;
  if (absl::Status s = LoadYamlFile(path, &tokens); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<AdminAuthorizer>> auth = Create(tokens);
  if (!auth.ok()) {
    return absl::Status(auth.status().code(),
                        absl::StrCat(path, ": ", auth.status().message()));
  }
  return auth;
}

std::unique_ptr<AdminAuthorizer> AdminAuthorizer::AllowAll() {
  std::unique_ptr<AdminAuthorizer> auth(new AdminAuthorizer());
  auth->allow_all_ = true;
  return auth;
}

v1::AdminRole AdminAuthorizer::RequiredRole(absl::string_view method) {
  static const std::set<std::string>* const kViewer = new std::set<std::string>{
      "ListSchedules", "ListAgents", "GetVerdicts",         "WatchVerdicts",
      "Analyze",       "Report",     "ServerReflectionInfo"};
  return kViewer->count(std::string(method)) > 0 ? v1::VIEWER : v1::OPERATOR;
}

absl::StatusOr<AdminPrincipal> AdminAuthorizer::Authorize(
    absl::string_view authorization, absl::string_view method) const {
  if (allow_all_) return AdminPrincipal{"anonymous", v1::OPERATOR};
  absl::string_view value = absl::StripAsciiWhitespace(authorization);
  if (value.empty()) {
    ++unauthenticated_;
    LogWarning("admin_unauthenticated",
               {{"method", std::string(method)}, {"reason", "no token"}});
    return absl::UnauthenticatedError(
        "missing authorization: send 'authorization: Bearer <token>' "
        "(canaryctl: --token-file or FLEETCANARY_TOKEN)");
  }
  if (value.size() < 7 ||
      !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    ++unauthenticated_;
    LogWarning("admin_unauthenticated",
               {{"method", std::string(method)}, {"reason", "not bearer"}});
    return absl::UnauthenticatedError("authorization must be 'Bearer <token>'");
  }
  absl::string_view token = absl::StripAsciiWhitespace(value.substr(7));
  const Entry* match = nullptr;
  // Compare against every entry so timing does not reveal which matched.
  for (const Entry& entry : entries_) {
    if (ConstantTimeEquals(entry.token, token)) match = &entry;
  }
  if (match == nullptr) {
    ++unauthenticated_;
    LogWarning("admin_unauthenticated",
               {{"method", std::string(method)}, {"reason", "unknown token"}});
    return absl::UnauthenticatedError("unknown token");
  }
  v1::AdminRole needed = RequiredRole(method);
  if (match->principal.role < needed) {
    ++denied_;
    LogWarning("admin_permission_denied",
               {{"method", std::string(method)},
                {"principal", match->principal.name}});
    return absl::PermissionDeniedError(absl::StrCat(
        "token of \"", match->principal.name, "\" has role ",
        absl::AsciiStrToLower(v1::AdminRole_Name(match->principal.role)), "; ",
        method, " needs ", absl::AsciiStrToLower(v1::AdminRole_Name(needed))));
  }
  return match->principal;
}

}  // namespace fleetcanary
