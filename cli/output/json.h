// Machine output: proto messages as JSON (the proto3 JSON mapping, original
// field names), one document per call, so scripts read exactly what the
// admin API returns.
//
// Thread-safe.
#ifndef FLEETCANARY_CLI_OUTPUT_JSON_H_
#define FLEETCANARY_CLI_OUTPUT_JSON_H_

#include <google/protobuf/message.h>

#include <ostream>

namespace fleetcanary {
namespace cli {

// Writes `msg` as pretty JSON followed by a newline.
void PrintJson(const google::protobuf::Message& msg, std::ostream* out);
// Writes `msg` as one compact JSON line (JSON Lines files).
void PrintJsonLine(const google::protobuf::Message& msg, std::ostream* out);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_OUTPUT_JSON_H_
