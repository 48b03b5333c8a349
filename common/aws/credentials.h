// The AWS credential provider chain, in the order AWS SDKs use, and a cache
// that refreshes credentials before they expire.
//
// Chain (first provider that is configured wins; see docs/aws.md):
//   1. environment    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
//                     AWS_SESSION_TOKEN
//   2. web-identity   AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE
//                     (AWS_ROLE_SESSION_NAME) -> STS AssumeRoleWithWebIdentity
//                     (EKS IRSA). The token file is re-read on every refresh.
//   3. profile        AWS_PROFILE (default "default") in
//                     AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and
//                     AWS_CONFIG_FILE (~/.aws/config): static keys,
//                     role_arn + source_profile (STS AssumeRole), or
//                     credential_process.
//   4. container      AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI,
//                     with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or
//                     AWS_CONTAINER_AUTHORIZATION_TOKEN (ECS, EKS Pod
//                     Identity).
//   5. imds           EC2 instance metadata, IMDSv2 (PUT a session token
//                     first), at AWS_EC2_METADATA_SERVICE_ENDPOINT
//                     (default http://169.254.169.254); off with
//                     AWS_EC2_METADATA_DISABLED=true.
// A provider that is not configured answers NOT_FOUND and the chain moves on;
// a configured provider that fails stops the chain with its error (an SDK
// does the same: a broken IRSA setup must not silently fall through to the
// node's instance role). Every error names the provider.
// STS endpoint: AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else the
// partition's regional endpoint for AWS_REGION / AWS_DEFAULT_REGION.
//
// Thread-safety: providers and the cache are thread-safe.
#ifndef FLEETCANARY_COMMON_AWS_CREDENTIALS_H_
#define FLEETCANARY_COMMON_AWS_CREDENTIALS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/aws/sts.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace aws {

// Reads an environment variable; "" when unset.
using EnvLookup = std::function<std::string(absl::string_view name)>;
// The process environment.
EnvLookup ProcessEnvironment();

class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  // Fetches credentials (may block on the network, bounded by the provider's
  // timeouts). NOT_FOUND when this provider is not configured; otherwise an
  // error whose message starts with the provider's name.
  virtual absl::StatusOr<AwsCredentials> Fetch() = 0;
  virtual std::string name() const = 0;
};

struct ProviderOptions {
  EnvLookup env;  // Default: ProcessEnvironment().
  // Not owned; required (signing, expiry checks).
  Clock* clock = nullptr;
  // Region for STS; default AWS_REGION, AWS_DEFAULT_REGION, "us-east-1".
  std::string region;
  std::string session_name = "fleetcanary";
  // Per HTTP exchange with STS, IMDS or the container endpoint.
  absl::Duration http_timeout = absl::Seconds(5);
  // Longest run of a credential_process.
  absl::Duration process_timeout = absl::Seconds(30);
};

// The providers, one by one (for tests and for docs/aws.md's examples).
std::unique_ptr<CredentialsProvider> NewEnvironmentProvider(
    const ProviderOptions& options);
std::unique_ptr<CredentialsProvider> NewWebIdentityProvider(
    const ProviderOptions& options);
std::unique_ptr<CredentialsProvider> NewProfileProvider(
    const ProviderOptions& options);
std::unique_ptr<CredentialsProvider> NewContainerProvider(
    const ProviderOptions& options);
std::unique_ptr<CredentialsProvider> NewImdsProvider(
    const ProviderOptions& options);

// The default chain (above). INVALID_ARGUMENT without a clock. Once a
// provider has answered, the chain keeps asking that one (as SDKs do).
absl::StatusOr<std::unique_ptr<CredentialsProvider>> NewDefaultChain(
    const ProviderOptions& options);

// STS AssumeRole on top of `source` (a per-target role, or a profile's
// role_arn). `source` must outlive the provider.
std::unique_ptr<CredentialsProvider> NewAssumeRoleProvider(
    const ProviderOptions& options,
    std::function<absl::StatusOr<sigv4::Credentials>()> source,
    std::string role_arn);

// The STS endpoint the chain uses (see above).
std::string StsEndpointFromEnv(const EnvLookup& env, absl::string_view region);

struct CacheOptions {
  // Refresh this long before expiry, or at half the lifetime when that is
  // sooner (short-lived credentials).
  absl::Duration refresh_before = absl::Minutes(5);
  // Retry interval after a failed refresh (shortened near expiry).
  absl::Duration retry_interval = absl::Seconds(30);
  // At most one log line per this interval for repeated failures.
  absl::Duration log_interval = absl::Minutes(1);
  // Fetch at once; when false, nothing is fetched (no STS, no IMDS) until
  // Start() -- for a process that may never need AWS.
  bool start_now = true;
};

struct CacheStats {
  bool has_credentials = false;  // Valid (unexpired) credentials held.
  absl::Time expiration = absl::InfinitePast();
  std::string provider;
  uint64_t refreshes_total = 0;
  uint64_t refresh_failures_total = 0;
  std::string last_error;
};

// Holds the current credentials and refreshes them on a background thread
// before they expire. Get() never blocks on the network: callers (probes,
// the CloudWatch reader) read what is held. A failed refresh keeps the old
// credentials until they expire, counts, logs at most once per log_interval
// and is retried.
class CredentialsCache {
 public:
  // `provider` is owned; `clock` must outlive the cache. The thread starts
  // at once and fetches immediately (or at Start() without start_now).
  static absl::StatusOr<std::unique_ptr<CredentialsCache>> Create(
      std::unique_ptr<CredentialsProvider> provider, Clock* clock,
      const CacheOptions& options = CacheOptions());
  ~CredentialsCache();

  // Lets a cache created without start_now fetch. Idempotent.
  void Start();

  // The current credentials; UNAVAILABLE (naming the provider and the last
  // error) when none are held or they expired.
  absl::StatusOr<sigv4::Credentials> Get();
  // Blocks until the first fetch finished (ok or not) or `timeout` of the
  // clock passed; returns Get()'s status.
  absl::Status WaitForFirst(absl::Duration timeout);
  CacheStats stats();

 private:
  CredentialsCache(std::unique_ptr<CredentialsProvider> provider, Clock* clock,
                   const CacheOptions& options);
  void Loop();

  const std::unique_ptr<CredentialsProvider> provider_;
  Clock* const clock_;
  const CacheOptions options_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  AwsCredentials current_ ABSL_GUARDED_BY(mu_);
  bool has_ ABSL_GUARDED_BY(mu_) = false;
  bool attempted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t refreshes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace aws
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_AWS_CREDENTIALS_H_
