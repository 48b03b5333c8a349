// Which malloc this process runs on, for fleetcanary_build_info: a binary
// linked with jemalloc (the controller: see bench/README.md) gets it for
// every allocation, its libraries' included; the others use glibc's.
//
// Thread-safety: safe to call from any thread.
#ifndef FLEETCANARY_COMMON_BUILD_ALLOCATOR_H_
#define FLEETCANARY_COMMON_BUILD_ALLOCATOR_H_

#include <string>

namespace fleetcanary {

// "jemalloc <version>" (e.g.
// "jemalloc 5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c") when jemalloc
// is linked in, else "glibc <version>" (e.g. "glibc 2.36").
std::string AllocatorName();

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_BUILD_ALLOCATOR_H_
