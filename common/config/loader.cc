#include "common/config/loader.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/config/yaml_limits.h"
#include "common/units/units.h"
#include "fleetcanary/v1/options.pb.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

struct Mark {
  int line = 0;    // 1-based; 0 = unknown.
  int column = 0;  // 1-based.
};

// A rule violation found on a proto, addressed by field path.
struct Violation {
  std::string path;
  std::string message;
};

std::string JoinPath(const std::string& parent, absl::string_view field) {
  return parent.empty() ? std::string(field) : absl::StrCat(parent, ".", field);
}

std::string FormatNumber(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%g", v);
}

const v1::FieldRules* RulesOf(const FieldDescriptor* field) {
  if (!field->options().HasExtension(v1::rules)) return nullptr;
  return &field->options().GetExtension(v1::rules);
}

// ---------------------------------------------------------------------------
// Rule validation over a parsed message.

double NumericValue(const Message& msg, const FieldDescriptor* field,
                    int index) {
  const Reflection* r = msg.GetReflection();
  bool rep = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(msg, field, index)
                 : r->GetInt32(msg, field);
    case FieldDescriptor::CPPTYPE_INT64:
      return static_cast<double>(rep ? r->GetRepeatedInt64(msg, field, index)
                                     : r->GetInt64(msg, field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(msg, field, index)
                 : r->GetUInt32(msg, field);
    case FieldDescriptor::CPPTYPE_UINT64:
      return static_cast<double>(rep ? r->GetRepeatedUInt64(msg, field, index)
                                     : r->GetUInt64(msg, field));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(msg, field, index)
                 : r->GetDouble(msg, field);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(msg, field, index)
                 : r->GetFloat(msg, field);
    default:
      return 0;
  }
}

bool IsNumeric(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return true;
    default:
      return false;
  }
}

void CheckNumber(const v1::FieldRules& rules, double value,
                 const std::string& path, std::vector<Violation>* out) {
  if (value == 0) return;  // Zero is "unset": the consumer's default.
  if (std::isnan(value)) {
    out->push_back({path, "not a number"});
    return;
  }
  if (rules.has_min() && value < rules.min()) {
    out->push_back(
        {path, absl::StrCat(FormatNumber(value), " is below the minimum ",
                            FormatNumber(rules.min()))});
  }
  if (rules.has_max() && value > rules.max()) {
    out->push_back(
        {path, absl::StrCat(FormatNumber(value), " is above the maximum ",
                            FormatNumber(rules.max()))});
  }
}

void Validate(const Message& msg, const std::string& prefix,
              std::vector<Violation>* out) {
  const Descriptor* d = msg.GetDescriptor();
  const Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* field = d->field(i);
    const std::string path = JoinPath(prefix, field->name());
    const v1::FieldRules* rules = RulesOf(field);
    if (field->is_repeated()) {
      int n = r->FieldSize(msg, field);
      if (rules != nullptr) {
        if (rules->required() && n == 0) out->push_back({path, "required"});
        if (rules->max_items() > 0 &&
            n > static_cast<int>(rules->max_items())) {
          out->push_back({path, absl::StrCat(n, " items, at most ",
                                             rules->max_items(), " allowed")});
        }
      }
      for (int k = 0; k < n; ++k) {
        std::string item = absl::StrCat(path, "[", k, "]");
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          const Message& sub = r->GetRepeatedMessage(msg, field, k);
          if (field->is_map()) {
            // Map entries: validate the value under path[key].
            const FieldDescriptor* key_f = sub.GetDescriptor()->map_key();
            const FieldDescriptor* val_f = sub.GetDescriptor()->map_value();
            std::string key;
            if (key_f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
              key = sub.GetReflection()->GetString(sub, key_f);
            }
            if (val_f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
              Validate(sub.GetReflection()->GetMessage(sub, val_f),
                       absl::StrCat(path, "[", key, "]"), out);
            }
          } else {
            Validate(sub, item, out);
          }
        } else if (rules != nullptr && IsNumeric(field)) {
          CheckNumber(*rules, NumericValue(msg, field, k), item, out);
        } else if (rules != nullptr &&
                   field->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
                   rules->max_len() > 0) {
          std::string v = r->GetRepeatedString(msg, field, k);
          if (v.size() > rules->max_len()) {
            out->push_back({item, absl::StrCat("longer than ", rules->max_len(),
                                               " bytes")});
          }
        }
      }
      continue;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      bool has = r->HasField(msg, field);
      if (rules != nullptr && rules->required() && !has) {
        out->push_back({path, "required"});
      }
      if (has) Validate(r->GetMessage(msg, field), path, out);
      continue;
    }
    if (rules == nullptr) continue;
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      std::string v = r->GetString(msg, field);
      if (rules->required() && v.empty()) out->push_back({path, "required"});
      if (rules->max_len() > 0 && v.size() > rules->max_len()) {
        out->push_back(
            {path, absl::StrCat("longer than ", rules->max_len(), " bytes")});
      }
    } else if (IsNumeric(field)) {
      CheckNumber(*rules, NumericValue(msg, field, -1), path, out);
    }
  }
}

// ---------------------------------------------------------------------------
// YAML → JSON, guided by the descriptor.

class YamlConverter {
 public:
  explicit YamlConverter(absl::string_view source) : source_(source) {}

  absl::Status ConvertMessage(const YAML::Node& node, const Descriptor* d,
                              const std::string& path, json* out);

  const std::map<std::string, Mark>& marks() const { return marks_; }

  // Errors of fields and list items that were skipped so that conversion
  // could go on and report every error of the file at once.
  void Record(const absl::Status& s) {
    if (!s.ok()) errors_.push_back(std::string(s.message()));
  }
  const std::vector<std::string>& errors() const { return errors_; }

  absl::Status Error(const YAML::Node& node, const std::string& path,
                     absl::string_view message) const {
    Mark m = MarkOf(node);
    return ErrorAt(m, path, message);
  }

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

// Edit distance of two short names (insert, delete, substitute: 1 each).
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (absl::ascii_tolower(a[i - 1]) ==
                                             absl::ascii_tolower(b[j - 1])
                                         ? 0
                                         : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "; did you mean \"rate_per_second\"?" when a field of `d` is close to
// `key` (at most a third of its letters wrong), else "".
std::string DidYouMean(const Descriptor* d, absl::string_view key) {
  const FieldDescriptor* best = nullptr;
  size_t best_distance = 0;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    for (absl::string_view name :
         {absl::string_view(f->name()), absl::string_view(f->json_name())}) {
      const size_t distance = EditDistance(key, name);
      if (best == nullptr || distance < best_distance) {
        best = f;
        best_distance = distance;
      }
    }
  }
  if (best == nullptr || best_distance > std::max<size_t>(2, key.size() / 3)) {
    return "";
  }
  return absl::StrCat("; did you mean \"", best->name(), "\"?");
}

const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  if (const FieldDescriptor* f = d->FindFieldByName(key)) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

std::string UpperSnake(absl::string_view camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    char c = camel[i];
    if (absl::ascii_isupper(c) && i > 0) out.push_back('_');
    out.push_back(absl::ascii_toupper(c));
  }
  return out;
}

const EnumValueDescriptor* FindEnumValue(const EnumDescriptor* e,
                                         absl::string_view text) {
  std::string upper = absl::AsciiStrToUpper(text);
  // The short name every output uses (metric labels, canaryctl tables).
  if (e->full_name() == "fleetcanary.v1.InvokeMode" && upper == "STREAM") {
    upper = "RESPONSE_STREAM";
  }
  if (const EnumValueDescriptor* v = e->FindValueByName(upper)) return v;
  return e->FindValueByName(absl::StrCat(UpperSnake(e->name()), "_", upper));
}

std::string EnumChoices(const EnumDescriptor* e) {
  std::string prefix = absl::StrCat(UpperSnake(e->name()), "_");
  std::string out;
  for (int i = 0; i < e->value_count(); ++i) {
    if (e->value(i)->number() == 0) continue;
    absl::string_view name = e->value(i)->name();
    if (absl::StartsWith(name, prefix)) name.remove_prefix(prefix.size());
    absl::StrAppend(&out, out.empty() ? "" : ", ", absl::AsciiStrToLower(name));
  }
  if (e->full_name() == "fleetcanary.v1.InvokeMode") {
    absl::StrAppend(&out, " (or stream)");
  }
  return out;
}

absl::Status YamlConverter::ConvertMessage(const YAML::Node& node,
                                           const Descriptor* d,
                                           const std::string& path, json* out) {
  marks_[path] = MarkOf(node);
  const std::string& full = d->full_name();
  if (full == "google.protobuf.Duration") {
    if (!node.IsScalar())
      return Error(node, path, "expected a duration like 30s");
    absl::StatusOr<absl::Duration> dur = ParseDuration(node.Scalar());
    if (!dur.ok()) return Error(node, path, dur.status().message());
    // Exact nanoseconds, not a rounded double.
    int64_t ns = absl::ToInt64Nanoseconds(*dur);
    *out = absl::StrFormat("%d.%09ds", ns / 1000000000, ns % 1000000000);
    return absl::OkStatus();
  }
  if (full == "google.protobuf.Timestamp") {
    if (!node.IsScalar()) {
      return Error(node, path,
                   "expected an RFC 3339 time like 2024-02-04T00:00:00Z");
    }
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, node.Scalar(), &t, &err)) {
      return Error(
          node, path,
          absl::StrCat("invalid time \"", node.Scalar(),
                       "\" (expected RFC 3339, e.g. 2024-02-04T00:00:00Z)"));
    }
    *out = absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
    return absl::OkStatus();
  }
  if (node.IsNull()) {
    *out = json::object();
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return Error(node, path,
                 absl::StrCat("expected a mapping (", d->name(), ")"));
  }
  *out = json::object();
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      return Error(kv.first, path, "keys must be names");
    const std::string key = kv.first.Scalar();
    const FieldDescriptor* f = FindField(d, key);
    const std::string child = JoinPath(path, key);
    if (f == nullptr) {
      Record(Error(
          kv.first, child,
          absl::StrCat("unknown field for ", d->name(), DidYouMean(d, key))));
      continue;
    }
    json value;
    absl::Status s =
        ConvertField(kv.second, f, JoinPath(path, f->name()), &value);
    if (!s.ok()) {
      Record(s);
      continue;
    }
    if (!value.is_null()) (*out)[f->json_name()] = std::move(value);
  }
  return absl::OkStatus();
}

