// Parsing of the time flags canaryctl commands share (--from, --to,
// --fix-time).
//
// Thread-safety: pure function.
#ifndef FLEETCANARY_CLI_COMMANDS_TIME_FLAG_H_
#define FLEETCANARY_CLI_COMMANDS_TIME_FLAG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace cli {

// The RFC 3339 time `text` given to flag `flag` (e.g. "--from").
// INVALID_ARGUMENT naming the flag and the text, with an example, otherwise.
absl::StatusOr<absl::Time> ParseTimeFlag(const std::string& flag,
                                         const std::string& text);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_TIME_FLAG_H_
