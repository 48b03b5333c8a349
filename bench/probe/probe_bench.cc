// Probe engine throughput and footprint, against a local canary server.
//
//   probe_bench --url-buffered=URL --url-stream=URL --count=20000
//               --concurrency=32 --size=1Ki
//   probe_bench --url-stream=URL --streams=5000   (peak RSS, 5,000 at once)
//
// Every probe is fully verified and timed (the engine has no other mode).
// Prints "key value" lines; run_probe_bench.sh compares them with wrk.
#include <sys/resource.h>

#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe/probe_engine.h"
#include "common/units/units.h"

ABSL_FLAG(std::string, url_buffered, "", "BUFFERED-mode base URL");
ABSL_FLAG(std::string, url_stream, "", "RESPONSE_STREAM-mode base URL");
ABSL_FLAG(int, count, 20000, "Probes per mode");
ABSL_FLAG(int, concurrency, 32, "Probes in flight");
ABSL_FLAG(std::string, size, "1Ki", "Body size");
ABSL_FLAG(bool, keep_alive, true, "Reuse connections (wrk does)");
ABSL_FLAG(int, streams, 0,
          "If > 0: run this many slow streaming probes at once and report "
          "peak RSS instead");

namespace fleetcanary {
namespace {

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

int64_t StatusKb(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0)
      return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

struct RunResult {
  int ok = 0;
  int failed = 0;
  double seconds = 0;
  double cpu = 0;
  std::string first_failure;
};

RunResult RunProbes(ProbeEngine* engine, const std::string& url,
                    v1::InvokeMode mode, int count, uint64_t size,
                    uint64_t chunk, absl::Duration gap, bool keep_alive) {
  absl::Mutex mu;
  RunResult r;
  int done = 0;
  const double cpu0 = CpuSeconds();
  const absl::Duration t0 = Clock::Real()->MonotonicNow();
  for (int i = 0; i < count; ++i) {
    ProbeRequest req;
    req.url = url;
    req.mode = mode;
    req.size_bytes = size;
    req.chunk_bytes = chunk;
    req.chunk_gap = gap;
    req.seed = i;
    req.probe_id = absl::StrFormat("bench-%d", i);
    req.transport.set_keep_alive(keep_alive);
    req.limits.mutable_timeout()->set_seconds(60);
    engine->Start(std::move(req), [&](v1::Outcome o) {
      absl::MutexLock lock(&mu);
      ++done;
      if (o.outcome_class() == v1::OK) {
        ++r.ok;
      } else {
        ++r.failed;
        if (r.first_failure.empty()) {
          r.first_failure =
              v1::OutcomeClass_Name(o.outcome_class()) + ": " + o.detail();
        }
      }
    });
  }
  absl::MutexLock lock(&mu);
  const auto all_done = [&] { return done == count; };
  mu.Await(absl::Condition(&all_done));
  r.seconds = absl::ToDoubleSeconds(Clock::Real()->MonotonicNow() - t0);
  r.cpu = CpuSeconds() - cpu0;
  return r;
}

int Main() {
  const absl::StatusOr<uint64_t> size = ParseBytes(absl::GetFlag(FLAGS_size));
  if (!size.ok()) {
    std::cerr << "--size: " << size.status().message() << "\n";
    return 1;
  }
  const int streams = absl::GetFlag(FLAGS_streams);
  ProbeEngineOptions options;
  options.max_in_flight =
      streams > 0 ? streams : absl::GetFlag(FLAGS_concurrency);
  options.max_connections = std::max(options.max_in_flight, 64);
  if (streams > 0) {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  auto engine = ProbeEngine::Create(options, Clock::Real());
  if (!engine.ok()) {
    std::cerr << engine.status().message() << "\n";
    return 1;
  }
  if (streams > 0) {
    const int64_t rss0 = StatusKb("VmRSS");
    // 4 KiB streamed as 16 chunks of 256 B, 200 ms apart: ~3 s per probe, so
    // all of them are in flight together.
    const RunResult r = RunProbes(
        engine->get(), absl::GetFlag(FLAGS_url_stream), v1::RESPONSE_STREAM,
        streams, 4096, 256, absl::Milliseconds(200),
        /*keep_alive=*/false);
    const int64_t hwm = StatusKb("VmHWM");
    std::cout << absl::StrFormat(
        "streams %d\nok %d\nfailed %d\nseconds %.2f\nrss_before_kib %d\n"
        "peak_rss_kib %d\nper_stream_kib %.1f\ncpu_per_probe_us %.1f\n",
        streams, r.ok, r.failed, r.seconds, rss0, hwm,
        static_cast<double>(hwm - rss0) / streams, 1e6 * r.cpu / streams);
    if (r.failed) std::cout << "first_failure " << r.first_failure << "\n";
    return r.failed == 0 ? 0 : 2;
  }
  int rc = 0;
  for (const auto& [name, url, mode] :
       {std::tuple<std::string, std::string, v1::InvokeMode>{
            "buffered", absl::GetFlag(FLAGS_url_buffered), v1::BUFFERED},
        {"stream", absl::GetFlag(FLAGS_url_stream), v1::RESPONSE_STREAM}}) {
    if (url.empty()) continue;
    const int count = absl::GetFlag(FLAGS_count);
    const RunResult r =
        RunProbes(engine->get(), url, mode, count, *size, 0,
                  absl::ZeroDuration(), absl::GetFlag(FLAGS_keep_alive));
    std::cout << absl::StrFormat(
        "%s_probes_per_second %.0f\n%s_cpu_per_probe_us %.1f\n%s_failed %d\n",
        name, count / r.seconds, name, 1e6 * r.cpu / count, name, r.failed);
    if (r.failed) {
      std::cout << name << "_first_failure " << r.first_failure << "\n";
      rc = 2;
    }
  }
  return rc;
}

}  // namespace
}  // namespace fleetcanary

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return fleetcanary::Main();
}