absl::Status YamlConverter::ConvertField(const YAML::Node& node,
                                         const FieldDescriptor* f,
                                         const std::string& path, json* out) {
  marks_[path] = MarkOf(node);
  if (node.IsNull()) {
    *out = nullptr;
    return absl::OkStatus();
  }
  if (f->is_map()) {
    if (!node.IsMap()) return Error(node, path, "expected a mapping");
    const FieldDescriptor* val_f = f->message_type()->map_value();
    *out = json::object();
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        return Error(kv.first, path, "keys must be scalars");
      std::string item = absl::StrCat(path, "[", kv.first.Scalar(), "]");
      json v;
      absl::Status s =
          val_f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
              ? ConvertMessage(kv.second, val_f->message_type(), item, &v)
              : ConvertScalar(kv.second, val_f, item, &v);
      if (!s.ok()) {
        Record(s);
        continue;
      }
      (*out)[kv.first.Scalar()] = std::move(v);
    }
    return absl::OkStatus();
  }
  if (f->is_repeated()) {
    if (!node.IsSequence()) {
      return Error(node, path, "expected a list");
    }
    *out = json::array();
    for (size_t i = 0; i < node.size(); ++i) {
      std::string item = absl::StrCat(path, "[", i, "]");
      json v;
      marks_[item] = MarkOf(node[i]);
      absl::Status s =
          f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
              ? ConvertMessage(node[i], f->message_type(), item, &v)
              : ConvertScalar(node[i], f, item, &v);
      if (!s.ok()) {
        Record(s);
        continue;
      }
      out->push_back(std::move(v));
    }
    return absl::OkStatus();
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return ConvertMessage(node, f->message_type(), path, out);
  }
  return ConvertScalar(node, f, path, out);
}

absl::Status YamlConverter::ConvertScalar(const YAML::Node& node,
                                          const FieldDescriptor* f,
                                          const std::string& path, json* out) {
  if (!node.IsScalar()) {
    return Error(node, path,
                 absl::StrCat("expected a single ", f->type_name(), " value"));
  }
  const std::string& text = node.Scalar();
  const v1::FieldRules* rules = RulesOf(f);
  auto type_error = [&](absl::string_view what) {
    return Error(node, path, absl::StrCat("\"", text, "\" is not ", what));
  };
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      *out = text;
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_BOOL: {
      std::string lower = absl::AsciiStrToLower(text);
      if (lower == "true" || lower == "yes" || lower == "on") {
        *out = true;
      } else if (lower == "false" || lower == "no" || lower == "off") {
        *out = false;
      } else {
        return type_error("a boolean (true/false)");
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumValueDescriptor* v = FindEnumValue(f->enum_type(), text);
      if (v == nullptr) {
        return Error(
            node, path,
            absl::StrCat("unknown value \"", text,
                         "\"; expected one of: ", EnumChoices(f->enum_type())));
      }
      *out = v->name();
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
        return type_error("a number");
      }
      *out = v;
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(text, &v)) return type_error("an integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
          (v > INT32_MAX || v < INT32_MIN)) {
        return type_error("a 32-bit integer");
      }
      *out = v;
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v = 0;
      if (rules != nullptr && rules->bytes()) {
        absl::StatusOr<uint64_t> bytes = ParseBytes(text);
        if (!bytes.ok()) return Error(node, path, bytes.status().message());
        v = *bytes;
      } else if (!absl::SimpleAtoi(text, &v) || absl::StartsWith(text, "-")) {
        return type_error("a non-negative integer");
      }
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 && v > UINT32_MAX) {
        return type_error("a 32-bit unsigned integer");
      }
      *out = v;
      return absl::OkStatus();
    }
    default:
      return Error(node, path, "unsupported field type");
  }
}

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
  Validate(msg, "", &violations);
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
  Validate(*msg, "", &violations);
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
