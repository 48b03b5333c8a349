// Field checks of the admin API's requests (see admin_validation.h).
#include "controller/api/admin_validation.h"

#include <algorithm>
#include <memory>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/config/loader.h"
#include "common/status/status_util.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {
namespace {

using google::protobuf::util::TimeUtil;

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Nanoseconds(TimeUtil::DurationToNanoseconds(d));
}

std::string ModeName(v1::InvokeMode m) { return v1::InvokeMode_Name(m); }

// [a-z0-9-]+, not starting or ending with '-'.
bool ValidName(const std::string& s) {
  if (s.empty() || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool ValidMode(v1::InvokeMode m) {
  return m == v1::BUFFERED || m == v1::RESPONSE_STREAM;
}

absl::Status CheckLimits(const std::string& field, const v1::ProbeLimits& l) {
  for (const auto& [name, d] :
       std::vector<std::pair<const char*, const google::protobuf::Duration*>>{
           {"timeout", &l.timeout()},
           {"stall_limit", &l.stall_limit()},
           {"connect_timeout", &l.connect_timeout()}}) {
    if (d->seconds() < 0 || d->nanos() < 0) {
      return Invalid(absl::StrCat(field, ".", name), "must not be negative");
    }
    if (FromProto(*d) > absl::Hours(1)) {
      return Invalid(absl::StrCat(field, ".", name), "at most 1h");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(const std::string& field,
                            const v1::TransportOptions& t) {
  if (!t.http_version().empty() && t.http_version() != "1.1" &&
      t.http_version() != "2") {
    return Invalid(absl::StrCat(field, ".http_version"),
                   absl::StrCat("\"", t.http_version(), "\" is not 1.1 or 2"));
  }
  return absl::OkStatus();
}

absl::Status CheckSizes(const std::string& field,
                        const google::protobuf::RepeatedField<uint64_t>& sizes,
                        const v1::ProbeLimits& limits) {
  std::set<uint64_t> seen;
  for (int i = 0; i < sizes.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (sizes[i] == 0) return Invalid(f, "must be > 0");
    if (limits.max_body_bytes() != 0 && sizes[i] > limits.max_body_bytes()) {
      return Invalid(f,
                     absl::StrCat(sizes[i], " is above limits.max_body_bytes ",
                                  limits.max_body_bytes()));
    }
    if (!seen.insert(sizes[i]).second) {
      return Invalid(f, absl::StrCat("duplicate size ", sizes[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModes(const std::string& field,
                        const google::protobuf::RepeatedField<int>& modes) {
  std::set<int> seen;
  for (int i = 0; i < modes.size(); ++i) {
    const auto m = static_cast<v1::InvokeMode>(modes[i]);
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (!ValidMode(m)) return Invalid(f, "must be BUFFERED or RESPONSE_STREAM");
    if (!seen.insert(m).second) {
      return Invalid(f, absl::StrCat("duplicate mode ", ModeName(m)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRegionNames(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<std::string>& regions) {
  std::set<std::string> seen;
  for (int i = 0; i < regions.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (regions[i].empty()) return Invalid(f, "must not be empty");
    if (!seen.insert(regions[i]).second) {
      return Invalid(f, absl::StrCat("duplicate region \"", regions[i], "\""));
    }
  }
  return absl::OkStatus();
}

// URLs of one region: modes set, each at most once, parseable http(s).
absl::Status CheckUrls(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<v1::FunctionUrl>& urls,
    const TargetGuard& guard) {
  std::set<int> modes;
  for (int i = 0; i < urls.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    const v1::FunctionUrl& u = urls[i];
    if (!ValidMode(u.mode())) {
      return Invalid(f + ".mode", "must be BUFFERED or RESPONSE_STREAM");
    }
    if (!modes.insert(u.mode()).second) {
      return Invalid(f + ".mode",
                     absl::StrCat("two URLs for ", ModeName(u.mode())));
    }
    absl::Status s = guard.CheckUrl(u.url());
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(f, ".url: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFilter(const std::string& field, const v1::StreamKey& key) {
  FC_RETURN_IF_ERROR(ValidateMessage(key));
  for (const auto& [name, value, max] :
       std::vector<std::tuple<const char*, const std::string*, size_t>>{
           {"region", &key.region(), 64},
           {"target", &key.target(), 63},
           {"size_class", &key.size_class(), 32}}) {
    if (value->size() > max) {
      return Invalid(absl::StrCat(field, ".", name),
                     absl::StrCat("at most ", max, " characters"));
    }
  }
  if (key.mode() != v1::INVOKE_MODE_UNSPECIFIED && !ValidMode(key.mode())) {
    return Invalid(field + ".mode", "must be BUFFERED or RESPONSE_STREAM");
  }
  return absl::OkStatus();
}

namespace {

// `name` of `kind` ("target", "id") at `field`: a ValidName, not in `seen`
// (added to it).
absl::Status CheckNewName(const std::string& field, const std::string& kind,
                          const std::string& name,
                          std::set<std::string>* seen) {
  if (!ValidName(name)) {
    return Invalid(field, absl::StrCat("\"", name,
                                       "\" must be lowercase letters, digits "
                                       "and '-'"));
  }
  if (!seen->insert(name).second) {
    return Invalid(field, absl::StrCat("duplicate ", kind, " \"", name, "\""));
  }
  return absl::OkStatus();
}

// Each timestamp (unset = the epoch) within the range protobuf allows.
absl::Status CheckTimestamps(const google::protobuf::Timestamp& from,
                             const google::protobuf::Timestamp& to,
                             const google::protobuf::Timestamp& fix_time) {
  for (const auto& [name, t] :
       std::vector<std::pair<const char*, const google::protobuf::Timestamp*>>{
           {"from", &from}, {"to", &to}, {"declared_fix_time", &fix_time}}) {
    if (t->seconds() < TimeUtil::kTimestampMinSeconds ||
        t->seconds() > TimeUtil::kTimestampMaxSeconds || t->nanos() < 0 ||
        t->nanos() > 999999999) {
      return Invalid(name, "not a valid timestamp");
    }
  }
  return absl::OkStatus();
}

// ApplySchedules' targets (see CheckApplySchedules).
absl::Status CheckTargets(
    const google::protobuf::RepeatedPtrField<v1::Target>& targets) {
  std::unique_ptr<TargetGuard> syntax = TargetGuard::AllowAll();
  std::set<std::string> names;
  for (int i = 0; i < targets.size(); ++i) {
    const v1::Target& t = targets[i];
    const std::string f = absl::StrCat("targets[", i, "]");
    FC_RETURN_IF_ERROR(CheckNewName(f + ".name", "target", t.name(), &names));
    std::set<std::string> regions;
    for (int r = 0; r < t.regions_size(); ++r) {
      const v1::RegionEndpoints& re = t.regions(r);
      const std::string rf = absl::StrCat(f, ".regions[", r, "]");
      if (!regions.insert(re.region()).second) {
        return Invalid(rf + ".region",
                       absl::StrCat("duplicate region \"", re.region(), "\""));
      }
      FC_RETURN_IF_ERROR(CheckUrls(rf + ".urls", re.urls(), *syntax));
    }
  }
  return absl::OkStatus();
}

// ApplySchedules' schedules (see CheckApplySchedules).
absl::Status CheckSchedules(
    const google::protobuf::RepeatedPtrField<v1::Schedule>& schedules) {
  std::set<std::string> ids;
  for (int i = 0; i < schedules.size(); ++i) {
    const v1::Schedule& s = schedules[i];
    const std::string f = absl::StrCat("schedules[", i, "]");
    FC_RETURN_IF_ERROR(CheckNewName(f + ".id", "id", s.id(), &ids));
    FC_RETURN_IF_ERROR(CheckRegionNames(f + ".regions", s.regions()));
    FC_RETURN_IF_ERROR(CheckModes(f + ".modes", s.modes()));
    FC_RETURN_IF_ERROR(CheckSizes(f + ".sizes", s.sizes(), s.limits()));
    if (!(s.rate_per_second() > 0)) {
      return Invalid(f + ".rate_per_second", "required, > 0");
    }
    FC_RETURN_IF_ERROR(CheckLimits(f + ".limits", s.limits()));
    FC_RETURN_IF_ERROR(CheckTransport(f + ".transport", s.transport()));
    if (s.chunk_gap().seconds() < 0 || s.chunk_gap().nanos() < 0) {
      return Invalid(f + ".chunk_gap", "must not be negative");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckApplySchedules(const v1::ApplySchedulesRequest& request) {
  FC_RETURN_IF_ERROR(ValidateMessage(request));
  FC_RETURN_IF_ERROR(CheckTargets(request.targets()));
  return CheckSchedules(request.schedules());
}

absl::Status CheckRunProbeRequest(const v1::RunProbeRequest& req) {
  FC_RETURN_IF_ERROR(ValidateMessage(req));
  if (req.target().empty() && req.urls().empty()) {
    return Invalid("target",
                   "give a registered target or explicit urls to probe");
  }
  if (!req.target().empty() && !req.urls().empty()) {
    return Invalid("urls", "give either a target or urls, not both");
  }
  if (req.count() == 0) return Invalid("count", "required (1 to 10000)");
  FC_RETURN_IF_ERROR(CheckModes("modes", req.modes()));
  FC_RETURN_IF_ERROR(CheckSizes("sizes", req.sizes(), req.limits()));
  FC_RETURN_IF_ERROR(CheckRegionNames("regions", req.regions()));
  FC_RETURN_IF_ERROR(CheckLimits("limits", req.limits()));
  FC_RETURN_IF_ERROR(CheckTransport("transport", req.transport()));
  return absl::OkStatus();
}

absl::Status CheckAnalyzeRequest(const v1::AnalyzeRequest& request) {
  FC_RETURN_IF_ERROR(ValidateMessage(request));
  FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
  FC_RETURN_IF_ERROR(CheckTimestamps(request.from(), request.to(),
                                     request.declared_fix_time()));
  if (request.has_from() && request.has_to() &&
      TimeUtil::TimestampToNanoseconds(request.from()) >=
          TimeUtil::TimestampToNanoseconds(request.to())) {
    return Invalid("from", "must be before to");
  }
  return absl::OkStatus();
}

absl::Status CheckReportRequest(const v1::ReportRequest& request) {
  FC_RETURN_IF_ERROR(ValidateMessage(request));
  if (request.target().empty()) return Invalid("target", "required");
  for (int i = 0; i < request.regions_size(); ++i) {
    if (request.regions(i).empty()) {
      return Invalid(absl::StrCat("regions[", i, "]"), "must not be empty");
    }
  }
  FC_RETURN_IF_ERROR(CheckTimestamps(request.from(), request.to(),
                                     request.declared_fix_time()));
  if (!request.has_from()) return Invalid("from", "required");
  if (!request.has_to()) return Invalid("to", "required");
  const absl::Time from =
      absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.from()));
  const absl::Time to =
      absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.to()));
  if (from >= to) return Invalid("from", "must be before to");
  return absl::OkStatus();
}

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary
