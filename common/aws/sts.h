// AWS STS client for the credential chain: AssumeRoleWithWebIdentity
// (unsigned; the token is the proof) and AssumeRole (SigV4-signed with the
// caller's credentials, service "sts"). Query protocol: POST form
// "Action=...&Version=2011-06-15&..." and an XML response, parsed with
// libxml2 (network access and entity expansion off).
//
// Thread-safety: every function is thread-safe.
#ifndef FLEETCANARY_COMMON_AWS_STS_H_
#define FLEETCANARY_COMMON_AWS_STS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace aws {

// Credentials with their lifetime and where they came from.
struct AwsCredentials {
  sigv4::Credentials keys;
  // InfiniteFuture() for long-term keys.
  absl::Time expiration = absl::InfiniteFuture();
  // Provider that produced them ("environment", "web-identity", ...).
  std::string provider;
};

struct StsOptions {
  // Endpoint URL ("https://sts.us-east-1.amazonaws.com", or an emulator).
  std::string endpoint;
  // Signing region for AssumeRole.
  std::string region = "us-east-1";
  // Signing time. Not owned; required for AssumeRole.
  Clock* clock = nullptr;
  absl::Duration timeout = absl::Seconds(10);
  // Requested session lifetime; zero = the service default (1 hour).
  absl::Duration duration = absl::ZeroDuration();
};

// STS AssumeRoleWithWebIdentity. Errors name the action: UNAVAILABLE for
// transport failures, throttling and 5xx; PERMISSION_DENIED for
// AccessDenied / InvalidIdentityToken / ExpiredTokenException; DATA_LOSS for a
// malformed response.
absl::StatusOr<AwsCredentials> AssumeRoleWithWebIdentity(
    const StsOptions& options, absl::string_view role_arn,
    absl::string_view session_name, absl::string_view web_identity_token);

// STS AssumeRole signed with `source`. Errors as above.
absl::StatusOr<AwsCredentials> AssumeRole(const StsOptions& options,
                                          const sigv4::Credentials& source,
                                          absl::string_view role_arn,
                                          absl::string_view session_name);

// Parses an STS XML response of `action` ("AssumeRole", ...): the
// <Credentials> of a success, or the <Error> of an ErrorResponse mapped to a
// status. Exposed for tests.
absl::StatusOr<AwsCredentials> ParseStsResponse(absl::string_view action,
                                                long http_status,
                                                absl::string_view xml);

// Parses an ISO 8601 / RFC 3339 UTC timestamp ("2024-01-31T12:00:00Z",
// fractional seconds allowed). INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Time> ParseIso8601(absl::string_view text);

}  // namespace aws
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_AWS_STS_H_
