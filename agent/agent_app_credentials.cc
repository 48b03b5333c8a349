#include "agent/agent_app_credentials.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace agent {

RoleCredentials::RoleCredentials(aws::ProviderOptions options,
                                 aws::CredentialsCache* base, Clock* clock)
    : options_(std::move(options)), base_(base), clock_(clock) {}

void RoleCredentials::Ensure(const std::string& role_arn) {
  if (role_arn.empty()) return;
  // The chain's credentials are the source: have them first.
  base_->Start();
  base_->WaitForFirst(absl::Seconds(15)).IgnoreError();
  aws::CredentialsCache* cache = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (caches_.count(role_arn)) return;
    cache = MakeLocked(role_arn);
  }
  if (cache == nullptr) return;
  absl::Status first = cache->WaitForFirst(absl::Seconds(15));
  LogInfo("aws_role_credentials_needed",
          {{"role_arn", role_arn}, {"first_fetch", first.ToString()}});
}

absl::StatusOr<sigv4::Credentials> RoleCredentials::Get(
    const std::string& role_arn) {
  aws::CredentialsCache* cache = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = caches_.find(role_arn);
    cache = it != caches_.end() ? it->second.get() : MakeLocked(role_arn);
  }
  if (cache == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("role ", role_arn, ": cannot make its credentials"));
  }
  return cache->Get();
}

aws::CacheStats RoleCredentials::stats(const std::string& role_arn) {
  absl::MutexLock lock(&mu_);
  auto it = caches_.find(role_arn);
  return it != caches_.end() ? it->second->stats() : aws::CacheStats();
}

void RoleCredentials::SetTargetRoles(std::map<std::string, std::string> roles) {
  absl::MutexLock lock(&mu_);
  target_roles_ = std::move(roles);
}

bool RoleCredentials::HeldFor(const std::string& target, bool chain_held) {
  absl::MutexLock lock(&mu_);
  auto t = target_roles_.find(target);
  if (t == target_roles_.end() || t->second.empty()) return chain_held;
  auto it = caches_.find(t->second);
  return it != caches_.end() && it->second->stats().has_credentials;
}

std::pair<uint64_t, uint64_t> RoleCredentials::totals() {
  absl::MutexLock lock(&mu_);
  uint64_t refreshes = 0, failures = 0;
  for (const auto& [arn, cache] : caches_) {
    const aws::CacheStats st = cache->stats();
    refreshes += st.refreshes_total;
    failures += st.refresh_failures_total;
  }
  return {refreshes, failures};
}

aws::CredentialsCache* RoleCredentials::MakeLocked(
    const std::string& role_arn) {
  // The chain's own credentials are the source: start them too.
  base_->Start();
  aws::CredentialsCache* base = base_;
  auto provider = aws::NewAssumeRoleProvider(
      options_, [base] { return base->Get(); }, role_arn);
  absl::StatusOr<std::unique_ptr<aws::CredentialsCache>> cache =
      aws::CredentialsCache::Create(std::move(provider), clock_);
  if (!cache.ok()) {
    LogError("aws_role_credentials_failed",
             {{"role_arn", role_arn}, {"error", cache.status().ToString()}});
    return nullptr;
  }
  aws::CredentialsCache* raw = cache->get();
  caches_[role_arn] = *std::move(cache);
  return raw;
}

void CredentialsDemandSink::OnAssignments(const v1::AssignmentSet& set) {
  std::map<std::string, std::string> target_roles;
  for (const v1::Assignment& a : set.assignments()) {
    target_roles[a.target()] = a.role_arn();
  }
  roles_->SetTargetRoles(std::move(target_roles));
  for (const v1::Assignment& a : set.assignments()) {
    const bool needs_aws = a.url().auth() == v1::AWS_IAM ||
                           (a.url().has_cloudwatch() && !unsigned_metrics_);
    if (!needs_aws) continue;
    if (!started_) {
      started_ = true;
      cache_->Start();
      absl::Status first = cache_->WaitForFirst(absl::Seconds(15));
      LogInfo("aws_credentials_needed",
              {{"target", a.target()}, {"first_fetch", first.ToString()}});
    }
    // The target's own role, assumed with the chain's credentials.
    roles_->Ensure(a.role_arn());
  }
}

}  // namespace agent
}  // namespace fleetcanary
