// Controller ingest throughput, from many simulated agents.
//
// Spawns the real fleetcanary-controller (its own process, SQLite in a temp
// dir, a fleet file assigning the simulated outcomes' streams to every agent)
// and drives it with N simulated agents (tests/integration/sim_agents.h:
// Connect streams speaking AgentSession, Hello → Welcome, then
// OutcomeBatches of B realistic outcomes with at most W batches awaiting
// their Ack). Reports outcomes/s committed *and acknowledged* beside the
// rate offered (outcomes entering the agents' outboxes), the Ack latency
// p50/p99 (batch written → Ack read), the controller's CPU (utime+stime
// from /proc) and RSS, and the load generator's own CPU and, when pinned,
// the idle share of its CPUs (so a run says whether the generator was the
// limit). The first run is the reference; the others are printed as ratios.
//
// --controller_cpus / --load_cpus pin the controller and this process
// (taskset-like, every thread) to disjoint CPUs.
//
// Also measures the agent outbox append rate (durable SQLite file vs the same
// code on an in-memory SQLite database as the reference).
//
// --stores=sqlite,postgresql runs every agent count against each store in the
// same run: the controller's SQLite file, and a PostgreSQL server this
// program starts itself (initdb in a temp dir, loopback port; a fresh
// database per run), so their throughput and Ack latency compare directly.
//
// --soak=10m runs the first agent count once for that long at
// --rate_per_agent, sampling the controller's RSS and open file descriptors
// every --sample_every, and prints the slopes (KiB/min, fds/min).
//
// Usage: ingest_bench [--agents=1,100,1000] [--seconds=5] [--batch=200]
//                     [--window=4] [--channels_per_1000=50]
//                     [--rate_per_agent=0] [--controller_cpus=0]
//                     [--load_cpus=1] [--stores=sqlite,postgresql]
//                     [--soak=10m --sample_every=10s]
#include <grpcpp/grpcpp.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "agent/outbox/outbox.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.grpc.pb.h"
#include "tests/integration/process.h"
#include "tests/integration/sim_agents.h"
#include "tests/testing/postgres_server.h"

ABSL_FLAG(std::string, agents, "1,100,1000", "Simulated agent counts.");
ABSL_FLAG(int, seconds, 5, "Measured seconds per run.");
ABSL_FLAG(int, batch, 200, "Outcomes per batch.");
ABSL_FLAG(int, window, 4, "Batches awaiting an Ack per agent.");
ABSL_FLAG(int, channels_per_1000, 50,
          "HTTP/2 connections per 1,000 agents (streams are multiplexed).");
ABSL_FLAG(int, outbox_appends, 20000, "Outbox appends to time.");
ABSL_FLAG(
    std::string, stores, "sqlite",
    "Controller stores to compare: sqlite, postgresql (comma-separated).");
ABSL_FLAG(double, rate_per_agent, 0,
          "Outcomes/s each agent offers (0 = as fast as the window allows).");
ABSL_FLAG(absl::Duration, send_interval, absl::Milliseconds(100),
          "With a rate: how often agents send what their outbox holds.");
ABSL_FLAG(std::string, controller_cpus, "",
          "CPUs the controller is pinned to, e.g. \"0\" (\"\" = any).");
ABSL_FLAG(std::string, load_cpus, "",
          "CPUs this process (the simulated agents) is pinned to, e.g. "
          "\"1\" (\"\" = any).");
ABSL_FLAG(absl::Duration, soak, absl::ZeroDuration(),
          "Soak instead: one run of the first --agents count this long.");
ABSL_FLAG(absl::Duration, sample_every, absl::Seconds(10),
          "Soak: sampling period of the controller's RSS and fds.");

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::Process;

Clock* clock_ = Clock::Real();

struct ProcStats {
  double cpu_seconds = 0;
  double rss_mib = 0;
};

