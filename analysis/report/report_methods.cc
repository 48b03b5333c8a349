// The methods paragraph and the reproduction section of an incident report
// (report_build_steps.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "analysis/report/report_build_steps.h"
#include "common/units/units.h"

namespace fleetcanary::report::internal {
namespace {

// (failures, trials).
using Counts = std::pair<uint64_t, uint64_t>;

// Failures and trials per body size and per region in the focus period
// (DURING an incident, else the whole window).
void FocusCounts(const v1::IncidentReport& r,
                 std::map<uint64_t, Counts>* by_size,
                 std::map<std::string, Counts>* by_region) {
  const v1::ReportPeriod focus =
      r.has_onset() ? v1::REPORT_PERIOD_DURING : v1::REPORT_PERIOD_WHOLE;
  for (const v1::ReportCell& c : r.cells()) {
    for (const v1::ReportCounts& p : c.periods()) {
      if (p.period() != focus) continue;
      (*by_size)[c.size_bytes()].first += p.failures();
      (*by_size)[c.size_bytes()].second += p.trials();
      (*by_region)[c.region()].first += p.failures();
      (*by_region)[c.region()].second += p.trials();
    }
  }
}

// The sizes with failures, most failures first (added to out's
// failing_sizes), as a --sizes list; every size when none failed. Sets
// *any_failed.
std::string SizeList(const std::map<uint64_t, Counts>& by_size,
                     v1::Reproduction* out, bool* any_failed) {
  std::vector<std::pair<uint64_t, uint64_t>> sizes;  // (failures, size)
  for (const auto& [size, n] : by_size) {
    if (n.first > 0) sizes.emplace_back(n.first, size);
  }
  std::stable_sort(
      sizes.begin(), sizes.end(),
      [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> size_text;
  for (const auto& [failures, size] : sizes) {
    out->add_failing_sizes(size);
    size_text.push_back(FormatBytes(size));
  }
  if (size_text.empty()) {
    for (const auto& [size, n] : by_size)
      size_text.push_back(FormatBytes(size));
  }
  *any_failed = !sizes.empty();
  return absl::StrJoin(size_text, ",");
}

// `canaryctl probe --direct` with the target's URLs in `region`; "" when
// the target or the region is unknown.
std::string DirectCommand(const v1::Target* target, const std::string& region) {
  std::string direct;
  if (target == nullptr) return direct;
  for (const v1::RegionEndpoints& re : target->regions()) {
    if (re.region() != region) continue;
    direct = absl::StrCat("canaryctl probe --direct --region ", region);
    for (const v1::FunctionUrl& u : re.urls()) {
      absl::StrAppend(&direct,
                      u.mode() == v1::RESPONSE_STREAM ? " --url-stream "
                                                      : " --url-buffered ",
                      u.url());
    }
  }
  return direct;
}

}  // namespace

std::string MethodsParagraph(const v1::DetectionConfig& d) {
  return absl::StrFormat(
      "Each agent probes the canary function through its Function URLs on a "
      "fixed schedule, one stream per region x invoke mode x body size, and "
      "verifies every byte of every response against the canary contract. A "
      "probe fails when the platform failed the client (5xx, truncated, "
      "reset, stalled, timed out or corrupted body; 4xx, throttling and our "
      "own agent errors are not counted). Each stream is watched by a "
      "Bernoulli CUSUM whose in-control rate p0 is the upper 95 %% Wilson "
      "bound of its healthy baseline, floored at %g, tuned to detect %gx p0; "
      "thresholds share a budget of %g false alarm(s) per month across the "
      "fleet. Stream and buffered modes are compared with a sequential "
      "probability ratio test for a rate ratio of %g (alpha = beta = %g); the "
      "size trend is a Cochran-Armitage test over log2(body size) per %s "
      "window (alpha %g, Benjamini-Hochberg q = %g); phantom errors are "
      "platform Errors minus the failures clients saw in the same period. "
      "Change times are estimated by a change-point fit with an interval. A "
      "fix is confirmed by an any-time-valid test of p_bad = max(%g, 10 p0) "
      "against p_good = %s at level %g, which yields a proven upper bound on "
      "the error rate after the fix. Error rates in this report are "
      "failures / trials with 95 %% Wilson intervals; latency percentiles are "
      "interpolated in histogram buckets.",
      d.p0_floor(), d.p1_ratio(), d.false_alarms_per_month(), d.mode_rr1(),
      d.alpha(),
      absl::FormatDuration(absl::Seconds(d.trend_window().seconds())),
      d.trend_alpha(), d.trend_fdr_q(), d.fix_p_bad(),
      d.fix_p_good() > 0 ? absl::StrCat(d.fix_p_good()) : "p_bad / 100",
      d.fix_alpha());
}

void FillReproduction(const v1::IncidentReport& r,
                      const std::vector<v1::Target>& targets,
                      v1::Reproduction* out) {
  std::map<uint64_t, Counts> by_size;
  std::map<std::string, Counts> by_region;
  FocusCounts(r, &by_size, &by_region);
  bool any_failed = false;
  const std::string size_list = SizeList(by_size, out, &any_failed);
  const v1::Target* target = nullptr;
  for (const v1::Target& t : targets) {
    if (t.name() == r.target()) target = &t;
  }
  for (const auto& [region, n] : by_region) {
    if (n.first == 0 && !by_region.empty() && any_failed) continue;
    // Enough probes to expect about 10 failures at the observed rate.
    const double rate =
        n.second > 0 ? static_cast<double>(n.first) / n.second : 0;
    const uint64_t count =
        rate > 0 ? std::clamp<uint64_t>(
                       static_cast<uint64_t>(std::ceil(10 / rate)), 100, 10000)
                 : 1000;
    const std::string cmd = absl::StrCat("canaryctl probe --target ",
                                         r.target(), " --region ", region);
    const std::string direct = DirectCommand(target, region);
    const std::string tail = absl::StrCat(" --sizes ", size_list, " --count ",
                                          count, " --output json");
    out->add_commands(cmd + tail);
    if (!direct.empty()) out->add_commands(direct + tail);
  }
  out->set_request(
      "GET <function URL>canary?bytes=N&seed=S (streaming also chunk=C and "
      "gap_ms=G), header x-canary-probe-id: <id>; signed with SigV4 (service "
      "lambda) when the URL's AuthType is AWS_IAM.");
  out->set_expected_body(
      "Status 200 and exactly N bytes: bytes 8i..8i+7 are the little-endian "
      "SplitMix64(S + i) (mod 2^64), the last word cut at N. Headers "
      "x-canary-bytes: N, x-canary-seed: S, x-canary-mode: buffered|stream; "
      "BUFFERED answers with Content-Length, RESPONSE_STREAM chunked. A "
      "shorter body, a reset, a stall, a 5xx or a wrong byte is a platform "
      "failure.");
}

}  // namespace fleetcanary::report::internal
