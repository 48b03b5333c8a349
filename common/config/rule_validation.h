// Checks of the `(fleetcanary.v1.rules)` field options (required, min/max,
// max_len, max_items) over a parsed proto message. Internal to the config
// library: loader.h is the public interface; the YAML converter shares the
// field-path helpers so its errors and the rule violations name fields alike.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_COMMON_CONFIG_RULE_VALIDATION_H_
#define FLEETCANARY_COMMON_CONFIG_RULE_VALIDATION_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "fleetcanary/v1/options.pb.h"

namespace fleetcanary {
namespace config_internal {

// A rule violation found on a proto, addressed by field path
// ("schedules[1].rate_per_second").
struct Violation {
  std::string path;
  std::string message;
};

// "parent.field", or "field" when `parent` is empty.
std::string JoinPath(const std::string& parent, absl::string_view field);

// The field's `(fleetcanary.v1.rules)` option, or nullptr when it has none.
// The pointer lives as long as the descriptor pool.
const v1::FieldRules* RulesOf(const google::protobuf::FieldDescriptor* field);

// Appends to `out` every rule violation of `msg` and, recursively, of its set
// sub-messages, repeated items and map values, in field order. Paths are
// prefixed with `prefix` (may be empty). A numeric zero is "unset" and never
// violates min/max.
void CollectViolations(const google::protobuf::Message& msg,
                       const std::string& prefix, std::vector<Violation>* out);

}  // namespace config_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_CONFIG_RULE_VALIDATION_H_
