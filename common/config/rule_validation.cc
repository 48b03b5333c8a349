#include "common/config/rule_validation.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fleetcanary/v1/options.pb.h"

namespace fleetcanary {
namespace config_internal {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string FormatNumber(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%g", v);
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

}  // namespace

std::string JoinPath(const std::string& parent, absl::string_view field) {
  return parent.empty() ? std::string(field) : absl::StrCat(parent, ".", field);
}

const v1::FieldRules* RulesOf(const FieldDescriptor* field) {
  if (!field->options().HasExtension(v1::rules)) return nullptr;
  return &field->options().GetExtension(v1::rules);
}

void CollectViolations(const Message& msg, const std::string& prefix,
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
              CollectViolations(sub.GetReflection()->GetMessage(sub, val_f),
                                absl::StrCat(path, "[", key, "]"), out);
            }
          } else {
            CollectViolations(sub, item, out);
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
      if (has) CollectViolations(r->GetMessage(msg, field), path, out);
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

}  // namespace config_internal
}  // namespace fleetcanary
