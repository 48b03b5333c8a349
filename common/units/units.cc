#include "common/units/units.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fleetcanary {
namespace {

struct Unit {
  const char* suffix;
  uint64_t multiplier;
};

// Longest suffixes first so "Ki" wins over "K".
constexpr Unit kUnits[] = {
    {"KiB", 1ULL << 10},     {"MiB", 1ULL << 20},   {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},     {"Ki", 1ULL << 10},    {"Mi", 1ULL << 20},
    {"Gi", 1ULL << 30},      {"Ti", 1ULL << 40},    {"KB", 1000ULL},
    {"MB", 1000000ULL},      {"GB", 1000000000ULL}, {"TB", 1000000000000ULL},
    {"K", 1000ULL},          {"M", 1000000ULL},     {"G", 1000000000ULL},
    {"T", 1000000000000ULL}, {"B", 1ULL},
};

absl::Status BadBytes(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid byte size \"", text, "\": ", why,
                   " (examples: 2, 1Ki, 64KiB, 1Mi)"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseBytes(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (s.empty()) return BadBytes(text, "empty");
  uint64_t multiplier = 1;
  for (const Unit& unit : kUnits) {
    if (absl::ConsumeSuffix(&s, unit.suffix)) {
      multiplier = unit.multiplier;
      break;
    }
  }
  s = absl::StripTrailingAsciiWhitespace(s);
  if (s.empty()) return BadBytes(text, "missing number");
  if (s[0] == '-' || s[0] == '+') return BadBytes(text, "must be non-negative");
  uint64_t whole = 0;
  if (absl::SimpleAtoi(s, &whole)) {
    if (whole > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) /
                    multiplier) {
      return BadBytes(text, "too large");
    }
    return whole * multiplier;
  }
  double value = 0;
  if (multiplier == 1 || !absl::SimpleAtod(s, &value) ||
      !std::isfinite(value)) {
    return BadBytes(text, "not a number");
  }
  double bytes = value * static_cast<double>(multiplier);
  if (bytes < 0 || bytes > 9.2e18) return BadBytes(text, "too large");
  if (bytes != std::floor(bytes)) {
    return BadBytes(text, "not a whole number of bytes");
  }
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<std::vector<uint64_t>> ParseBytesList(absl::string_view text) {
  std::vector<uint64_t> out;
  for (absl::string_view part :
       absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    absl::StatusOr<uint64_t> bytes = ParseBytes(part);
    if (!bytes.ok()) return bytes.status();
    out.push_back(*bytes);
  }
  if (out.empty()) return BadBytes(text, "empty list");
  return out;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr struct {
    const char* suffix;
    int shift;
  } kBinary[] = {{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};
  for (const auto& unit : kBinary) {
    uint64_t m = 1ULL << unit.shift;
    if (bytes >= m && bytes % m == 0) {
      return absl::StrCat(bytes / m, unit.suffix);
    }
  }
  return absl::StrCat(bytes, "B");
}

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  std::string s(absl::StripAsciiWhitespace(text));
  absl::Duration d;
  bool ok = false;
  // absl does not know days; accept a leading "<n>d" part.
  absl::Duration days = absl::ZeroDuration();
  size_t dpos = s.find('d');
  if (dpos != std::string::npos && dpos > 0) {
    int64_t n = 0;
    if (absl::SimpleAtoi(s.substr(0, dpos), &n) && n >= 0) {
      days = absl::Hours(24 * n);
      s = s.substr(dpos + 1);
      if (s.empty()) s = "0";
    }
  }
  ok = absl::ParseDuration(s, &d);
  if (!ok || d == absl::InfiniteDuration() || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", text,
                     "\" (examples: 250ms, 30s, 1m30s, 2h, 1d; must be >= 0)"));
  }
  return days + d;
}

}  // namespace fleetcanary