ProcStats ReadProc(pid_t pid) {
  ProcStats s;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string content((std::istreambuf_iterator<char>(stat)),
                      std::istreambuf_iterator<char>());
  const size_t close = content.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f =
        absl::StrSplit(content.substr(close + 2), ' ', absl::SkipEmpty());
    // Fields after the name start at state (3rd overall): utime is 14th.
    if (f.size() > 13) {
      double ut = 0, st = 0;
      absl::SimpleAtod(f[11], &ut);
      absl::SimpleAtod(f[12], &st);
      s.cpu_seconds = (ut + st) / sysconf(_SC_CLK_TCK);
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      double kb = 0;
      absl::SimpleAtod(
          absl::StripAsciiWhitespace(line.substr(6, line.size() - 9)), &kb);
      s.rss_mib = kb / 1024;
    }
  }
  return s;
}

std::string LoadAvg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

struct RunResult {
  int agents = 0;
  double outcomes_per_second = 0;
  double offered_per_second = 0;  // Outcomes entering the agents' outboxes.
  double p50_ms = 0, p99_ms = 0;
  double controller_cores = 0;
  double load_cores = 0;      // This process (the simulated agents).
  double load_cpu_idle = -1;  // Idle share of the load generator's CPUs.
  double rss_idle_mib = 0, rss_connected_mib = 0, rss_end_mib = 0;
  double rss_max_mib = 0;
  double offered = 0;
};

// Pins every thread of this process (and so what it spawns or creates next)
// to `cpus` ("" = no change).
void PinSelf(const std::string& cpus) {
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (absl::string_view c : absl::StrSplit(cpus, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n)) {
      std::fprintf(stderr, "bad cpu list %s\n", cpus.c_str());
      std::exit(1);
    }
    CPU_SET(n, &set);
  }
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/self/task")) {
    int tid = 0;
    if (!absl::SimpleAtoi(task.path().filename().string(), &tid)) continue;
    if (sched_setaffinity(tid, sizeof(set), &set) != 0) {
      std::perror("sched_setaffinity");
      std::exit(1);
    }
  }
}

// Idle and total jiffies of `cpus` (all CPUs when empty) from /proc/stat.
std::pair<double, double> CpuJiffies(const std::string& cpus) {
  std::vector<std::string> wanted;
  if (cpus.empty()) {
    wanted.push_back("cpu");
  } else {
    for (absl::string_view c : absl::StrSplit(cpus, ',', absl::SkipEmpty())) {
      wanted.push_back(absl::StrCat("cpu", c));
    }
  }
  std::ifstream stat("/proc/stat");
  std::string line;
  double idle = 0, total = 0;
  while (std::getline(stat, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 6 ||
        std::find(wanted.begin(), wanted.end(), f[0]) == wanted.end()) {
      continue;
    }
    for (size_t i = 1; i < f.size() && i <= 8; ++i) {
      double v = 0;
      absl::SimpleAtod(f[i], &v);
      total += v;
      if (i == 4 || i == 5) idle += v;  // idle, iowait
    }
  }
  return {idle, total};
}

double SelfCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int OpenFds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// Least-squares slope of y over x.
double Slope(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2) return 0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

// Starts the controller (pinned to --controller_cpus, this process then to
// --load_cpus). `store_url` "" = the controller's SQLite file in `dir`.
std::unique_ptr<Process> StartController(const std::string& dir,
                                         const std::string& store_url,
                                         std::string* address) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/fleet.yaml") << testing::SimFleetYaml();
  std::vector<std::string> args = {"--grpc_listen=127.0.0.1:0",
                                   "--http_listen=127.0.0.1:0",
                                   "--data_dir=" + dir,
                                   "--fleet=" + dir + "/fleet.yaml",
                                   "--target_allow_loopback",
                                   "--heartbeat_interval=60s",
                                   "--insecure"};
  if (!store_url.empty()) {
    args.push_back("--store=" + store_url);
    args.push_back("--leader_lease=300s");
  }
  PinSelf(absl::GetFlag(FLAGS_controller_cpus));
  auto controller =
      Process::Spawn(BinaryPath("controller/server/fleetcanary-controller"),
                     args, dir + "/controller.log");
  PinSelf(absl::GetFlag(FLAGS_load_cpus));
  if (!controller.ok()) {
    std::fprintf(stderr, "%s\n", controller.status().ToString().c_str());
    std::exit(1);
  }
  auto line = (*controller)->WaitForLine("listening ", absl::Seconds(30));
  if (!line.ok()) {
    std::fprintf(stderr, "%s\n", line.status().ToString().c_str());
    std::exit(1);
  }
  *address = testing::FieldOf(*line, "grpc");
  return std::move(*controller);
}

