// CredentialsCache: holds the chain's credentials and refreshes them on a
// background thread before they expire.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/aws/credentials.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace aws {

absl::StatusOr<std::unique_ptr<CredentialsCache>> CredentialsCache::Create(
    std::unique_ptr<CredentialsProvider> provider, Clock* clock,
    const CacheOptions& options) {
  if (provider == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "CredentialsCache: provider and clock are required");
  }
  if (options.retry_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "CacheOptions.retry_interval: must be positive");
  }
  std::unique_ptr<CredentialsCache> cache(
      new CredentialsCache(std::move(provider), clock, options));
  if (options.start_now) cache->Start();
  cache->thread_ = std::thread([c = cache.get()] { c->Loop(); });
  return cache;
}

CredentialsCache::CredentialsCache(
    std::unique_ptr<CredentialsProvider> provider, Clock* clock,
    const CacheOptions& options)
    : provider_(std::move(provider)), clock_(clock), options_(options) {}

CredentialsCache::~CredentialsCache() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CredentialsCache::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
}

absl::StatusOr<sigv4::Credentials> CredentialsCache::Get() {
  absl::MutexLock lock(&mu_);
  if (has_ && clock_->Now() < current_.expiration) return current_.keys;
  if (has_) {
    return absl::UnavailableError(
        absl::StrCat("AWS credentials from ", current_.provider, " expired at ",
                     absl::FormatTime(absl::RFC3339_sec, current_.expiration,
                                      absl::UTCTimeZone()),
                     "; last refresh error: ", last_error_));
  }
  return absl::UnavailableError(absl::StrCat(
      "no AWS credentials: ",
      attempted_ ? last_error_
      : started_ ? std::string("first fetch in progress")
                 : std::string("not needed so far (no AWS_IAM target or "
                               "signed CloudWatch read assigned)")));
}

absl::Status CredentialsCache::WaitForFirst(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&attempted_), timeout);
  }
  return Get().status();
}

CacheStats CredentialsCache::stats() {
  absl::MutexLock lock(&mu_);
  CacheStats s;
  s.has_credentials = has_ && clock_->Now() < current_.expiration;
  s.expiration = has_ ? current_.expiration : absl::InfinitePast();
  s.provider = current_.provider;
  s.refreshes_total = refreshes_;
  s.refresh_failures_total = failures_;
  s.last_error = last_error_;
  return s;
}

void CredentialsCache::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CredentialsCache* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return c->started_ || c->stopping_;
          },
          this));
      if (stopping_) return;
      const absl::Duration wait = next_refresh_ - clock_->Now();
      if (wait > absl::ZeroDuration()) {
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_), wait);
      }
      if (stopping_) return;
      if (next_refresh_ > clock_->Now()) continue;
    }
    absl::StatusOr<AwsCredentials> fetched = provider_->Fetch();
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    attempted_ = true;
    if (fetched.ok() && fetched->expiration > now) {
      current_ = *std::move(fetched);
      has_ = true;
      ++refreshes_;
      last_error_.clear();
      if (current_.expiration == absl::InfiniteFuture()) {
        next_refresh_ = absl::InfiniteFuture();
      } else {
        const absl::Duration lifetime = current_.expiration - now;
        next_refresh_ = current_.expiration -
                        std::min(options_.refresh_before, lifetime / 2);
      }
      LogInfo("aws_credentials_refreshed",
              {{"provider", current_.provider},
               {"expires",
                current_.expiration == absl::InfiniteFuture()
                    ? std::string("never")
                    : absl::FormatTime(absl::RFC3339_sec, current_.expiration,
                                       absl::UTCTimeZone())}});
      continue;
    }
    ++failures_;
    last_error_ = fetched.ok() ? absl::StrCat(fetched->provider,
                                              ": credentials already expired")
                               : fetched.status().ToString();
    absl::Duration retry = options_.retry_interval;
    if (!has_ && !fetched.ok() &&
        fetched.status().code() == absl::StatusCode::kNotFound) {
      // Nothing configured at all (a demo without AWS): look again now and
      // then rather than probing IMDS every few seconds.
      retry = std::max(retry, absl::Minutes(5));
    }
    if (has_ && current_.expiration > now) {
      // Try more often as expiry nears, never less than every second.
      retry = std::min(
          retry, std::max(absl::Seconds(1), (current_.expiration - now) / 4));
    }
    next_refresh_ = now + retry;
    if (now - last_log_ >= options_.log_interval) {
      last_log_ = now;
      LogWarning("aws_credentials_refresh_failed",
                 {{"error", last_error_},
                  {"failures", absl::StrCat(failures_)},
                  {"holding", has_ && current_.expiration > now
                                  ? "previous credentials"
                                  : "none"}});
    }
  }
}

}  // namespace aws
}  // namespace fleetcanary
