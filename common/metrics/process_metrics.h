// The metrics every fleetcanary binary exports besides its own: what it is
// and how the process is doing, under the names Prometheus client libraries
// use, so standard dashboards and alerts work unchanged:
//   fleetcanary_build_info{version,revision,program}  1
//   process_cpu_seconds_total          user + system CPU time
//   process_resident_memory_bytes      resident set size
//   process_virtual_memory_bytes       virtual memory size
//   process_open_fds                   open file descriptors
//   process_max_fds                    RLIMIT_NOFILE soft limit
//   process_start_time_seconds         start time, seconds since the epoch
// The process_* values are read from procfs at each scrape (Linux only); a
// file that cannot be read leaves its metric out and never fails a scrape.
//
// Thread-safety: the collectable is thread-safe (it keeps no state).
#ifndef FLEETCANARY_COMMON_METRICS_PROCESS_METRICS_H_
#define FLEETCANARY_COMMON_METRICS_PROCESS_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <memory>
#include <string>
#include <vector>

namespace fleetcanary {

struct ProcessMetricsOptions {
  // Value of fleetcanary_build_info's `program` label, e.g.
  // "fleetcanary-agent".
  std::string program;
  // procfs root and the process directory in it; tests point these at a
  // prepared tree.
  std::string proc_root = "/proc";
  std::string pid = "self";
  // Clock ticks per second and page size; 0 = sysconf's.
  long ticks_per_second = 0;
  long page_size = 0;
};

// Register the result with the binary's /metrics endpoint.
std::shared_ptr<prometheus::Collectable> NewProcessMetrics(
    const ProcessMetricsOptions& options);

// One scrape's worth, for binaries that serialize a registry themselves.
std::vector<prometheus::MetricFamily> CollectProcessMetrics(
    const ProcessMetricsOptions& options);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_METRICS_PROCESS_METRICS_H_
