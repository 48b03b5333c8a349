// What this binary is: the release version (CMake project version) and the
// git revision of the tree it was configured from ("unknown" when the tree
// is not a git checkout, e.g. a source tarball or a container build without
// .git). Both are fixed when CMake configures the build.
//
// Thread-safety: constant data.
#ifndef FLEETCANARY_COMMON_BUILD_BUILD_INFO_H_
#define FLEETCANARY_COMMON_BUILD_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace fleetcanary {

// E.g. "0.1.0".
const char* BuildVersion();
// E.g. "3f2a9c1d04be" (the commit's first 12 hex digits), or "unknown".
const char* BuildRevision();
// "<program> <version> (revision <revision>)", the --version line.
std::string VersionLine(absl::string_view program);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_BUILD_BUILD_INFO_H_
