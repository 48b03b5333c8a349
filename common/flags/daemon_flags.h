// Command-line parsing shared by the daemons (fleetcanary-controller,
// fleetcanary-agent, function-url-emulator): absl flags with
//   --help / --helpshort   the program's own flags, each with its default;
//   --helpfull             every flag linked in (absl's included);
//   --version              VersionLine(program), e.g.
//                          "fleetcanary-agent 0.1.0 (revision 3f2a9c1d04be)".
// A program's own flags are the ones defined in a main.cc (every daemon
// defines its flags there). Also what every daemon's main() does around its
// flags: flags overriding the YAML config, and the stop signals.
//
// Thread-safety: call from main() before starting threads.
#ifndef FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_
#define FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_

#include <signal.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/duration.pb.h"

namespace fleetcanary {

// Installs the usage configuration and `usage` (the text printed above the
// flags), parses argv and returns the positional arguments (argv[0] first).
// Exits the process for --help*, --version and unknown or malformed flags,
// as absl::ParseCommandLine does. Also installs absl's failure signal
// handler: a daemon that crashes (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP) writes "*** SIG... received ***" and a symbolized stack trace of
// the failing thread to stderr, then dies of the same signal, so its log says
// why it stopped (the stop signals are taken by sigwait once blocked, see
// BlockStopSignals).
std::vector<char*> ParseDaemonFlags(int argc, char** argv,
                                    absl::string_view program,
                                    absl::string_view usage);

// True for a flag defined in one of our daemons' main.cc files; the filter
// of --help. Exposed for tests.
bool IsDaemonFlagFile(absl::string_view filename);

// A flag overriding a config field: an empty flag keeps the config's value.
//
// Example:
//   OverrideFromFlag(absl::GetFlag(FLAGS_data_dir), config.mutable_data_dir());
void OverrideFromFlag(const std::string& flag, std::string* field);

// Same for a duration flag ("10s", "1m30s"), named `name` in errors: sets
// *field unless `flag` is empty; INVALID_ARGUMENT "--<name>: <reason>" (and
// *field untouched) when it is not a duration.
absl::Status OverrideFromFlag(const std::string& flag, absl::string_view name,
                              google::protobuf::Duration* field);

// Blocks SIGTERM and SIGINT in the calling thread, and so in every thread it
// starts afterwards, and returns that set: main() then takes a stop signal
// synchronously with sigwait(). Call before starting any thread.
sigset_t BlockStopSignals();

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_
