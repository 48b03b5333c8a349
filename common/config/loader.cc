#include "common/config/loader.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/rule_validation.h"
#include "common/config/yaml_converter.h"
#include "common/config/yaml_limits.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace {

using config_internal::CollectViolations;
using config_internal::Mark;
using config_internal::Violation;
using config_internal::YamlConverter;
using nlohmann::json;

absl::Status ViolationToStatus(const Violation& v,
                               const YamlConverter* converter) {
  if (converter != nullptr) {
    // Point at the field itself, or at the nearest ancestor that was written.
    std::string path = v.path;
    while (true) {
      auto it = converter->marks().find(path);
      if (it != converter->marks().end()) {
        return converter->ErrorAt(it->second, v.path, v.message);
      }
      size_t cut = path.find_last_of(".[");
      if (cut == std::string::npos) break;
      path = path.substr(0, cut);
    }
    return converter->ErrorAt(Mark{}, v.path, v.message);
  }
  return absl::InvalidArgumentError(absl::StrCat(v.path, ": ", v.message));
}

// One INVALID_ARGUMENT naming every error, one per line.
absl::Status AllErrors(const std::vector<std::string>& errors) {
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

absl::Status ViolationsToStatus(const std::vector<Violation>& violations,
                                const YamlConverter* converter) {
  std::vector<std::string> errors;
  for (const Violation& v : violations) {
    errors.push_back(std::string(ViolationToStatus(v, converter).message()));
  }
  return AllErrors(errors);
}

}  // namespace

absl::Status ValidateMessage(const google::protobuf::Message& msg) {
  std::vector<Violation> violations;
  CollectViolations(msg, "", &violations);
  return ViolationsToStatus(violations, nullptr);
}

absl::Status ParseYamlToMessage(absl::string_view yaml,
                                absl::string_view source_name,
                                google::protobuf::Message* msg) {
  msg->Clear();
  // Size, depth and alias expansion are bounded before any node is built.
  if (absl::Status s = CheckYamlLimits(yaml, source_name); !s.ok()) return s;
  YamlConverter converter(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ":", e.mark.column + 1,
                     ": invalid YAML: ", e.msg));
  }
  json doc;
  converter.Record(
      converter.ConvertMessage(root, msg->GetDescriptor(), "", &doc));
  if (!converter.errors().empty()) return AllErrors(converter.errors());
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed =
      google::protobuf::util::JsonStringToMessage(doc.dump(), msg, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": ", std::string(parsed.message())));
  }
  std::vector<Violation> violations;
  CollectViolations(*msg, "", &violations);
  return ViolationsToStatus(violations, &converter);
}

absl::Status LoadYamlFile(const std::string& path,
                          google::protobuf::Message* msg) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  }
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > YamlLimits().max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": YAML of ", size, " bytes is above the limit of ",
                     YamlLimits().max_bytes, " bytes; limit max_bytes"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseYamlToMessage(buffer.str(), path, msg);
}

std::string MessageToJson(const google::protobuf::Message& msg, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = pretty;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(msg, &out, options);
  if (!pretty && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::Status JsonToMessage(absl::string_view json_text,
                           google::protobuf::Message* msg) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      std::string(json_text), msg, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(std::string(status.message()));
  }
  return absl::OkStatus();
}

}  // namespace fleetcanary
