#include "analysis/report/report_text.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "analysis/report/report_render.h"
#include "common/proto/invoke_mode.h"
#include "common/proto/time_convert.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary::report::internal {

using google::protobuf::util::TimeUtil;

std::string TimeText(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", TimeFromProto(t),
                          absl::UTCTimeZone());
}

std::string ShortTime(absl::Time t) {
  return absl::FormatTime("%H:%M", t, absl::UTCTimeZone());
}

std::string IntervalText(const v1::TimeInterval& i) {
  if (!i.has_lower() && !i.has_upper()) return "";
  return absl::StrFormat(
      "[%s, %s]%s", TimeText(i.lower()), TimeText(i.upper()),
      i.confidence() > 0 ? absl::StrFormat(" at %g %%", i.confidence() * 100)
                         : "");
}

std::string ModeName(v1::InvokeMode m) {
  return InvokeModeName(m, "all modes");
}

std::string StateName(v1::VerdictState s) {
  return s == v1::VERDICT_STATE_UNSPECIFIED ? "-" : v1::VerdictState_Name(s);
}

std::string PeriodName(v1::ReportPeriod p) {
  switch (p) {
    case v1::REPORT_PERIOD_WHOLE:
      return "whole window";
    case v1::REPORT_PERIOD_BEFORE:
      return "before";
    case v1::REPORT_PERIOD_DURING:
      return "during";
    case v1::REPORT_PERIOD_AFTER:
      return "after";
    default:
      return "?";
  }
}

std::string KeyText(const v1::StreamKey& k) {
  std::vector<std::string> parts;
  parts.push_back(k.region().empty() ? "all regions" : k.region());
  if (k.mode() != v1::INVOKE_MODE_UNSPECIFIED)
    parts.push_back(ModeName(k.mode()));
  if (!k.size_class().empty()) parts.push_back(k.size_class());
  return absl::StrJoin(parts, " / ");
}

std::string DurationText(const google::protobuf::Duration& d, uint64_t n) {
  if (n == 0) return "-";
  const double ms = TimeUtil::DurationToNanoseconds(d) / 1e6;
  return ms >= 1000 ? absl::StrFormat("%.2f s", ms / 1000)
                    : absl::StrFormat("%.1f ms", ms);
}

std::string RateWithInterval(const v1::ReportCounts& c) {
  if (c.trials() == 0) return "-";
  return absl::StrFormat("%s [%s, %s]", FormatRate(c.error_rate()),
                         FormatRate(c.error_rate_interval().lower()),
                         FormatRate(c.error_rate_interval().upper()));
}

std::string ClassesText(const v1::ReportCounts& c) {
  std::vector<std::string> parts;
  std::map<std::string, uint64_t> sorted(c.by_class().begin(),
                                         c.by_class().end());
  for (const auto& [name, n] : sorted) {
    if (name == "OK") continue;
    parts.push_back(absl::StrCat(name, " ", n));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

std::string EvidenceText(const v1::Evidence& e) {
  if (!e.summary().empty()) return e.summary();
  return absl::StrFormat("%d/%d failed (%s)", e.failures(), e.trials(),
                         FormatRate(e.rate()));
}

std::vector<v1::ReportPeriod> ShownPeriods(const v1::IncidentReport& r) {
  if (!r.has_onset()) return {v1::REPORT_PERIOD_WHOLE};
  std::vector<v1::ReportPeriod> out = {v1::REPORT_PERIOD_BEFORE,
                                       v1::REPORT_PERIOD_DURING};
  if (r.has_fix_time()) out.push_back(v1::REPORT_PERIOD_AFTER);
  return out;
}

bool IsShown(const std::vector<v1::ReportPeriod>& shown, v1::ReportPeriod p) {
  return std::find(shown.begin(), shown.end(), p) != shown.end();
}

std::string SummaryLines(const v1::IncidentReport& r, bool markdown) {
  std::string out;
  const char* b = markdown ? "**" : "";
  if (r.has_onset()) {
    absl::StrAppend(&out, "- ", b, "Onset", b, ": ", TimeText(r.onset()));
    const std::string i = IntervalText(r.onset_interval());
    if (!i.empty()) absl::StrAppend(&out, ", interval ", i);
    absl::StrAppend(&out, "\n");
  } else {
    absl::StrAppend(&out, "- ", b, "Onset", b,
                    ": no verdict reached REGRESSION in the window\n");
  }
  if (r.has_fix_time()) {
    absl::StrAppend(&out, "- ", b, "Fix", b, ": ", TimeText(r.fix_time()));
    const std::string i = IntervalText(r.fix_interval());
    if (!i.empty()) absl::StrAppend(&out, ", interval ", i);
    absl::StrAppend(&out, " (confirmed for every regression)\n");
  } else if (r.has_onset()) {
    absl::StrAppend(&out, "- ", b, "Fix", b, ": not confirmed\n");
  }
  absl::StrAppend(&out, "- ", b, "Probes", b, ": ", r.probes(), ", failures ",
                  r.failures(), ", regions ", absl::StrJoin(r.regions(), ", "),
                  "\n");
  return out;
}

}  // namespace fleetcanary::report::internal
