// Internal to agent_app: the AWS credentials an agent signs with beyond its
// provider chain. RoleCredentials holds one refreshing cache per target role
// (Target.role_arn, assumed with STS AssumeRole on the chain's credentials);
// CredentialsDemandSink starts the chain and the roles only once an
// assignment needs them, so an agent without AWS_IAM targets or signed
// CloudWatch reads touches no AWS endpoint at all.
//
// Thread-safety: RoleCredentials is thread-safe. CredentialsDemandSink is
// called on the session's thread only (AssignmentSink contract).
#ifndef FLEETCANARY_AGENT_AGENT_APP_CREDENTIALS_H_
#define FLEETCANARY_AGENT_AGENT_APP_CREDENTIALS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/session/session_protocol.h"
#include "common/aws/credentials.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace agent {

// Per-target roles: one refreshing CredentialsCache per role, whose provider
// assumes the role with STS AssumeRole using the agent's chain credentials
// (`base`). Caches are made the first time a role is needed (an assignment
// or ad-hoc probe names it) and kept; a fleet has few roles. Get() never
// blocks: probes and CloudWatch reads take what is held. Failed refreshes
// are counted and logged by each cache (at most once a minute) and summed
// into the agent's credential counters.
class RoleCredentials {
 public:
  // `base` and `clock` must outlive this object.
  RoleCredentials(aws::ProviderOptions options, aws::CredentialsCache* base,
                  Clock* clock);

  // Makes and starts the cache of `role_arn` if it is new, then waits
  // (bounded) for its first fetch so the first probes do not fail for want
  // of it. Called on the session's thread, never on a probe path. No-op for
  // "" (the chain's own credentials).
  void Ensure(const std::string& role_arn);

  // The held credentials of `role_arn`; UNAVAILABLE when none are held yet
  // (the cache is then made and started, without waiting).
  absl::StatusOr<sigv4::Credentials> Get(const std::string& role_arn);

  // Stats of `role_arn`'s cache (default stats when it has none).
  aws::CacheStats stats(const std::string& role_arn);

  // The role of each assigned target ("" = the chain's own credentials).
  void SetTargetRoles(std::map<std::string, std::string> roles);

  // Whether the credentials that read `target`'s CloudWatch metrics are
  // held: its role's, or `chain_held` for a target without a role.
  bool HeldFor(const std::string& target, bool chain_held);

  // Sums over every role: {refreshes, failed refreshes}.
  std::pair<uint64_t, uint64_t> totals();

 private:
  // Makes, starts and keeps the cache of `role_arn`; nullptr (logged) when
  // it cannot be made.
  aws::CredentialsCache* MakeLocked(const std::string& role_arn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const aws::ProviderOptions options_;
  aws::CredentialsCache* const base_;
  Clock* const clock_;
  // State below is protected by mu_.
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<aws::CredentialsCache>> caches_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> target_roles_ ABSL_GUARDED_BY(mu_);
};

// Starts the credential chain the first time an assignment needs AWS
// credentials (an AWS_IAM Function URL, or a CloudWatch identity read
// signed), and waits (bounded) for that first fetch so the first probes and
// reads do not fail for want of it; then ensures each assigned target's
// role. Until then the agent touches no AWS endpoint at all (no STS, no
// instance metadata). Also records each target's role in `roles`.
class CredentialsDemandSink : public AssignmentSink {
 public:
  // `cache` and `roles` must outlive this object. `unsigned_metrics`:
  // CloudWatch reads are unsigned (they need no credentials).
  CredentialsDemandSink(aws::CredentialsCache* cache, RoleCredentials* roles,
                        bool unsigned_metrics)
      : cache_(cache), roles_(roles), unsigned_metrics_(unsigned_metrics) {}

  void OnAssignments(const v1::AssignmentSet& set) override;

 private:
  aws::CredentialsCache* const cache_;
  RoleCredentials* const roles_;
  const bool unsigned_metrics_;
  bool started_ = false;  // Only touched on the session's thread.
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_AGENT_APP_CREDENTIALS_H_
