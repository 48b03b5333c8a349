#include "cli/commands/time_flag.h"

#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace cli {

absl::StatusOr<absl::Time> ParseTimeFlag(const std::string& flag,
                                         const std::string& text) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return t;
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": \"", text,
                   "\" is not an RFC 3339 time (e.g. 2024-02-04T00:00:00Z)"));
}

}  // namespace cli
}  // namespace fleetcanary
