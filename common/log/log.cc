#include "common/log/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace fleetcanary {
namespace {

spdlog::level::level_enum ToSpd(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarning:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

spdlog::logger& Logger() {
  static spdlog::logger* const logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto* l = new spdlog::logger("fleetcanary", sink);
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ level=%l %v",
                   spdlog::pattern_time_type::utc);
    l->set_level(spdlog::level::info);
    if (const char* env = std::getenv("FLEETCANARY_LOG_LEVEL")) {
      l->set_level(spdlog::level::from_str(env));
    }
    return l;
  }();
  return *logger;
}

void AppendValue(std::string* out, absl::string_view value) {
  bool needs_quotes = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') {
      needs_quotes = true;
      break;
    }
  }
  if (!needs_quotes) {
    absl::StrAppend(out, value);
    return;
  }
  std::string escaped = absl::StrReplaceAll(
      value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}, {"\t", "\\t"}});
  absl::StrAppend(out, "\"", escaped, "\"");
}

}  // namespace

void SetLogLevel(LogLevel level) { Logger().set_level(ToSpd(level)); }

std::string FormatLogLine(absl::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line = absl::StrCat("event=", event);
  for (const LogField& field : fields) {
    absl::StrAppend(&line, " ", field.first, "=");
    AppendValue(&line, field.second);
  }
  return line;
}

void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields) {
  spdlog::logger& logger = Logger();
  if (!logger.should_log(ToSpd(level))) return;
  logger.log(ToSpd(level), FormatLogLine(event, fields));
}

}  // namespace fleetcanary
