// Field checks of the admin API's requests (internal to controller/api/;
// the public interface is admin_core.h). Each check returns OK or an
// INVALID_ARGUMENT whose message starts with the offending field's path as
// the caller names it ("schedules[2].sizes[0]: must be > 0"), except the
// target guard's refusals, which keep the guard's code (PERMISSION_DENIED).
// Checks never look at the fleet: whether a target, region or agent exists
// is decided elsewhere (probe_plan.h, the Scheduler).
//
// Thread-safety: pure functions.
#ifndef FLEETCANARY_CONTROLLER_API_ADMIN_VALIDATION_H_
#define FLEETCANARY_CONTROLLER_API_ADMIN_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/net/target_guard.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary {
namespace controller {
namespace admin_internal {

// INVALID_ARGUMENT "<field>: <what>".
absl::Status Invalid(const std::string& field, const std::string& what);

// BUFFERED or RESPONSE_STREAM.
bool ValidMode(v1::InvokeMode m);

// timeout, stall_limit and connect_timeout: not negative, at most 1h.
absl::Status CheckLimits(const std::string& field, const v1::ProbeLimits& l);

// http_version: "", "1.1" or "2".
absl::Status CheckTransport(const std::string& field,
                            const v1::TransportOptions& t);

// Each size > 0, within limits.max_body_bytes (when set), no duplicates.
absl::Status CheckSizes(const std::string& field,
                        const google::protobuf::RepeatedField<uint64_t>& sizes,
                        const v1::ProbeLimits& limits);

// Each mode valid (ValidMode), no duplicates.
absl::Status CheckModes(const std::string& field,
                        const google::protobuf::RepeatedField<int>& modes);

// Each region named, no duplicates.
absl::Status CheckRegionNames(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<std::string>& regions);

// URLs of one region: modes valid, each at most once, and every URL allowed
// by `guard` (its status code and message, prefixed with the field).
absl::Status CheckUrls(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<v1::FunctionUrl>& urls,
    const TargetGuard& guard);

// A stream filter: a valid message, region <= 64, target <= 63 and
// size_class <= 32 characters, mode unset or valid.
absl::Status CheckFilter(const std::string& field, const v1::StreamKey& key);

// ApplySchedules: targets named [a-z0-9-]+ (not starting or ending with
// '-'), each once, each region once per target, URLs well-formed (any
// host); schedules with such ids, each once, with valid regions, modes,
// sizes, limits and transport, rate_per_second > 0 and chunk_gap not
// negative. Whether targets and regions exist is the Scheduler's check.
absl::Status CheckApplySchedules(const v1::ApplySchedulesRequest& request);

// RunProbe, without the fleet: a valid message, either a target or urls,
// count > 0, valid modes, sizes, region names, limits and transport.
absl::Status CheckRunProbeRequest(const v1::RunProbeRequest& request);

// Analyze: a valid message and filter, valid timestamps, from < to when
// both are set.
absl::Status CheckAnalyzeRequest(const v1::AnalyzeRequest& request);

// Report: a valid message, target required, region names not empty, valid
// timestamps, from and to required with from < to.
absl::Status CheckReportRequest(const v1::ReportRequest& request);

}  // namespace admin_internal
}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_ADMIN_VALIDATION_H_