std::unique_ptr<testing::SimAgents> ConnectAgents(const std::string& address,
                                                  int agents) {
  testing::SimAgentsOptions o;
  o.address = address;
  o.agents = agents;
  o.batch = absl::GetFlag(FLAGS_batch);
  o.window = absl::GetFlag(FLAGS_window);
  o.channels_per_1000 = absl::GetFlag(FLAGS_channels_per_1000);
  o.rate_per_agent = absl::GetFlag(FLAGS_rate_per_agent);
  o.send_interval = absl::GetFlag(FLAGS_send_interval);
  auto sims = testing::SimAgents::Connect(o, absl::Seconds(120));
  if (!sims.ok()) {
    std::fprintf(stderr, "%s\n", sims.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*sims);
}

RunResult Run(int agents, const std::string& dir,
              const std::string& store_url) {
  RunResult r;
  r.agents = agents;
  std::string address;
  auto controller = StartController(dir, store_url, &address);
  const pid_t pid = controller->pid();
  r.rss_idle_mib = ReadProc(pid).rss_mib;
  auto sims = ConnectAgents(address, agents);
  // Every agent connected and welcomed, nothing sent yet.
  clock_->SleepFor(absl::Milliseconds(500));
  r.rss_connected_mib = ReadProc(pid).rss_mib;
  r.offered = absl::GetFlag(FLAGS_rate_per_agent) * agents;
  sims->Start();
  // Warm up, then measure.
  clock_->SleepFor(absl::Seconds(1));
  sims->TakeAckLatenciesMs();
  const ProcStats before = ReadProc(pid);
  const testing::SimAgentsStats s0 = sims->Stats();
  const double self0 = SelfCpuSeconds();
  const auto jiffies0 = CpuJiffies(absl::GetFlag(FLAGS_load_cpus));
  const absl::Duration t0 = clock_->MonotonicNow();
  std::printf("measuring %d agents for %ds (controller pid %d)\n", agents,
              absl::GetFlag(FLAGS_seconds), static_cast<int>(pid));
  std::fflush(stdout);
  const absl::Duration t_end = t0 + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  while (clock_->MonotonicNow() < t_end) {
    clock_->SleepFor(
        std::min(absl::Milliseconds(250), t_end - clock_->MonotonicNow()));
    r.rss_max_mib = std::max(r.rss_max_mib, ReadProc(pid).rss_mib);
  }
  const double elapsed = absl::ToDoubleSeconds(clock_->MonotonicNow() - t0);
  const testing::SimAgentsStats s1 = sims->Stats();
  const auto jiffies1 = CpuJiffies(absl::GetFlag(FLAGS_load_cpus));
  r.load_cores = (SelfCpuSeconds() - self0) / elapsed;
  if (jiffies1.second > jiffies0.second) {
    r.load_cpu_idle =
        (jiffies1.first - jiffies0.first) / (jiffies1.second - jiffies0.second);
  }
  const ProcStats after = ReadProc(pid);
  r.outcomes_per_second = (s1.acked - s0.acked) / elapsed;
  r.offered_per_second = (s1.produced - s0.produced) / elapsed;
  const std::vector<double> lat = sims->TakeAckLatenciesMs();
  r.p50_ms = Percentile(lat, 0.50);
  r.p99_ms = Percentile(lat, 0.99);
  r.controller_cores = (after.cpu_seconds - before.cpu_seconds) / elapsed;
  r.rss_end_mib = after.rss_mib;
  sims->StopProducing();
  if (!sims->WaitAllAcked(absl::Seconds(120))) {
    std::fprintf(stderr, "not every outcome was acknowledged\n");
  }
  sims.reset();
  controller->Signal(SIGTERM);
  controller->Wait(absl::Seconds(30));
  return r;
}

// --soak: one long run at the offered rate, sampling the controller's RSS
// and open file descriptors; prints every sample and the slopes.
int Soak(int agents, const std::string& dir) {
  std::string address;
  auto controller = StartController(dir, "", &address);
  const pid_t pid = controller->pid();
  auto sims = ConnectAgents(address, agents);
  sims->Start();
  const absl::Duration every = absl::GetFlag(FLAGS_sample_every);
  const absl::Duration length = absl::GetFlag(FLAGS_soak);
  const absl::Duration t0 = clock_->MonotonicNow();
  std::vector<double> minutes, rss_kib, fds;
  uint64_t last_acked = 0;
  std::printf("soak: %d agents, %.0f outcomes/s offered, %s\n", agents,
              absl::GetFlag(FLAGS_rate_per_agent) * agents,
              absl::FormatDuration(length).c_str());
  for (int i = 0;; ++i) {
    const absl::Duration at = t0 + every * i;
    while (clock_->MonotonicNow() < at) {
      clock_->SleepFor(at - clock_->MonotonicNow());
    }
    const ProcStats p = ReadProc(pid);
    const int n_fds = OpenFds(pid);
    const testing::SimAgentsStats s = sims->Stats();
    const double t = absl::ToDoubleMinutes(clock_->MonotonicNow() - t0);
    minutes.push_back(t);
    rss_kib.push_back(p.rss_mib * 1024);
    fds.push_back(n_fds);
    std::printf(
        "t=%6.2f min rss=%.0f KiB fds=%d acked=%llu (%.0f/s) backlog=%llu "
        "streams_ended=%d loadavg=%s\n",
        t, p.rss_mib * 1024, n_fds, static_cast<unsigned long long>(s.acked),
        (s.acked - last_acked) / absl::ToDoubleSeconds(every),
        static_cast<unsigned long long>(s.produced - s.acked), s.streams_ended,
        LoadAvg().c_str());
    std::fflush(stdout);
    last_acked = s.acked;
    if (every * i >= length) break;
  }
  // The first minute is warm-up (allocator arenas, SQLite cache, agents
  // connecting): the slope is taken over the rest.
  std::vector<double> x, y_rss, y_fds;
  for (size_t i = 0; i < minutes.size(); ++i) {
    if (minutes[i] < 1.0) continue;
    x.push_back(minutes[i]);
    y_rss.push_back(rss_kib[i]);
    y_fds.push_back(fds[i]);
  }
  sims->StopProducing();
  const bool all = sims->WaitAllAcked(absl::Seconds(120));
  const testing::SimAgentsStats s = sims->Stats();
  std::printf(
      "soak slope (after the first minute): RSS %+.1f KiB/min, fds %+.3f/min; "
      "RSS first %.0f KiB last %.0f KiB max %.0f KiB; fds first %.0f last "
      "%.0f; acked %llu of %llu produced (%s), streams ended %d\n",
      Slope(x, y_rss), Slope(x, y_fds), y_rss.empty() ? 0 : y_rss.front(),
      y_rss.empty() ? 0 : y_rss.back(),
      *std::max_element(rss_kib.begin(), rss_kib.end()),
      y_fds.empty() ? 0 : y_fds.front(), y_fds.empty() ? 0 : y_fds.back(),
      static_cast<unsigned long long>(s.acked),
      static_cast<unsigned long long>(s.produced), all ? "all" : "NOT all",
      s.streams_ended);
  sims.reset();
  controller->Signal(SIGTERM);
  controller->Wait(absl::Seconds(30));
  return all && s.streams_ended == 0 ? 0 : 1;
}

double OutboxRate(const std::string& path,
                  const std::vector<v1::Outcome>& pool) {
  agent::OutboxOptions o;
  o.path = path;
  auto box = agent::Outbox::Create(o);
  if (!box.ok()) {
    std::fprintf(stderr, "%s\n", box.status().ToString().c_str());
    std::exit(1);
  }
  const int n = absl::GetFlag(FLAGS_outbox_appends);
  const absl::Duration t0 = clock_->MonotonicNow();
  for (int i = 0; i < n; ++i) {
    if (!(*box)->Append(pool[i % pool.size()]).ok()) std::exit(1);
  }
  return n / absl::ToDoubleSeconds(clock_->MonotonicNow() - t0);
}

}  // namespace
}  // namespace fleetcanary

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace fleetcanary;
  std::vector<v1::Outcome> pool;
  for (int i = 0; i < 1000; ++i) pool.push_back(testing::SimOutcome(i));
  std::printf("outcome size: %zu bytes serialized\n",
              pool[1].SerializeAsString().size());
  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/ingest_bench_", getpid());

  if (absl::GetFlag(FLAGS_soak) > absl::ZeroDuration()) {
    const std::vector<std::string> counts =
        absl::StrSplit(absl::GetFlag(FLAGS_agents), ',');
    int agents = 0;
    if (counts.empty() || !absl::SimpleAtoi(counts[0], &agents) ||
        agents <= 0) {
      std::fprintf(stderr, "--agents: a positive count first\n");
      return 1;
    }
    const int rc = Soak(agents, dir + "/controller");
    std::filesystem::remove_all(dir);
    return rc;
  }

  // Agent side: outbox append rate, durable file vs in-memory SQLite.
  std::filesystem::create_directories(dir);
  const double file_rate = OutboxRate(dir + "/outbox.db", pool);
  const double memory_rate = OutboxRate(":memory:", pool);
  std::printf(
      "outbox append: %.0f/s (file, WAL, synchronous=NORMAL), reference "
      "%.0f/s (in-memory SQLite), ratio %.2f\n",
      file_rate, memory_rate, file_rate / memory_rate);

  std::vector<RunResult> results;
  std::unique_ptr<testing::PostgresServer> postgres;
  int database = 0;
  for (absl::string_view store :
       absl::StrSplit(absl::GetFlag(FLAGS_stores), ',', absl::SkipEmpty())) {
    for (absl::string_view s :
         absl::StrSplit(absl::GetFlag(FLAGS_agents), ',')) {
      int agents = 0;
      if (!absl::SimpleAtoi(s, &agents) || agents <= 0) continue;
      std::string url;
      if (store == "postgresql") {
        if (!postgres) {
          auto started = testing::PostgresServer::Start();
          if (!started.ok()) {
            std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
            return 1;
          }
          postgres = std::move(*started);
        }
        auto created =
            postgres->CreateDatabase(absl::StrCat("bench_", ++database));
        if (!created.ok()) {
          std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
          return 1;
        }
        url = *created;
      } else if (store != "sqlite") {
        std::fprintf(stderr, "--stores: unknown store %s\n",
                     std::string(store).c_str());
        return 1;
      }
      results.push_back(Run(agents, dir + "/controller", url));
      const RunResult& r = results.back();
      std::printf(
          "store=%s agents=%d batch=%d window=%d offered=%s: %.0f outcomes/s "
          "acked (offered %.0f/s), ack p50 %.1f ms p99 %.1f ms, controller "
          "%.2f cores, load generator %.2f cores (its CPUs idle %.0f%%), RSS "
          "idle %.1f MiB, connected %.1f MiB (+%.1f MiB per 1000 agents), "
          "max %.1f MiB, end %.1f MiB, ratio to first run %.2f, loadavg %s\n",
          std::string(store).c_str(), r.agents, absl::GetFlag(FLAGS_batch),
          absl::GetFlag(FLAGS_window),
          r.offered > 0 ? absl::StrCat(r.offered, "/s").c_str() : "max",
          r.outcomes_per_second, r.offered_per_second, r.p50_ms, r.p99_ms,
          r.controller_cores, r.load_cores, r.load_cpu_idle * 100,
          r.rss_idle_mib, r.rss_connected_mib,
          (r.rss_connected_mib - r.rss_idle_mib) * 1000.0 / r.agents,
          r.rss_max_mib, r.rss_end_mib,
          r.outcomes_per_second / results[0].outcomes_per_second,
          LoadAvg().c_str());
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
