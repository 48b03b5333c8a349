// BuildIncidentReport and ReadReportData (report_builder.h). The steps of
// the build are in report_build_steps.h.
#include "analysis/report/report_builder.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "analysis/offline.h"
#include "analysis/report/report_build_steps.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"

namespace fleetcanary::report {
namespace {

using analysis::StreamMinute;
using analysis::StreamStats;
using internal::Scope;

// The checked detection config, or what is wrong with the options.
absl::StatusOr<v1::DetectionConfig> CheckOptions(const ReportOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("target: required");
  }
  if (!(options.from < options.to)) {
    return absl::InvalidArgumentError("from: must be before to");
  }
  return analysis::ResolveDetectionConfig(options.detection);
}

// The scheduled minutes of the target in scope, in time order (their
// regions added to *regions); NOT_FOUND when there are none.
absl::StatusOr<std::vector<const StreamMinute*>> SelectMinutes(
    const ReportData& data, const Scope& scope,
    std::set<std::string>* regions) {
  const ReportOptions& options = scope.options;
  const int64_t from_minute = options.from == absl::InfinitePast()
                                  ? INT64_MIN
                                  : analysis::MinuteOf(options.from);
  const int64_t to_minute =
      options.to == absl::InfiniteFuture()
          ? INT64_MAX
          : analysis::MinuteOf(options.to - absl::Nanoseconds(1)) + 1;
  std::vector<const StreamMinute*> minutes;
  for (const StreamMinute& m : data.minutes) {
    if (m.key.adhoc || m.key.target != options.target ||
        !scope.RegionOk(m.key.region) || m.minute < from_minute ||
        m.minute >= to_minute) {
      continue;
    }
    minutes.push_back(&m);
    regions->insert(m.key.region);
  }
  if (minutes.empty()) {
    return absl::NotFoundError(
        absl::StrCat("target: no scheduled probes of \"", options.target, "\"",
                     scope.regions.empty() ? "" : " in the regions asked for",
                     " in the window"));
  }
  std::stable_sort(minutes.begin(), minutes.end(),
                   [](const StreamMinute* a, const StreamMinute* b) {
                     return a->minute < b->minute;
                   });
  return minutes;
}

// The report's regions and window (infinite bounds = the minutes' span).
void SetWindow(const ReportOptions& options,
               const std::vector<const StreamMinute*>& minutes,
               const std::set<std::string>& regions, v1::IncidentReport* r) {
  for (const std::string& region : regions) r->add_regions(region);
  *r->mutable_from() =
      TimeToProto(options.from == absl::InfinitePast()
                      ? absl::FromUnixSeconds(minutes.front()->minute * 60)
                      : options.from);
  *r->mutable_to() =
      TimeToProto(options.to == absl::InfiniteFuture()
                      ? absl::FromUnixSeconds(minutes.back()->minute * 60 + 60)
                      : options.to);
}

// r's analysis: `analysis` with the verdicts and transitions of the target
// and regions only.
void FilterVerdicts(const v1::AnalysisReport& analysis, const Scope& scope,
                    v1::IncidentReport* r) {
  v1::AnalysisReport* out = r->mutable_analysis();
  *out = analysis;
  out->clear_verdicts();
  out->clear_transitions();
  auto verdict_ok = [&](const v1::Verdict& v) {
    return v.key().target() == scope.options.target &&
           (v.key().region().empty() || scope.RegionOk(v.key().region()));
  };
  for (const v1::Verdict& v : analysis.verdicts()) {
    if (verdict_ok(v)) *out->add_verdicts() = v;
  }
  for (const v1::Verdict& v : analysis.transitions()) {
    if (verdict_ok(v)) *out->add_transitions() = v;
  }
}

}  // namespace

absl::StatusOr<v1::IncidentReport> BuildIncidentReport(
    const ReportData& data, const ReportOptions& options) {
  absl::StatusOr<v1::DetectionConfig> detection = CheckOptions(options);
  if (!detection.ok()) return detection.status();
  const Scope scope{options, std::set<std::string>(options.regions.begin(),
                                                   options.regions.end())};
  v1::IncidentReport r;
  r.set_target(options.target);
  r.set_source(options.source);
  *r.mutable_generated_at() = TimeToProto(options.generated_at);
  *r.mutable_detection() = *detection;
  r.set_methods(internal::MethodsParagraph(*detection));

  std::set<std::string> regions;
  absl::StatusOr<std::vector<const StreamMinute*>> minutes =
      SelectMinutes(data, scope, &regions);
  if (!minutes.ok()) return minutes.status();
  SetWindow(options, *minutes, regions, &r);
  FilterVerdicts(data.analysis, scope, &r);

  const internal::Boundaries b =
      internal::AddFindings(detection->fix_alpha(), &r);
  internal::ClientMinutes client =
      internal::AddCells(*minutes, b, options.target, &r);
  internal::PlatformMinutes platform_minute;
  const internal::PhantomSpans phantom_at =
      internal::AddPlatform(data, scope, b, &client, &platform_minute, &r);
  internal::AddSeries(client, platform_minute, &r);
  internal::AddSamples(data, scope, b, phantom_at, &r);
  internal::FillReproduction(r, data.targets, r.mutable_reproduction());
  return r;
}

absl::StatusOr<ReportData> ReadReportData(std::istream& in,
                                          const v1::DetectionConfig& detection,
                                          absl::Time declared_fix_time) {
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  analysis::AnalyzeOptions options;
  options.detection = detection;
  if (declared_fix_time != absl::InfinitePast()) {
    options.declared_fix_time = declared_fix_time;
  }
  ReportData data;
  {
    std::istringstream again(text);
    absl::StatusOr<v1::AnalysisReport> analysis =
        analysis::AnalyzeJsonLines(again, options);
    if (!analysis.ok()) return analysis.status();
    data.analysis = std::move(*analysis);
  }
  // The engine accepted every line: now aggregate them the way ingest does.
  std::map<std::pair<analysis::StreamKey, int64_t>, StreamStats> minutes;
  std::istringstream lines(text);
  std::string line;
  google::protobuf::util::JsonParseOptions parse;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::AnalysisInputLine record;
    auto s = google::protobuf::util::JsonStringToMessage(line, &record, parse);
    if (!s.ok()) return absl::InvalidArgumentError(std::string(s.message()));
    if (record.has_platform_sample()) {
      data.platform_samples.push_back(record.platform_sample());
      continue;
    }
    const v1::Outcome& o = record.outcome();
    analysis::StreamKey key{o.region(), o.target(), o.mode(),
                            o.requested_bytes(), !o.adhoc_id().empty()};
    minutes[{key, analysis::MinuteOf(TimeFromProto(o.start_time()))}].Add(o);
    data.outcomes.push_back(o);
  }
  for (auto& [k, stats] : minutes) {
    data.minutes.push_back(StreamMinute{k.first, k.second, std::move(stats)});
  }
  return data;
}

}  // namespace fleetcanary::report
