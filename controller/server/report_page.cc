#include "controller/server/report_page.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "analysis/report/report_render.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary {
namespace controller {
namespace {

HttpPage Text(int status, std::string body) {
  return HttpPage{"text/plain; charset=utf-8", std::move(body) + "\n", status};
}

struct ReportQuery {
  std::string target;
  std::string format = "html";
  absl::Duration since = absl::Hours(6);
};

// Parses the query string; on a bad one, the 400 page to answer with.
std::optional<HttpPage> ParseReportQuery(const std::string& query,
                                         ReportQuery* q) {
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
    if (p.first == "target") {
      q->target = p.second;
    } else if (p.first == "format") {
      q->format = p.second;
    } else if (p.first == "since") {
      absl::StatusOr<absl::Duration> d = ParseDuration(p.second);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        return Text(400, "since: not a positive duration (e.g. 6h)");
      }
      q->since = *d;
    } else {
      return Text(400, absl::StrCat("unknown parameter \"", p.first,
                                    "\" (target, since, format)"));
    }
  }
  if (q->format != "html" && q->format != "json" && q->format != "markdown") {
    return Text(400, "format: html, json or markdown");
  }
  return std::nullopt;
}

// The target of the first current (non-healthy) verdict; "" when none.
std::string CurrentIncidentTarget(AdminCore* admin) {
  absl::StatusOr<v1::GetVerdictsResponse> current =
      admin->GetVerdicts(v1::GetVerdictsRequest());
  if (current.ok() && current->verdicts_size() > 0) {
    return current->verdicts(0).key().target();
  }
  return "";
}

HttpPage RenderReport(const v1::IncidentReport& r, const std::string& format) {
  if (format == "json") {
    return HttpPage{"application/json", report::RenderReportJson(r), 200};
  }
  if (format == "markdown") {
    return HttpPage{"text/markdown; charset=utf-8",
                    report::RenderReportMarkdown(r), 200};
  }
  return HttpPage{"text/html; charset=utf-8", report::RenderReportHtml(r), 200};
}

}  // namespace

HttpPage ServeReportPage(AdminCore* admin, Clock* clock,
                         const std::string& query) {
  ReportQuery q;
  if (std::optional<HttpPage> bad = ParseReportQuery(query, &q)) return *bad;
  if (admin == nullptr) return Text(503, "the admin API is not up");
  if (q.target.empty()) {
    q.target = CurrentIncidentTarget(admin);
    if (q.target.empty()) {
      return Text(404,
                  "no current incident: every verdict is healthy "
                  "(name one with ?target=)");
    }
  }
  const absl::Time now = clock->Now();
  v1::ReportRequest request;
  request.set_target(q.target);
  *request.mutable_from() = TimeToProto(now - q.since);
  *request.mutable_to() = TimeToProto(now + absl::Seconds(1));
  absl::StatusOr<v1::IncidentReport> r = admin->Report(request);
  if (!r.ok()) {
    return Text(r.status().code() == absl::StatusCode::kNotFound          ? 404
                : r.status().code() == absl::StatusCode::kInvalidArgument ? 400
                                                                          : 500,
                std::string(r.status().message()));
  }
  return RenderReport(*r, q.format);
}

}  // namespace controller
}  // namespace fleetcanary
