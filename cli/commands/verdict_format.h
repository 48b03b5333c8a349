// Verdicts and analysis reports as text for people: aligned tables and one
// line per transition. Shared by `canaryctl verdicts` and `canaryctl
// analyze`.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_CLI_COMMANDS_VERDICT_FORMAT_H_
#define FLEETCANARY_CLI_COMMANDS_VERDICT_FORMAT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace cli {

// KIND, STATE, REGION, TARGET, MODE, SIZE, SINCE, EVIDENCE columns; rows by
// kind, region, target, mode and size (by value).
std::string VerdictTable(const std::vector<v1::Verdict>& verdicts);

// "2024-01-30T10:00:00Z  STREAM_HEALTH  healthy -> suspect  us-east-1/canary/
// stream/1KiB  <summary>"
std::string TransitionLine(const v1::Verdict& v);

// Header lines (span, counts, declared fix) + current verdicts table +
// the transitions timeline.
std::string ReportText(const v1::AnalysisReport& report);

// "buffered"/"stream" (any case, or the enum names) -> mode; "" -> unset.
absl::StatusOr<v1::InvokeMode> ParseMode(const std::string& flag,
                                         const std::string& text);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_VERDICT_FORMAT_H_
