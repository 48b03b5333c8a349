#include "common/proto/invoke_mode.h"

namespace fleetcanary {

std::string InvokeModeName(v1::InvokeMode mode, absl::string_view other) {
  switch (mode) {
    case v1::BUFFERED:
      return "buffered";
    case v1::RESPONSE_STREAM:
      return "stream";
    default:
      return std::string(other);
  }
}

}  // namespace fleetcanary
