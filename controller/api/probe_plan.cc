// The plan of an ad-hoc probe run (see probe_plan.h).
#include "controller/api/probe_plan.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "controller/api/admin_validation.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {
namespace {

// The host of an http(s) URL, or "" (the guard has already parsed it).
std::string HostOf(const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return "";
  start += 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(
      start, end == std::string::npos ? std::string::npos : end - start);
  const size_t at = authority.rfind('@');
  if (at != std::string::npos) authority = authority.substr(at + 1);
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    return close == std::string::npos ? "" : authority.substr(1, close - 1);
  }
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos) authority = authority.substr(0, colon);
  return absl::AsciiStrToLower(authority);
}

// The guard for explicit URLs: `options` plus the registered targets' hosts.
absl::StatusOr<std::unique_ptr<TargetGuard>> GuardFor(
    const v1::ListSchedulesResponse& fleet, TargetGuardOptions o) {
  for (const v1::Target& t : fleet.targets()) {
    for (const v1::RegionEndpoints& r : t.regions()) {
      for (const v1::FunctionUrl& u : r.urls()) {
        const std::string host = HostOf(u.url());
        if (!host.empty()) o.allowed_hosts.push_back(host);
      }
    }
  }
  return TargetGuard::Create(std::move(o));
}

}  // namespace

bool TargetsNameRegion(Scheduler* scheduler, const std::string& region) {
  const v1::ListSchedulesResponse fleet = scheduler->ListSchedules();
  for (const v1::Target& t : fleet.targets()) {
    for (const v1::RegionEndpoints& r : t.regions()) {
      if (r.region() == region) return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<RegionPlan>> PlanProbeRun(
    const v1::RunProbeRequest& req, Scheduler* scheduler,
    const TargetGuardOptions& guard_options, uint64_t max_probes_per_run) {
  FC_RETURN_IF_ERROR(CheckRunProbeRequest(req));
  std::vector<RegionPlan> plan;
  std::set<int> modes(req.modes().begin(), req.modes().end());
  if (modes.empty()) modes = {v1::BUFFERED, v1::RESPONSE_STREAM};

  const v1::ListSchedulesResponse fleet = scheduler->ListSchedules();
  // Region -> URLs to probe there.
  std::vector<std::pair<std::string, std::vector<v1::FunctionUrl>>> wanted;
  std::string role_arn;  // Of the registered target.
  std::map<std::string, std::vector<std::string>> live;
  std::set<std::string> known_regions;
  for (const v1::AgentInfo& a : scheduler->ListAgents("")) {
    known_regions.insert(a.region());
    if (a.state() == v1::LIVE) live[a.region()].push_back(a.agent_id());
  }
  if (!req.target().empty()) {
    const v1::Target* target = nullptr;
    for (const v1::Target& t : fleet.targets()) {
      if (t.name() == req.target()) target = &t;
    }
    if (target == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "target: \"", req.target(),
          "\" is not registered (canaryctl schedules list shows targets)"));
    }
    role_arn = target->role_arn();
    auto urls_of = [&](const v1::RegionEndpoints& re) {
      std::vector<v1::FunctionUrl> urls;
      for (const v1::FunctionUrl& u : re.urls()) {
        if (modes.count(u.mode())) urls.push_back(u);
      }
      return urls;
    };
    if (req.regions().empty()) {
      for (const v1::RegionEndpoints& re : target->regions()) {
        wanted.emplace_back(re.region(), urls_of(re));
      }
    } else {
      for (int i = 0; i < req.regions_size(); ++i) {
        const v1::RegionEndpoints* found = nullptr;
        for (const v1::RegionEndpoints& re : target->regions()) {
          if (re.region() == req.regions(i)) found = &re;
        }
        if (found == nullptr) {
          return absl::NotFoundError(
              absl::StrCat("regions[", i, "]: target \"", req.target(),
                           "\" has no region \"", req.regions(i), "\""));
        }
        wanted.emplace_back(found->region(), urls_of(*found));
      }
    }
    for (const auto& [region, urls] : wanted) {
      if (urls.empty()) {
        return Invalid(
            "modes",
            absl::StrCat("target \"", req.target(), "\" region \"", region,
                         "\" has no URL in the requested modes"));
      }
    }
  } else {
    FC_ASSIGN_OR_RETURN(std::unique_ptr<TargetGuard> guard,
                        GuardFor(fleet, guard_options));
    FC_RETURN_IF_ERROR(CheckUrls("urls", req.urls(), *guard));
    for (int i = 0; i < req.urls_size(); ++i) {
      const std::string host = HostOf(req.urls(i).url());
      // An IP literal is checked as the address it will connect to.
      if (guard->CheckAddressText(host).code() ==
          absl::StatusCode::kPermissionDenied) {
        return absl::PermissionDeniedError(absl::StrCat(
            "urls[", i, "].url: ", guard->CheckAddressText(host).message(),
            " (the controller's --target_allow_loopback / "
            "--target_allow_hosts decide)"));
      }
    }
    std::vector<v1::FunctionUrl> urls;
    for (const v1::FunctionUrl& u : req.urls()) {
      if (modes.count(u.mode())) urls.push_back(u);
    }
    if (urls.empty()) {
      return Invalid("modes", "none of the urls is in the requested modes");
    }
    if (req.regions().empty()) {
      for (const auto& [region, agents] : live)
        wanted.emplace_back(region, urls);
      if (wanted.empty()) {
        return absl::FailedPreconditionError(
            "no live agent in any region: start fleetcanary-agent "
            "(canaryctl agents shows the fleet)");
      }
    } else {
      for (int i = 0; i < req.regions_size(); ++i) {
        if (!known_regions.count(req.regions(i)) &&
            !TargetsNameRegion(scheduler, req.regions(i))) {
          return absl::NotFoundError(absl::StrCat(
              "regions[", i, "]: unknown region \"", req.regions(i),
              "\" (no agent has connected from it and no target names it)"));
        }
        wanted.emplace_back(req.regions(i), urls);
      }
    }
  }
  const uint64_t total = static_cast<uint64_t>(req.count()) * req.sizes_size() *
                         modes.size() * wanted.size();
  if (total > max_probes_per_run) {
    return Invalid("count", absl::StrCat(req.count(), " x ", req.sizes_size(),
                                         " sizes x ", modes.size(), " modes x ",
                                         wanted.size(), " regions = ", total,
                                         " probes, above the limit of ",
                                         max_probes_per_run, " per run"));
  }
  for (auto& [region, urls] : wanted) {
    auto it = live.find(region);
    if (it == live.end() || it->second.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "region \"", region,
          "\" has no live agent (canaryctl agents shows the fleet)"));
    }
    std::vector<std::string> agents = it->second;
    std::sort(agents.begin(), agents.end());
    plan.push_back({region, std::move(urls), std::move(agents), role_arn});
  }
  return plan;
}

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary
