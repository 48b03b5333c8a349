#include "common/flags/daemon_flags.h"

#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/build/build_info.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {

bool IsDaemonFlagFile(absl::string_view filename) {
  return filename == "main.cc" || absl::EndsWith(filename, "/main.cc");
}

std::vector<char*> ParseDaemonFlags(int argc, char** argv,
                                    absl::string_view program,
                                    absl::string_view usage) {
  // The usage config keeps its callbacks; the version line must outlive us.
  static std::string* version = nullptr;
  if (version == nullptr) version = new std::string(VersionLine(program));
  absl::FlagsUsageConfig config;
  config.contains_helpshort_flags = IsDaemonFlagFile;
  config.contains_help_flags = IsDaemonFlagFile;
  config.version_string = [] { return *version + "\n"; };
  // "Flags from controller/server/main.cc", not "../controller/...".
  config.normalize_filename = [](absl::string_view f) {
    while (absl::ConsumePrefix(&f, "../") || absl::ConsumePrefix(&f, "./")) {
    }
    return std::string(f);
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  if (argc > 0) absl::InitializeSymbolizer(argv[0]);
  absl::InstallFailureSignalHandler(absl::FailureSignalHandlerOptions());
  return absl::ParseCommandLine(argc, argv);
}

void OverrideFromFlag(const std::string& flag, std::string* field) {
  if (!flag.empty()) *field = flag;
}

absl::Status OverrideFromFlag(const std::string& flag, absl::string_view name,
                              google::protobuf::Duration* field) {
  if (flag.empty()) return absl::OkStatus();
  absl::StatusOr<absl::Duration> d = ParseDuration(flag);
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": ", d.status().message()));
  }
  *field = DurationToProto(*d);
  return absl::OkStatus();
}

sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

}  // namespace fleetcanary
