// The name every output (tables, reports, metric labels, the status page)
// gives an invoke mode.
//
// Thread-safe (pure function).
#ifndef FLEETCANARY_COMMON_PROTO_INVOKE_MODE_H_
#define FLEETCANARY_COMMON_PROTO_INVOKE_MODE_H_

#include <string>

#include "absl/strings/string_view.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {

// "buffered" for BUFFERED, "stream" for RESPONSE_STREAM, and `other` for
// anything else (INVOKE_MODE_UNSPECIFIED or a value outside the enum): each
// output says in its own words what a mode-less row stands for ("-", "all
// modes", ...).
//
// Example:
//   InvokeModeName(v1::RESPONSE_STREAM)        // "stream"
//   InvokeModeName(v1::INVOKE_MODE_UNSPECIFIED, "-")  // "-"
std::string InvokeModeName(v1::InvokeMode mode,
                           absl::string_view other = "unspecified");

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_PROTO_INVOKE_MODE_H_
