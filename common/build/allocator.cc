#include "common/build/allocator.h"

#include <gnu/libc-version.h>

#include <cstddef>

#include "absl/strings/str_cat.h"

// jemalloc's control interface. Weak: null unless the binary links jemalloc,
// which is how we tell without a build-time switch.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp,
                       void* newp, size_t newlen) __attribute__((weak));

namespace fleetcanary {

std::string AllocatorName() {
  if (mallctl != nullptr) {
    const char* version = nullptr;
    size_t size = sizeof(version);
    if (mallctl("version", &version, &size, nullptr, 0) == 0 &&
        version != nullptr) {
      return absl::StrCat("jemalloc ", version);
    }
    return "jemalloc";
  }
  return absl::StrCat("glibc ", gnu_get_libc_version());
}

}  // namespace fleetcanary
