// What `canaryctl probe` prints, probing directly or through the controller:
// the summary table and the number formats around it.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_CLI_COMMANDS_PROBE_TABLE_H_
#define FLEETCANARY_CLI_COMMANDS_PROBE_TABLE_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fleetcanary/v1/admin.pb.h"

namespace fleetcanary {
namespace cli {

// One row per summary, in the given order: mode, size, probes, OK and
// failures by class, error rate with its 95% interval, TTFB p50/p90/p99 ("-"
// when nothing answered) and throughput. `with_region` adds a REGION column
// first (a run through the controller spans regions).
std::string RenderSummaryTable(const std::vector<v1::ProbeSummary>& summaries,
                               bool with_region);

// "12.3ms", "456ms", "1.23s".
std::string FormatMs(absl::Duration d);
// A fraction as a percentage: 0.0123 -> "1.23%".
std::string FormatPercent(double p);
// Bytes per second in binary units: "1.5 MiB/s".
std::string FormatThroughput(double bytes_per_second);

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_COMMANDS_PROBE_TABLE_H_
