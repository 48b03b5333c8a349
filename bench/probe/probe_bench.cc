// Probe engine throughput and footprint, against a local canary server.
//
//   probe_bench --url-buffered=URL --url-stream=URL --count=20000
//               --concurrency=32 --size=1Ki
//   probe_bench --url_stream=URL[,URL...] --streams=20000
//               (peak RSS, 20,000 at once; probes go round-robin over the
//               URLs, so that no one endpoint process needs 20,000
//               descriptors)
//
// Every probe is fully verified and timed (the engine has no other mode).
// Prints "key value" lines; run_probe_bench.sh compares them with wrk.
#include <malloc.h>
#include <sys/resource.h>

#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe/probe_engine.h"
#include "common/units/units.h"

ABSL_FLAG(std::string, url_buffered, "", "BUFFERED-mode base URL");
ABSL_FLAG(std::string, url_stream, "", "RESPONSE_STREAM-mode base URL");
ABSL_FLAG(int, count, 20000, "Probes per mode");
ABSL_FLAG(int, concurrency, 32, "Probes in flight");
ABSL_FLAG(std::string, size, "1Ki", "Body size");
ABSL_FLAG(bool, keep_alive, true, "Reuse connections (wrk does)");
ABSL_FLAG(int64_t, receive_buffer, 0,
          "If > 0: ProbeEngineOptions::receive_buffer_bytes, for bodies of "
          "every size (small_body_bytes unlimited)");
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

// Bytes malloc has handed out and not taken back (all arenas).
int64_t HeapInUseKb() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>((mi.uordblks + mi.hblkhd) / 1024);
}

// Samples HeapInUseKb every 20 ms on its own thread; keeps the largest.
class HeapPeak {
 public:
  HeapPeak()
      : thread_([this] {
          absl::MutexLock lock(&mu_);
          while (!mu_.AwaitWithTimeout(absl::Condition(&stop_),
                                       absl::Milliseconds(20))) {
            peak_ = std::max(peak_, HeapInUseKb());
          }
        }) {}
  // Stops sampling; the peak seen.
  int64_t Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
    return std::max(peak_, HeapInUseKb());
  }

 private:
  absl::Mutex mu_;
  bool stop_ = false;
  int64_t peak_ = 0;
  std::thread thread_;
};

struct RunResult {
  int ok = 0;
  int failed = 0;
  double seconds = 0;
  double cpu = 0;
  std::string first_failure;
};

// Runs `count` probes (all queued at once; the engine admits as many as its
// max_in_flight). The requests are built before the clock starts: what is
// timed is the engine, not the building of requests.
RunResult RunProbes(ProbeEngine* engine, const std::vector<std::string>& urls,
                    v1::InvokeMode mode, int count, uint64_t size,
                    uint64_t chunk, absl::Duration gap, bool keep_alive,
                    absl::Duration connect_timeout, absl::Duration stall) {
  std::vector<ProbeRequest> requests(count);
  for (int i = 0; i < count; ++i) {
    ProbeRequest& req = requests[i];
    req.url = urls[i % urls.size()];
    req.mode = mode;
    req.size_bytes = size;
    req.chunk_bytes = chunk;
    req.chunk_gap = gap;
    req.seed = i;
    req.probe_id = absl::StrFormat("bench-%d", i);
    req.transport.set_keep_alive(keep_alive);
    req.limits.mutable_timeout()->set_seconds(60);
    req.limits.mutable_connect_timeout()->set_seconds(
        absl::ToInt64Seconds(connect_timeout));
    req.limits.mutable_stall_limit()->set_seconds(absl::ToInt64Seconds(stall));
  }
  struct State {
    absl::Mutex mu;
    RunResult r;
    int done = 0;
  } state;
  State* st = &state;  // One pointer: the callback needs no allocation.
  const double cpu0 = CpuSeconds();
  const absl::Duration t0 = Clock::Real()->MonotonicNow();
  for (ProbeRequest& req : requests) {
    engine->Start(std::move(req), [st](v1::Outcome o) {
      absl::MutexLock lock(&st->mu);
      ++st->done;
      if (o.outcome_class() == v1::OK) {
        ++st->r.ok;
      } else {
        ++st->r.failed;
        if (st->r.first_failure.empty()) {
          st->r.first_failure =
              v1::OutcomeClass_Name(o.outcome_class()) + ": " + o.detail();
        }
      }
    });
  }
  absl::MutexLock lock(&state.mu);
  const auto all_done = [&] { return state.done == count; };
  state.mu.Await(absl::Condition(&all_done));
  RunResult r = state.r;
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
  if (absl::GetFlag(FLAGS_receive_buffer) > 0) {
    options.receive_buffer_bytes = absl::GetFlag(FLAGS_receive_buffer);
    options.small_body_bytes = std::numeric_limits<uint64_t>::max();
  }
  if (streams > 0) {
    // One descriptor per stream (fresh connections) plus the engine's own.
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
      std::cerr << "cannot raise RLIMIT_NOFILE to its hard limit\n";
    }
    getrlimit(RLIMIT_NOFILE, &lim);
    std::cout << "rlimit_nofile " << lim.rlim_cur << "\n";
    if (lim.rlim_cur < static_cast<rlim_t>(streams) + 16) {
      std::cerr << "warning: RLIMIT_NOFILE " << lim.rlim_cur << " is below "
                << streams << " streams + 16; some probes will fail\n";
    }
  }
  auto engine = ProbeEngine::Create(options, Clock::Real());
  if (!engine.ok()) {
    std::cerr << engine.status().message() << "\n";
    return 1;
  }
  if (streams > 0) {
    const int64_t rss0 = StatusKb("VmRSS");
    const int64_t heap0 = HeapInUseKb();
    HeapPeak heap_peak;
    // 4 KiB streamed as 16 chunks of 256 B, 200 ms apart: ~3 s per probe, so
    // all of them are in flight together.
    const RunResult r = RunProbes(
        engine->get(), absl::StrSplit(absl::GetFlag(FLAGS_url_stream), ','),
        v1::RESPONSE_STREAM, streams, 4096, 256, absl::Milliseconds(200),
        /*keep_alive=*/false,
        // Thousands of connects at once can overflow the endpoint's accept
        // backlog (SYN retried after 1 s, 3 s, ...), and a starved endpoint
        // can pause a stream for seconds; memory is measured here.
        /*connect_timeout=*/absl::Seconds(30), /*stall=*/absl::Seconds(30));
    const int64_t hwm = StatusKb("VmHWM");
    const int64_t heap_peak_kb = heap_peak.Stop();
    std::cout << absl::StrFormat(
        "streams %d\nreceive_buffer_bytes %d\nok %d\nfailed %d\nseconds %.2f\n"
        "rss_before_kib %d\npeak_rss_kib %d\nper_stream_kib %.1f\n"
        "cpu_per_probe_us %.1f\nheap_in_use_before_kib %d\n"
        "peak_heap_in_use_kib %d\nheap_per_stream_kib %.1f\n",
        streams, options.receive_buffer_bytes, r.ok, r.failed, r.seconds, rss0,
        hwm, static_cast<double>(hwm - rss0) / streams, 1e6 * r.cpu / streams,
        heap0, heap_peak_kb,
        static_cast<double>(heap_peak_kb - heap0) / streams);
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
        RunProbes(engine->get(), {url}, mode, count, *size, 0,
                  absl::ZeroDuration(), absl::GetFlag(FLAGS_keep_alive),
                  /*connect_timeout=*/absl::Seconds(5),
                  /*stall=*/absl::Seconds(10));
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
