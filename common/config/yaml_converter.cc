#include "common/config/yaml_converter.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/config/rule_validation.h"
#include "common/units/units.h"
#include "fleetcanary/v1/options.pb.h"

namespace fleetcanary {
namespace config_internal {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

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
}  // namespace

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

}  // namespace config_internal
}  // namespace fleetcanary
