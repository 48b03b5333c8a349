#include "cli/commands/verdict_format.h"

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/ui/table.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace cli {
namespace {

std::string Time(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", TimeFromProto(t),
                          absl::UTCTimeZone());
}

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

std::string Or(const std::string& s) { return s.empty() ? "-" : s; }

std::string Evidence(const v1::Verdict& v) {
  const v1::Evidence& e = v.evidence();
  if (!e.summary().empty()) return e.summary();
  if (e.trials() == 0) return "-";
  return absl::StrFormat("%d/%d failed", e.failures(), e.trials());
}

}  // namespace

std::string VerdictTable(const std::vector<v1::Verdict>& unsorted) {
  // Kind, region, target, mode, then size by value (2B before 1KiB, not as
  // text); verdicts over all sizes first.
  std::vector<v1::Verdict> verdicts = unsorted;
  auto size_of = [](const v1::Verdict& v) -> int64_t {
    if (v.key().size_class().empty()) return -1;
    absl::StatusOr<uint64_t> b = ParseBytes(v.key().size_class());
    return b.ok() ? static_cast<int64_t>(*b) : INT64_MAX;
  };
  std::stable_sort(
      verdicts.begin(), verdicts.end(),
      [&](const v1::Verdict& a, const v1::Verdict& b) {
        return std::make_tuple(a.kind(), a.key().region(), a.key().target(),
                               a.key().mode(), size_of(a)) <
               std::make_tuple(b.kind(), b.key().region(), b.key().target(),
                               b.key().mode(), size_of(b));
      });
  Table t({"KIND", "STATE", "REGION", "TARGET", "MODE", "SIZE", "SINCE",
           "EVIDENCE"});
  for (const v1::Verdict& v : verdicts) {
    t.AddRow({v1::VerdictKind_Name(v.kind()),
              Lower(v1::VerdictState_Name(v.state())), Or(v.key().region()),
              Or(v.key().target()), InvokeModeName(v.key().mode(), "-"),
              Or(v.key().size_class()), Time(v.since()), Evidence(v)});
  }
  return t.Render();
}

std::string TransitionLine(const v1::Verdict& v) {
  std::string key =
      absl::StrCat(Or(v.key().region()), "/", Or(v.key().target()), "/",
                   InvokeModeName(v.key().mode(), "-"));
  if (!v.key().size_class().empty())
    absl::StrAppend(&key, "/", v.key().size_class());
  return absl::StrCat(
      Time(v.since().seconds() != 0 ? v.since() : v.updated()), "  ",
      v1::VerdictKind_Name(v.kind()), "  ",
      v.previous_state() == v1::VERDICT_STATE_UNSPECIFIED
          ? ""
          : absl::StrCat(Lower(v1::VerdictState_Name(v.previous_state())),
                         " -> "),
      Lower(v1::VerdictState_Name(v.state())), "  ", key, "  ", Evidence(v),
      "\n");
}

std::string ReportText(const v1::AnalysisReport& r) {
  std::string out = absl::StrCat("outcomes: ", r.outcomes(),
                                 "   platform samples: ", r.platform_samples(),
                                 "\nspan: ", Time(r.first_outcome()), " .. ",
                                 Time(r.last_outcome()), "\n");
  if (r.has_declared_fix_time()) {
    absl::StrAppend(&out, "declared fix: ", Time(r.declared_fix_time()), "\n");
  }
  std::vector<v1::Verdict> verdicts(r.verdicts().begin(), r.verdicts().end());
  absl::StrAppend(&out, "\nverdicts (", verdicts.size(), "):\n");
  if (!verdicts.empty()) absl::StrAppend(&out, VerdictTable(verdicts));
  absl::StrAppend(&out, "\ntimeline (", r.transitions_size(),
                  " transitions):\n");
  for (const v1::Verdict& v : r.transitions()) {
    absl::StrAppend(&out, TransitionLine(v));
  }
  return out;
}

absl::StatusOr<v1::InvokeMode> ParseMode(const std::string& flag,
                                         const std::string& text) {
  const std::string m = absl::AsciiStrToLower(text);
  if (m.empty()) return v1::INVOKE_MODE_UNSPECIFIED;
  if (m == "buffered") return v1::BUFFERED;
  if (m == "stream" || m == "response_stream") return v1::RESPONSE_STREAM;
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": \"", text, "\" is not buffered or stream"));
}

}  // namespace cli
}  // namespace fleetcanary
