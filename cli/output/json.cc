#include "cli/output/json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config/loader.h"
#include "common/proto/time_convert.h"
#include "fleetcanary/v1/verdict.pb.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

double Round(double v) {
  if (!std::isfinite(v)) return v;
  if (std::fabs(v) < 1e-12) return 0;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  double out = v;
  if (!absl::SimpleAtod(buf, &out)) return v;
  return out;
}

// A Timestamp placeholder for "never": the epoch, or the clamped limits of
// absl::Time (1677-09-21..., 2262-04-11...).
bool IsPlaceholderTime(const json& v) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return absl::StartsWith(s, "1970-01-01T00:00:00") ||
         absl::StartsWith(s, "1677-09-21") ||
         absl::StartsWith(s, "2262-04-11") ||
         absl::StartsWith(s, "0001-01-01") || absl::StartsWith(s, "9999-12-31");
}

void NormalizeValue(const FieldDescriptor* f, json* v);

void NormalizeMessage(const Descriptor* d, json* obj) {
  if (!obj->is_object()) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    auto it = obj->find(f->name());
    if (it == obj->end()) continue;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_map() &&
        f->message_type()->full_name() == "google.protobuf.Timestamp" &&
        !f->is_repeated() && IsPlaceholderTime(*it)) {
      obj->erase(it);
      continue;
    }
    if (f->is_map()) {
      const FieldDescriptor* value_f = f->message_type()->map_value();
      for (auto& [k, value] : it->items()) NormalizeValue(value_f, &value);
    } else if (f->is_repeated() && it->is_array()) {
      for (json& item : *it) NormalizeValue(f, &item);
    } else {
      NormalizeValue(f, &*it);
    }
  }
}

void NormalizeValue(const FieldDescriptor* f, json* v) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
      if (v->is_string()) {
        int64_t n = 0;
        if (absl::SimpleAtoi(v->get_ref<const std::string&>(), &n)) *v = n;
      }
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      if (v->is_string()) {
        uint64_t n = 0;
        if (absl::SimpleAtoi(v->get_ref<const std::string&>(), &n)) *v = n;
      }
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      if (v->is_number()) *v = Round(v->get<double>());
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      NormalizeMessage(f->message_type(), v);
      break;
    default:
      break;
  }
}

}  // namespace

std::string FriendlyJson(const google::protobuf::Message& msg, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(msg, &text, options);
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return text;
  NormalizeMessage(msg.GetDescriptor(), &doc);
  return doc.dump(pretty ? 2 : -1);
}

void PrintJson(const google::protobuf::Message& msg, std::ostream* out) {
  *out << FriendlyJson(msg, /*pretty=*/true) << "\n";
}

void PrintJsonLine(const google::protobuf::Message& msg, std::ostream* out) {
  *out << MessageToJson(msg, /*pretty=*/false) << "\n";
}

absl::Status OutcomesFile::Open(const std::string& path) {
  path_.clear();
  outcomes_.clear();
  if (path.empty()) return absl::OkStatus();
  std::ofstream f(path, std::ios::trunc);
  if (!f) {
    return absl::InvalidArgumentError(
        absl::StrCat("--outcomes: cannot write ", path));
  }
  path_ = path;
  return absl::OkStatus();
}

void OutcomesFile::Add(const v1::Outcome& outcome) {
  if (!is_open()) return;
  outcomes_.push_back(outcome);
  v1::Outcome& o = outcomes_.back();
  o.clear_adhoc_id();
  if (o.target().empty()) o.set_target("adhoc");
  if (o.region().empty()) o.set_region("local");  // As the summary table.
}

absl::Status OutcomesFile::Close() {
  if (!is_open()) return absl::OkStatus();
  std::stable_sort(outcomes_.begin(), outcomes_.end(),
                   [](const v1::Outcome& a, const v1::Outcome& b) {
                     return TimeFromProto(a.start_time()) <
                            TimeFromProto(b.start_time());
                   });
  std::ofstream f(path_, std::ios::trunc);
  v1::AnalysisInputLine line;
  for (v1::Outcome& o : outcomes_) {
    *line.mutable_outcome() = std::move(o);
    f << MessageToJson(line, /*pretty=*/false) << "\n";
  }
  f.close();
  const std::string path = path_;
  path_.clear();
  outcomes_.clear();
  if (!f) {
    return absl::UnavailableError(
        absl::StrCat("--outcomes: writing ", path, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace cli
}  // namespace fleetcanary
