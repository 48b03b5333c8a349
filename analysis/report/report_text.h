// Internal to analysis/report: the text pieces that the Markdown and HTML
// renderings of an incident report (report_render.h) share, so both say the
// same thing the same way. Not for use outside analysis/report.
//
// Pure functions; thread-safe.
#ifndef FLEETCANARY_ANALYSIS_REPORT_REPORT_TEXT_H_
#define FLEETCANARY_ANALYSIS_REPORT_REPORT_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/report.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace fleetcanary::report::internal {

// "2024-02-01 00:08:00 UTC".
std::string TimeText(const google::protobuf::Timestamp& t);

// "00:08" (UTC).
std::string ShortTime(absl::Time t);

// "[lower, upper] at 95 %"; "" when neither bound is set.
std::string IntervalText(const v1::TimeInterval& i);

// "buffered", "stream", or "all modes" when unspecified.
std::string ModeName(v1::InvokeMode m);

// The state's enum name; "-" when unspecified.
std::string StateName(v1::VerdictState s);

// "whole window", "before", "during", "after" ("?" otherwise).
std::string PeriodName(v1::ReportPeriod p);

// "region / mode / size" of a verdict key ("all regions" when unset).
std::string KeyText(const v1::StreamKey& k);

// "37.5 ms" or "1.25 s"; "-" when n (the number of observations) is 0.
std::string DurationText(const google::protobuf::Duration& d, uint64_t n);

// "20 % [12.3 %, 30.8 %]"; "-" without trials.
std::string RateWithInterval(const v1::ReportCounts& c);

// "TRUNCATED 14, HTTP_5XX 1" (classes by name, OK left out); "-" for none.
std::string ClassesText(const v1::ReportCounts& c);

// The evidence's summary, or "failures/trials failed (rate)".
std::string EvidenceText(const v1::Evidence& e);

// Which periods to show: WHOLE alone when there is no onset, else BEFORE and
// DURING, and AFTER when there is a fix time.
std::vector<v1::ReportPeriod> ShownPeriods(const v1::IncidentReport& r);

// Whether `p` is one of `shown`.
bool IsShown(const std::vector<v1::ReportPeriod>& shown, v1::ReportPeriod p);

// The summary as "- Onset: ...\n" lines (labels in bold when `markdown`).
std::string SummaryLines(const v1::IncidentReport& r, bool markdown);

}  // namespace fleetcanary::report::internal

#endif  // FLEETCANARY_ANALYSIS_REPORT_REPORT_TEXT_H_
