// YAML configuration mapped onto proto messages, with one set of rules for
// files, API requests and CLI input.
//
// The YAML tree is walked against the message's descriptor, so every error
// names the file, the line and column, and the field path
// (`schedules[0].sizes[2]`): unknown fields, wrong types, bad enum names and
// values outside the `(fleetcanary.v1.rules)` bounds declared in the proto are
// all refused with INVALID_ARGUMENT. Conveniences for people:
//   - google.protobuf.Duration fields take "250ms", "30s", "1m30s", "2d";
//   - integer fields marked `bytes: true` take "64Ki", "1Mi";
//   - enum fields take the value name in any case, with or without the enum's
//     prefix (`phantom_error` for FAULT_EFFECT_PHANTOM_ERROR);
//   - field names in snake_case or lowerCamelCase;
//   - invoke modes also as `stream` (RESPONSE_STREAM), the name every output
//     uses.
// Every error of a file is reported at once, one per line of the status
// message (a field that could not be converted is skipped so the rest is
// still checked; rule violations are reported once the file converts), and an
// unknown field names the closest known one ("did you mean ...").
// The converted tree is handed to protobuf's JSON parser, so the result is
// exactly what JsonStringToMessage would produce from the equivalent JSON.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_COMMON_CONFIG_LOADER_H_
#define FLEETCANARY_COMMON_CONFIG_LOADER_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fleetcanary {

// Parses `yaml` into `msg` (cleared first) and validates it. `source_name`
// (usually the file path) prefixes every error:
//   "fleet.yaml:12:7: schedules[0].rate_per_second: 5000 is above the maximum
//   1000"
absl::Status ParseYamlToMessage(absl::string_view yaml,
                                absl::string_view source_name,
                                google::protobuf::Message* msg);

// Reads and parses a YAML file. NOT_FOUND when it cannot be read.
absl::Status LoadYamlFile(const std::string& path,
                          google::protobuf::Message* msg);

template <typename T>
absl::StatusOr<T> LoadYamlFile(const std::string& path) {
  T msg;
  absl::Status status = LoadYamlFile(path, &msg);
  if (!status.ok()) return status;
  return msg;
}

// Checks the `(fleetcanary.v1.rules)` of every set field, recursively. Used on
// API requests. INVALID_ARGUMENT names the field path:
//   "schedules[1].id: required"
absl::Status ValidateMessage(const google::protobuf::Message& msg);

// Proto → JSON (proto3 mapping, original field names) and back, for output
// and JSON Lines files. The parser refuses unknown fields.
std::string MessageToJson(const google::protobuf::Message& msg,
                          bool pretty = false);
absl::Status JsonToMessage(absl::string_view json,
                           google::protobuf::Message* msg);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_CONFIG_LOADER_H_
