// Human units used in config files, flags and CLI input: byte sizes ("2",
// "1Ki", "64KiB", "1Mi", "1.5M") and durations ("250ms", "30s", "1m30s").
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_COMMON_UNITS_UNITS_H_
#define FLEETCANARY_COMMON_UNITS_UNITS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {

// Parses a byte count. Accepts a non-negative integer optionally followed by a
// unit: K/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti (powers of 1024), each with an
// optional trailing "B"; a decimal fraction is allowed with a unit when the
// result is a whole number of bytes ("1.5Ki" = 1536).
// Returns INVALID_ARGUMENT with the offending text on anything else, including
// overflow past 2^63.
absl::StatusOr<uint64_t> ParseBytes(absl::string_view text);

// Parses a comma-separated list of byte counts ("2,1Ki,64Ki").
absl::StatusOr<std::vector<uint64_t>> ParseBytesList(absl::string_view text);

// Formats a byte count the way people write it: exact binary multiples as
// "1KiB"/"64KiB"/"1MiB", everything else as "<n>B". Used for the size_class
// metric label, so it must stay stable.
std::string FormatBytes(uint64_t bytes);

// Parses a duration such as "250ms", "30s", "1m30s", "1.5h", "2d" (days).
// Negative durations and infinity are refused with INVALID_ARGUMENT.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_UNITS_UNITS_H_
