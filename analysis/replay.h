// Platform-vs-client reconciliation, in one place for every path that feeds
// PHANTOM_ERRORS: the live verdict service (controller/verdicts/reconciler.h),
// `canaryctl analyze` (offline.h) and the store-backed Analyze
// (controller/api/store_verdict_source.cc).
//
// Rules:
//  - Which datapoints count: metric "Errors" or "Invocations", and the
//    optional Function URL metrics "UrlRequestCount", "Url4xxCount" and
//    "Url5xxCount", stat "Sum" or empty; other metrics and stats are read and
//    ignored. A period is decided without the URL metrics (older agents do
//    not read them).
//  - One value per (region, target, mode, period start, metric): a period is
//    re-read until CloudWatch finalises it and several agents may read the
//    same alias, so duplicates are the *same* datapoint, never added. The
//    latest reading wins; since these sums only grow as late data arrives,
//    the latest reading is the largest, which makes the result independent
//    of input order (re-read, duplicated or out-of-order input gives the same
//    periods as clean input).
//  - Client side of a period [T, T + period): trials (IsTrial) whose
//    start_time falls in it, and among them the failures the platform itself
//    saw (IsPlatformVisibleFailure). AGENT_ERROR is never a trial.
//  - visible = client_failures, or max(client_failures, Url5xxCount) when the
//    period's Url5xxCount is known: an invocation error the URL answered
//    with a 5xx was visible to whoever sent that request, even when no
//    outcome of ours records it (an outcome lost in transit, another caller
//    of the alias). A phantom error is an Errors count with no 5xx response.
//  - phantom = min(Invocations, max(0, Errors - visible)).
//
// Pure data structures; not thread-safe (one owner).
#ifndef FLEETCANARY_ANALYSIS_REPLAY_H_
#define FLEETCANARY_ANALYSIS_REPLAY_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary::analysis {

// Failures visible to a caller in one period (see above); `url_5xx` < 0 when
// the period's Url5xxCount is unknown.
uint64_t VisibleFailures(uint64_t client_failures, double url_5xx);

// Phantom errors of one period (see above), given its visible failures.
uint64_t PhantomErrors(double platform_errors, double platform_invocations,
                       uint64_t visible_failures);

// Which of the reconciled metrics a datapoint is.
enum class PlatformMetric {
  kOther,
  kErrors,
  kInvocations,
  kUrlRequests,
  kUrl4xx,
  kUrl5xx,
};

// The metric of a usable datapoint (metric and stat as above), kOther for
// one to ignore.
PlatformMetric ClassifyPlatformSample(const v1::PlatformMetricSample& s);

// Checks the fields a usable datapoint needs. Errors: INVALID_ARGUMENT naming
// the field ("platform_sample.mode ...", ".region", ".target",
// ".period_start", ".value", ".period").
absl::Status ValidatePlatformSample(const v1::PlatformMetricSample& s);

// One (region, target, mode) and period.
struct PlatformPeriod {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  absl::Time start;
  absl::Duration length;
  double errors = -1;       // < 0: no datapoint seen.
  double invocations = -1;  // < 0: no datapoint seen.
  // Function URL metrics; < 0: no datapoint seen.
  double url_requests = -1;
  double url_4xx = -1;
  double url_5xx = -1;
  uint64_t client_probes = 0;
  uint64_t client_failures = 0;

  bool complete() const { return errors >= 0 && invocations >= 0; }
  uint64_t visible_failures() const {
    return VisibleFailures(client_failures, url_5xx);
  }
  uint64_t phantom() const {
    return PhantomErrors(errors, invocations, visible_failures());
  }
};

// Keeps the largest reading of `metric` (not kOther) in `p`: re-reads of a
// period only grow, so the largest is the latest.
void RecordReading(PlatformPeriod* p, PlatformMetric metric, double value);

// Collects datapoints and client outcomes of many periods (offline and store
// replays; the live reconciler keeps the same rules incrementally).
class PlatformPeriodTable {
 public:
  // Records a datapoint. Unusable metrics/stats are ignored (returns false).
  // Errors: as ValidatePlatformSample. Also INVALID_ARGUMENT when the same
  // period start of one key arrives with two different lengths.
  absl::StatusOr<bool> AddSample(const v1::PlatformMetricSample& s);

  // Counts one client outcome into the period of its key holding `start`,
  // if any datapoint was recorded for that key. Call after every AddSample.
  void AddOutcome(const std::string& region, const std::string& target,
                  v1::InvokeMode mode, absl::Time start, v1::OutcomeClass cls);

  // Counts `trials` client trials, `failures` of them platform-visible, into
  // the period holding `time` (pre-aggregated input, e.g. store minutes).
  void AddClientCounts(const std::string& region, const std::string& target,
                       v1::InvokeMode mode, absl::Time time, uint64_t trials,
                       uint64_t failures);

  // Periods with both metrics, ordered by (end, region, target, mode).
  std::vector<PlatformPeriod> CompletePeriods() const;
  // Periods lacking Errors or Invocations (the caller reports them).
  uint64_t incomplete_periods() const;

 private:
  using Key = std::tuple<std::string, std::string, int>;
  std::map<Key, std::map<absl::Time, PlatformPeriod>> periods_;
};

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_REPLAY_H_
