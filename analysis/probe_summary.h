// Per (mode, size) summaries of a set of probe outcomes, as the admin API's
// ProbeSummary: counts by class, the platform error rate with a 95 % Wilson
// interval, TTFB percentiles and throughput.
//
// Error rate = client-visible failures / trials, where trials exclude
// AGENT_ERROR (our own faults are never counted against the platform).
// Throughput = body bytes received / summed probe durations (per-connection
// goodput). Percentiles are nearest-rank over probes that got headers.
//
// Not thread-safe (callers serialise Add()).
#ifndef FLEETCANARY_ANALYSIS_PROBE_SUMMARY_H_
#define FLEETCANARY_ANALYSIS_PROBE_SUMMARY_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace analysis {

class SummaryBuilder {
 public:
  explicit SummaryBuilder(std::string region) : region_(std::move(region)) {}

  void Add(const v1::Outcome& outcome);
  // One summary per (mode, requested size) seen, ordered by mode then size.
  std::vector<v1::ProbeSummary> Build() const;

  uint64_t total() const { return total_; }
  uint64_t failures() const { return failures_; }
  uint64_t agent_errors() const { return agent_errors_; }

 private:
  struct Stream {
    std::map<int, uint64_t> by_class;
    std::vector<absl::Duration> ttfb;
    uint64_t bytes = 0;
    absl::Duration busy;
  };
  std::string region_;
  std::map<std::pair<int, uint64_t>, Stream> streams_;
  uint64_t total_ = 0;
  uint64_t failures_ = 0;
  uint64_t agent_errors_ = 0;
};

// Nearest-rank percentile (0 < p <= 1) of `values` (sorted in place).
// Zero for an empty input.
absl::Duration Percentile(std::vector<absl::Duration>* values, double p);

// Whether a class counts as a platform failure: the verdicts' definition
// (IsStreamHealthFailure), so `canaryctl probe` and the verdicts
// agree; HTTP_4XX and THROTTLED are trials but not failures.
bool IsPlatformFailure(v1::OutcomeClass c);

}  // namespace analysis
}  // namespace fleetcanary

#endif  // FLEETCANARY_ANALYSIS_PROBE_SUMMARY_H_
