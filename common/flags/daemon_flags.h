// Command-line parsing shared by the daemons (fleetcanary-controller,
// fleetcanary-agent, function-url-emulator): absl flags with
//   --help / --helpshort   the program's own flags, each with its default;
//   --helpfull             every flag linked in (absl's included);
//   --version              VersionLine(program), e.g.
//                          "fleetcanary-agent 0.1.0 (revision 3f2a9c1d04be)".
// A program's own flags are the ones defined in a main.cc (every daemon
// defines its flags there).
//
// Thread-safety: call once from main() before starting threads.
#ifndef FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_
#define FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace fleetcanary {

// Installs the usage configuration and `usage` (the text printed above the
// flags), parses argv and returns the positional arguments (argv[0] first).
// Exits the process for --help*, --version and unknown or malformed flags,
// as absl::ParseCommandLine does.
std::vector<char*> ParseDaemonFlags(int argc, char** argv,
                                    absl::string_view program,
                                    absl::string_view usage);

// True for a flag defined in one of our daemons' main.cc files; the filter
// of --help. Exposed for tests.
bool IsDaemonFlagFile(absl::string_view filename);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_FLAGS_DAEMON_FLAGS_H_
