// Private to the AWS credential chain (credentials.h): helpers the
// providers share, and the STS AssumeRole provider that profiles build on.
// The providers live in credentials.cc (environment, web identity, assume
// role, container, IMDS, the chain) and profile_provider.cc (shared config
// and credentials files, credential_process); the cache in
// credentials_cache.cc.
//
// Thread-safety: the functions are thread-safe; AssumeRoleProvider is as
// thread-safe as its source.
#ifndef FLEETCANARY_COMMON_AWS_CREDENTIALS_INTERNAL_H_
#define FLEETCANARY_COMMON_AWS_CREDENTIALS_INTERNAL_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/aws/credentials.h"
#include "common/aws/sts.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace aws {
namespace credentials_internal {

// Largest token file (web identity, container authorization) read.
constexpr size_t kMaxTokenFileBytes = 64 * 1024;

// `o` with the defaults filled in (env: ProcessEnvironment()).
ProviderOptions WithDefaults(ProviderOptions o);

// `s` with its message prefixed by "provider: " unless it already starts
// with `provider`.
absl::Status Prefixed(absl::string_view provider, const absl::Status& s);

// The region for STS: options.region, else AWS_REGION, AWS_DEFAULT_REGION,
// else "us-east-1".
std::string Region(const ProviderOptions& o);

// STS client options for a provider: Region(o), its endpoint
// (StsEndpointFromEnv), clock and HTTP timeout.
StsOptions StsOptionsFor(const ProviderOptions& o);

// Reads a small file whole (at most kMaxTokenFileBytes), trimmed of
// whitespace. FAILED_PRECONDITION naming `what` and `path` when it cannot be
// read or is larger.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what);

// Credentials JSON as served by the container endpoint, IMDS and
// credential_process ({AccessKeyId, SecretAccessKey, Token|SessionToken,
// Expiration}). Errors name `provider`: DATA_LOSS for a malformed answer,
// UNAVAILABLE for a Code other than Success, FAILED_PRECONDITION for
// credentials already expired at clock->Now().
absl::StatusOr<AwsCredentials> ParseCredentialsJson(absl::string_view provider,
                                                    absl::string_view body,
                                                    Clock* clock,
                                                    bool require_expiration);

// STS AssumeRole of `role_arn` with the credentials `source` returns; named
// (and its errors prefixed) `label`. A source that is not configured
// (NOT_FOUND) is FAILED_PRECONDITION here.
class AssumeRoleProvider : public CredentialsProvider {
 public:
  AssumeRoleProvider(const ProviderOptions& o,
                     std::function<absl::StatusOr<sigv4::Credentials>()> source,
                     std::string role_arn, std::string label);
  std::string name() const override { return label_; }
  absl::StatusOr<AwsCredentials> Fetch() override;

 private:
  const ProviderOptions o_;
  const std::function<absl::StatusOr<sigv4::Credentials>()> source_;
  const std::string role_arn_;
  const std::string label_;
};

}  // namespace credentials_internal
}  // namespace aws
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_AWS_CREDENTIALS_INTERNAL_H_
