// Reconciliation of the platform's own metrics with what the clients saw
// (docs/architecture.md, "Phantom errors"): per platform-metrics period, invoke
// mode (alias), region and target, the platform's `Errors` and `Invocations`
// (Sum) against the outcomes whose start_time falls in the period. Platform
// errors beyond the failures clients observed are *phantom errors*.
//
// Periods are [T, T + period) with T a multiple of `period` since the Unix
// epoch, in the time base of the outcomes (their start_time) and of the
// platform datapoints (stamped with the invocation start time), which are
// the same wall clock.
//
// Counting rules (analysis/replay.h, shared with the offline analysis and
// the store-backed Analyze):
//  - client_probes: outcomes that are trials (analysis::IsTrial): never
//    AGENT_ERROR (our own fault, the request may never have left).
//  - client_failures: outcomes the platform itself saw fail
//    (analysis::IsPlatformVisibleFailure).
//  - ad-hoc outcomes (adhoc_id set) count in both: they invoke the same
//    function, so an ad-hoc 502 is not a phantom error. They are reported
//    apart (adhoc_probes) and never feed stream verdicts (the caller's rule).
//  - phantom_errors = min(Invocations, max(0, Errors - visible)), where
//    visible = client_failures, or, when the Function URL metrics of the
//    period are known, max(client_failures, Url5xxCount): an invocation
//    error the URL answered with a 5xx was visible to whoever sent that
//    request, even when no outcome of ours records it (an outcome lost in
//    transit, another caller of the alias), so it is not phantom. A phantom
//    error is exactly an Errors count with no 5xx response.
//  - unattributed_requests = max(0, UrlRequestCount - client_probes): requests
//    the URL served that no outcome of ours accounts for (other callers,
//    lost outcomes); it says how far client_failures can be trusted.
//
// Platform samples: metrics "Errors", "Invocations" and the Function URL
// metrics "UrlRequestCount", "Url4xxCount", "Url5xxCount" with stat "Sum"
// (or no stat) are used, others ignored (counted). The URL metrics are
// optional: a period is decided without them (agents of older versions do
// not read them); they arrive in the same reads as Errors. Several agents may
// read the same alias, and one agent re-reads a period until CloudWatch
// finalises it, so a (region, target, mode, period, metric) arrives many times:
// the largest value is kept (these sums only grow as late datapoints arrive; a
// re-read never lowers them).
//
// When a period is decided: once the watermark passed the period's end by
// `settle` and both Errors and Invocations are known for it; a period still
// lacking one of them `max_wait` after its end is given up (counted in
// periods_missing, no verdict input). Per key, periods are decided in
// order: a later period waits behind an undecided earlier one. Data for a
// period already decided (or given up) is late: counted, not used.
//
// Memory: one entry per open (key, period), at most max_open_periods (the
// oldest are given up beyond that).
//
// Thread-safety: not thread-safe; one owner (the verdict service's worker).
#ifndef FLEETCANARY_CONTROLLER_VERDICTS_RECONCILER_H_
#define FLEETCANARY_CONTROLLER_VERDICTS_RECONCILER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "analysis/replay.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace controller {

struct ReconcilerOptions {
  // Platform-metrics period (ControllerConfig.metrics_period). > 0.
  absl::Duration period = absl::Seconds(60);
  // How long after a period's end (in watermark time) it is decided; covers
  // the agents' ingestion delay plus a poll and the outcomes' transit.
  absl::Duration settle = absl::Minutes(5);
  // A period still lacking Errors or Invocations this long after its end is
  // given up. >= settle.
  absl::Duration max_wait = absl::Minutes(15);
  size_t max_open_periods = 1 << 20;
  // Periods starting before this are never reconciled; their data is
  // counted in before_start. The verdict service sets it to the time it
  // started: a previous controller process consumed part of those periods'
  // client outcomes (they are acknowledged and never resent), so their
  // platform errors would look phantom.
  absl::Time not_before = absl::InfinitePast();
};

// One decided period of one (region, target, mode).
struct ReconciledPeriod {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  absl::Time period_start;
  double platform_errors = 0;
  double platform_invocations = 0;
  // Function URL metrics of the period (Sum); < 0 when not read.
  double platform_url_requests = -1;
  double platform_url_4xx = -1;
  double platform_url_5xx = -1;
  uint64_t unattributed_requests = 0;  // See above; 0 when not read.
  uint64_t client_probes = 0;          // Trials, scheduled and ad hoc.
  uint64_t client_failures = 0;        // Platform-visible failures among them.
  uint64_t adhoc_probes = 0;           // Ad-hoc trials among client_probes.
  uint64_t phantom_errors = 0;
  // Scheduled trials per requested body size: a period whose probes all had
  // one size attributes its phantom errors to that size.
  std::map<uint64_t, uint64_t> scheduled_probes_by_size;
};

struct ReconcilerStats {
  uint64_t periods_reconciled = 0;
  uint64_t periods_missing = 0;  // Given up: platform data incomplete.
  uint64_t late_samples = 0;     // For a period already decided.
  uint64_t late_outcomes = 0;
  uint64_t ignored_samples = 0;  // Other metrics/stats, wrong period, bad.
  uint64_t before_start = 0;     // Samples and outcomes before not_before.
  uint64_t open_periods = 0;
};

class Reconciler {
 public:
  // INVALID_ARGUMENT for a non-positive period or max_wait < settle.
  static absl::StatusOr<std::unique_ptr<Reconciler>> Create(
      const ReconcilerOptions& options);

  // Counts an outcome in its period. Outcomes lacking region, target, a
  // valid mode or start_time cannot be placed and are ignored.
  void AddOutcome(const v1::Outcome& outcome);

  // Records a platform datapoint (see "Platform samples" above).
  void AddSample(const v1::PlatformMetricSample& sample);

  // Decides every period that is due at `watermark` and returns the
  // reconciled ones, per key in period order (keys in key order).
  std::vector<ReconciledPeriod> Advance(absl::Time watermark);

  ReconcilerStats stats() const;

  // Start of the period containing `t`.
  absl::Time PeriodStart(absl::Time t) const;

 private:
  explicit Reconciler(const ReconcilerOptions& options) : options_(options) {}

  using ModeKey = std::tuple<std::string, std::string, int>;
  struct Open {
    // Platform readings and client counts (the analysis library's rules).
    analysis::PlatformPeriod platform;
    uint64_t adhoc_probes = 0;
    std::map<uint64_t, uint64_t> by_size;
  };
  struct KeyState {
    // Periods starting before this are decided.
    absl::Time decided_until = absl::InfinitePast();
    std::map<absl::Time, Open> open;
  };

  // Returns the open period, or nullptr when it is already decided.
  Open* Find(const ModeKey& key, absl::Time period_start);
  void EnforceBound();

  const ReconcilerOptions options_;
  std::map<ModeKey, KeyState> keys_;
  size_t open_count_ = 0;
  ReconcilerStats stats_;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_VERDICTS_RECONCILER_H_
