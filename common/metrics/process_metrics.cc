#include "common/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/build/allocator.h"
#include "common/build/build_info.h"

namespace fleetcanary {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

prometheus::MetricFamily Family(const char* name, const char* help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

// fleetcanary_build_info{program,revision,version,allocator} 1.
prometheus::MetricFamily BuildInfoFamily(const std::string& program) {
  prometheus::MetricFamily f;
  f.name = "fleetcanary_build_info";
  f.help = "1, labelled with the binary's version, git revision and malloc.";
  f.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  m.label = {{"program", program},
             {"revision", BuildRevision()},
             {"version", BuildVersion()},
             {"allocator", AllocatorName()}};
  m.gauge.value = 1;
  f.metric.push_back(std::move(m));
  return f;
}

// Appends process_start_time_seconds: boot time (btime in <proc_root>/stat)
// plus the process's `start_ticks`. Appends nothing if btime is unreadable.
void AppendStartTime(const std::string& proc_root, double start_ticks,
                     long ticks, std::vector<prometheus::MetricFamily>* out) {
  std::optional<std::string> sys = ReadFile(proc_root + "/stat");
  if (!sys) return;
  for (absl::string_view line : absl::StrSplit(*sys, '\n')) {
    double btime = 0;
    if (absl::ConsumePrefix(&line, "btime ") &&
        absl::SimpleAtod(line, &btime)) {
      out->push_back(
          Family("process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.",
                 prometheus::MetricType::Gauge, btime + start_ticks / ticks));
    }
  }
}

// Appends CPU time, virtual and resident memory and start time from
// <dir>/stat, each only if its field parses. REQUIRES: ticks > 0.
void AppendStatMetrics(const ProcessMetricsOptions& options,
                       const std::string& dir, long ticks, long page,
                       std::vector<prometheus::MetricFamily>* out) {
  using prometheus::MetricType;
  // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and
  // parentheses, so fields are counted from the last ')'. Field numbers as
  // in proc(5): utime 14, stime 15, starttime 22, vsize 23, rss 24.
  std::optional<std::string> stat = ReadFile(dir + "/stat");
  if (!stat) return;
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return;
  std::vector<absl::string_view> f = absl::StrSplit(
      absl::string_view(*stat).substr(close + 1), ' ', absl::SkipWhitespace());
  // f[0] is field 3 (state).
  auto field = [&f](int n, double* v) {
    return static_cast<size_t>(n - 3) < f.size() &&
           absl::SimpleAtod(f[n - 3], v);
  };
  double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  if (field(14, &utime) && field(15, &stime)) {
    out->push_back(Family("process_cpu_seconds_total",
                          "Total user and system CPU time spent in seconds.",
                          MetricType::Counter, (utime + stime) / ticks));
  }
  if (field(23, &vsize)) {
    out->push_back(Family("process_virtual_memory_bytes",
                          "Virtual memory size in bytes.", MetricType::Gauge,
                          vsize));
  }
  if (field(24, &rss) && page > 0) {
    out->push_back(Family("process_resident_memory_bytes",
                          "Resident memory size in bytes.", MetricType::Gauge,
                          rss * page));
  }
  if (field(22, &start)) AppendStartTime(options.proc_root, start, ticks, out);
}

// Appends process_open_fds, the entries of <dir>/fd, if it can be listed.
void AppendOpenFds(const std::string& dir, const std::string& pid,
                   std::vector<prometheus::MetricFamily>* out) {
  DIR* d = opendir((dir + "/fd").c_str());
  if (d == nullptr) return;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  // The directory stream itself holds one descriptor while counting.
  if (pid == "self") --n;
  out->push_back(Family("process_open_fds", "Number of open file descriptors.",
                        prometheus::MetricType::Gauge, n));
}

// Appends process_max_fds, the soft limit in <dir>/limits, if it parses.
void AppendMaxFds(const std::string& dir,
                  std::vector<prometheus::MetricFamily>* out) {
  // /proc/<pid>/limits: "Max open files  <soft>  <hard>  files".
  std::optional<std::string> limits = ReadFile(dir + "/limits");
  if (!limits) return;
  for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    double soft = 0;
    if (!f.empty() && absl::SimpleAtod(f[0], &soft)) {
      out->push_back(Family("process_max_fds",
                            "Maximum number of open file descriptors.",
                            prometheus::MetricType::Gauge, soft));
    }
  }
}

class ProcessCollectable : public prometheus::Collectable {
 public:
  explicit ProcessCollectable(ProcessMetricsOptions options)
      : options_(std::move(options)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    return CollectProcessMetrics(options_);
  }

 private:
  const ProcessMetricsOptions options_;
};

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics(
    const ProcessMetricsOptions& options) {
  std::vector<prometheus::MetricFamily> out;
  out.push_back(BuildInfoFamily(options.program));
  const long ticks = options.ticks_per_second > 0 ? options.ticks_per_second
                                                  : sysconf(_SC_CLK_TCK);
  const long page =
      options.page_size > 0 ? options.page_size : sysconf(_SC_PAGESIZE);
  const std::string dir = options.proc_root + "/" + options.pid;
  if (ticks > 0) AppendStatMetrics(options, dir, ticks, page, &out);
  AppendOpenFds(dir, options.pid, &out);
  AppendMaxFds(dir, &out);
  return out;
}

std::shared_ptr<prometheus::Collectable> NewProcessMetrics(
    const ProcessMetricsOptions& options) {
  return std::make_shared<ProcessCollectable>(options);
}

}  // namespace fleetcanary
