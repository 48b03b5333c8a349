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

// Region -> URLs to probe there, in the order the run reports them.
using WantedRegions =
    std::vector<std::pair<std::string, std::vector<v1::FunctionUrl>>>;

// The agents the Scheduler knows.
struct FleetAgents {
  // Region -> its LIVE agents.
  std::map<std::string, std::vector<std::string>> live;
  // Regions any agent (LIVE or not) connected from.
  std::set<std::string> known_regions;
};

FleetAgents LoadAgents(Scheduler* scheduler) {
  FleetAgents out;
  for (const v1::AgentInfo& a : scheduler->ListAgents("")) {
    out.known_regions.insert(a.region());
    if (a.state() == v1::LIVE) out.live[a.region()].push_back(a.agent_id());
  }
  return out;
}

// The modes the request asks for; none given = both.
std::set<int> RequestedModes(const v1::RunProbeRequest& req) {
  std::set<int> modes(req.modes().begin(), req.modes().end());
  if (modes.empty()) modes = {v1::BUFFERED, v1::RESPONSE_STREAM};
  return modes;
}

std::vector<v1::FunctionUrl> UrlsInModes(
    const google::protobuf::RepeatedPtrField<v1::FunctionUrl>& urls,
    const std::set<int>& modes) {
  std::vector<v1::FunctionUrl> out;
  for (const v1::FunctionUrl& u : urls) {
    if (modes.count(u.mode())) out.push_back(u);
  }
  return out;
}

// The registered target's regions (all, or the requested ones) with its URLs
// in `modes`; `role_arn` is the target's.
absl::Status WantTargetRegions(const v1::RunProbeRequest& req,
                               const v1::ListSchedulesResponse& fleet,
                               const std::set<int>& modes,
                               WantedRegions* wanted, std::string* role_arn) {
  const v1::Target* target = nullptr;
  for (const v1::Target& t : fleet.targets()) {
    if (t.name() == req.target()) target = &t;
  }
  if (target == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "target: \"", req.target(),
        "\" is not registered (canaryctl schedules list shows targets)"));
  }
  *role_arn = target->role_arn();
  if (req.regions().empty()) {
    for (const v1::RegionEndpoints& re : target->regions()) {
      wanted->emplace_back(re.region(), UrlsInModes(re.urls(), modes));
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
      wanted->emplace_back(found->region(), UrlsInModes(found->urls(), modes));
    }
  }
  for (const auto& [region, urls] : *wanted) {
    if (urls.empty()) {
      return Invalid(
          "modes",
          absl::StrCat("target \"", req.target(), "\" region \"", region,
                       "\" has no URL in the requested modes"));
    }
  }
  return absl::OkStatus();
}

// Explicit URLs: allowed by the guard, an IP literal also as an address.
absl::Status CheckExplicitUrls(const v1::RunProbeRequest& req,
                               const v1::ListSchedulesResponse& fleet,
                               const TargetGuardOptions& guard_options) {
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
  return absl::OkStatus();
}

// Explicit URLs in `modes`, to every region with a LIVE agent or to the
// requested (known) regions.
absl::Status WantUrlRegions(const v1::RunProbeRequest& req,
                            const std::set<int>& modes,
                            const FleetAgents& agents, Scheduler* scheduler,
                            WantedRegions* wanted) {
  const std::vector<v1::FunctionUrl> urls = UrlsInModes(req.urls(), modes);
  if (urls.empty()) {
    return Invalid("modes", "none of the urls is in the requested modes");
  }
  if (req.regions().empty()) {
    for (const auto& [region, ids] : agents.live) {
      wanted->emplace_back(region, urls);
    }
    if (wanted->empty()) {
      return absl::FailedPreconditionError(
          "no live agent in any region: start fleetcanary-agent "
          "(canaryctl agents shows the fleet)");
    }
    return absl::OkStatus();
  }
  for (int i = 0; i < req.regions_size(); ++i) {
    if (!agents.known_regions.count(req.regions(i)) &&
        !TargetsNameRegion(scheduler, req.regions(i))) {
      return absl::NotFoundError(absl::StrCat(
          "regions[", i, "]: unknown region \"", req.regions(i),
          "\" (no agent has connected from it and no target names it)"));
    }
    wanted->emplace_back(req.regions(i), urls);
  }
  return absl::OkStatus();
}

// At most `max_probes_per_run` probes: count x sizes x modes x regions.
absl::Status CheckRunSize(const v1::RunProbeRequest& req, size_t modes,
                          size_t regions, uint64_t max_probes_per_run) {
  const uint64_t total =
      static_cast<uint64_t>(req.count()) * req.sizes_size() * modes * regions;
  if (total > max_probes_per_run) {
    return Invalid(
        "count", absl::StrCat(req.count(), " x ", req.sizes_size(), " sizes x ",
                              modes, " modes x ", regions, " regions = ", total,
                              " probes, above the limit of ",
                              max_probes_per_run, " per run"));
  }
  return absl::OkStatus();
}

// Each wanted region with its LIVE agents, sorted.
absl::StatusOr<std::vector<RegionPlan>> AssignAgents(
    WantedRegions wanted, const FleetAgents& agents,
    const std::string& role_arn) {
  std::vector<RegionPlan> plan;
  for (auto& [region, urls] : wanted) {
    auto it = agents.live.find(region);
    if (it == agents.live.end() || it->second.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "region \"", region,
          "\" has no live agent (canaryctl agents shows the fleet)"));
    }
    std::vector<std::string> ids = it->second;
    std::sort(ids.begin(), ids.end());
    plan.push_back({region, std::move(urls), std::move(ids), role_arn});
  }
  return plan;
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
  const std::set<int> modes = RequestedModes(req);
  const v1::ListSchedulesResponse fleet = scheduler->ListSchedules();
  const FleetAgents agents = LoadAgents(scheduler);
  WantedRegions wanted;
  std::string role_arn;  // Of the registered target.
  if (!req.target().empty()) {
    FC_RETURN_IF_ERROR(
        WantTargetRegions(req, fleet, modes, &wanted, &role_arn));
  } else {
    FC_RETURN_IF_ERROR(CheckExplicitUrls(req, fleet, guard_options));
    FC_RETURN_IF_ERROR(WantUrlRegions(req, modes, agents, scheduler, &wanted));
  }
  FC_RETURN_IF_ERROR(
      CheckRunSize(req, modes.size(), wanted.size(), max_probes_per_run));
  return AssignAgents(std::move(wanted), agents, role_arn);
}

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary
