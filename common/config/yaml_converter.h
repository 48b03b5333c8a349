// YAML → JSON conversion guided by a message descriptor: the YAML-facing
// half of the config loader (loader.h is the public interface). It accepts
// the conveniences loader.h lists (durations, byte sizes, enum names in any
// case, snake_case or lowerCamelCase keys), records where each field was
// written (line, column) so later rule violations can point at it, and keeps
// going past a bad field so every error of a file is reported at once.
//
// Thread-compatible: one converter per document, used by one thread.
#ifndef FLEETCANARY_COMMON_CONFIG_YAML_CONVERTER_H_
#define FLEETCANARY_COMMON_CONFIG_YAML_CONVERTER_H_

#include <google/protobuf/descriptor.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace config_internal {

// A position in the YAML source.
struct Mark {
  int line = 0;    // 1-based; 0 = unknown.
  int column = 0;  // 1-based.
};

// Converts one YAML document. `source` (usually the file path) prefixes
// every error: "fleet.yaml:12:7: schedules[0].sizes[2]: ...".
class YamlConverter {
 public:
  using Descriptor = google::protobuf::Descriptor;
  using FieldDescriptor = google::protobuf::FieldDescriptor;
  using json = nlohmann::json;

  explicit YamlConverter(absl::string_view source) : source_(source) {}

  // Converts `node` (a mapping for message `d`, at field path `path`) into
  // the proto3 JSON object `out`. Returns the first error that stops the
  // conversion of this message; errors of single fields and list items are
  // recorded (errors()) and the field is skipped.
  absl::Status ConvertMessage(const YAML::Node& node, const Descriptor* d,
                              const std::string& path, json* out);

  // Field path → where it was written, for every field converted.
  const std::map<std::string, Mark>& marks() const { return marks_; }

  // Errors of fields and list items that were skipped so that conversion
  // could go on and report every error of the file at once.
  void Record(const absl::Status& s) {
    if (!s.ok()) errors_.push_back(std::string(s.message()));
  }
  const std::vector<std::string>& errors() const { return errors_; }

  // INVALID_ARGUMENT "source:line:column: path: message" at `node`.
  absl::Status Error(const YAML::Node& node, const std::string& path,
                     absl::string_view message) const {
    Mark m = MarkOf(node);
    return ErrorAt(m, path, message);
  }

  // The same at `m` (no line and column when m.line is 0).
  absl::Status ErrorAt(Mark m, const std::string& path,
                       absl::string_view message) const {
    std::string where = source_;
    if (m.line > 0) absl::StrAppend(&where, ":", m.line, ":", m.column);
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", path.empty() ? "(top level)" : path, ": ", message));
  }

 private:
  static Mark MarkOf(const YAML::Node& node) {
    YAML::Mark m = node.Mark();
    if (m.is_null()) return {};
    return {m.line + 1, m.column + 1};
  }

  absl::Status ConvertField(const YAML::Node& node, const FieldDescriptor* f,
                            const std::string& path, json* out);
  absl::Status ConvertScalar(const YAML::Node& node, const FieldDescriptor* f,
                             const std::string& path, json* out);

  std::string source_;
  std::map<std::string, Mark> marks_;
  std::vector<std::string> errors_;
};

}  // namespace config_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_CONFIG_YAML_CONVERTER_H_
