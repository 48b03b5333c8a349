// The admin/watch side of the verdict service: current verdicts,
// subscriptions and Analyze (verdict_service_impl.h).
#include <memory>
#include <utility>
#include <vector>

#include "controller/api/verdict_source.h"
#include "controller/verdicts/verdict_service.h"
#include "controller/verdicts/verdict_service_impl.h"

namespace fleetcanary {
namespace controller {

// The same rule as the store-backed source's: one definition, in the
// VerdictSource interface both implement.
bool VerdictFilterMatches(const v1::StreamKey& filter,
                          const v1::StreamKey& key) {
  return VerdictKeyMatches(filter, key);
}

namespace verdicts_internal {
namespace {

class SubscriptionImpl : public VerdictSource::Subscription {
 public:
  SubscriptionImpl(VerdictServiceImpl* service, uint64_t id)
      : service_(service), id_(id) {}
  ~SubscriptionImpl() override { service_->Unsubscribe(id_); }

 private:
  VerdictServiceImpl* const service_;
  const uint64_t id_;
};

}  // namespace

absl::StatusOr<std::vector<v1::Verdict>> VerdictServiceImpl::Current(
    const v1::StreamKey& filter, bool include_healthy) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Verdict> out;
  for (const auto& [id, v] : published_) {
    if (!include_healthy && v.state() == v1::HEALTHY) continue;
    if (!VerdictFilterMatches(filter, v.key())) continue;
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<v1::AnalysisReport> VerdictServiceImpl::Analyze(
    const v1::AnalyzeRequest& request) {
  if (options_.analyzer == nullptr) {
    return absl::UnimplementedError("Analyze: no analyzer configured");
  }
  return options_.analyzer->Analyze(request);
}

std::unique_ptr<VerdictSource::Subscription> VerdictServiceImpl::Subscribe(
    const v1::StreamKey& filter, Callback callback) {
  absl::MutexLock lock(&subs_mu_);
  const uint64_t id = next_subscriber_++;
  subscribers_[id] = Subscriber{filter, std::move(callback)};
  return std::make_unique<SubscriptionImpl>(this, id);
}

void VerdictServiceImpl::Deliver(const std::vector<v1::Verdict>& verdicts) {
  if (verdicts.empty()) return;
  absl::MutexLock lock(&subs_mu_);
  for (const v1::Verdict& v : verdicts) {
    for (const auto& [id, sub] : subscribers_) {
      if (VerdictFilterMatches(sub.filter, v.key())) sub.callback(v);
    }
  }
}

}  // namespace verdicts_internal
}  // namespace controller
}  // namespace fleetcanary
