// Structured logging: one line per event, `event=<name> key=value ...`, to
// stderr, through spdlog. Values with spaces or quotes are quoted.
//
// Example:
//   LogInfo("agent_connected", {{"agent", id}, {"region", region}});
//
// Thread-safe. Never log secrets (tokens, keys, signatures).
#ifndef FLEETCANARY_COMMON_LOG_LOG_H_
#define FLEETCANARY_COMMON_LOG_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace fleetcanary {

using LogField = std::pair<absl::string_view, std::string>;

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// Sets the lowest level written (default kInfo). Also read from the
// FLEETCANARY_LOG_LEVEL environment variable (debug|info|warning|error) at
// first use.
void SetLogLevel(LogLevel level);

void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields = {});

inline void LogDebug(absl::string_view event,
                     std::initializer_list<LogField> fields = {}) {
  LogEvent(LogLevel::kDebug, event, fields);
}
inline void LogInfo(absl::string_view event,
                    std::initializer_list<LogField> fields = {}) {
  LogEvent(LogLevel::kInfo, event, fields);
}
inline void LogWarning(absl::string_view event,
                       std::initializer_list<LogField> fields = {}) {
  LogEvent(LogLevel::kWarning, event, fields);
}
inline void LogError(absl::string_view event,
                     std::initializer_list<LogField> fields = {}) {
  LogEvent(LogLevel::kError, event, fields);
}

// Formats one event line without the timestamp/level prefix (for tests).
std::string FormatLogLine(absl::string_view event,
                          std::initializer_list<LogField> fields);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_LOG_LOG_H_
