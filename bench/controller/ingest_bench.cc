// Controller ingest throughput, from many simulated agents.
//
// Spawns the real fleetcanary-controller (its own process, SQLite in a temp
// dir) and drives it with N simulated agents: gRPC callback streams in this
// process speaking AgentSession (Hello → Welcome, then OutcomeBatches of B
// realistic outcomes with W batches awaiting their Ack). Reports outcomes/s
// committed *and acknowledged*, the Ack latency p50/p99 (batch sent → Ack
// received), the controller's CPU (utime+stime from /proc) and RSS, and the
// RSS added per 1,000 connected agents. The first run (1 agent) is the
// reference; the others are printed as ratios to it.
//
// Also measures the agent outbox append rate (durable SQLite file vs the same
// code on an in-memory SQLite database as the reference).
//
// --stores=sqlite,postgresql runs every agent count against each store in the
// same run: the controller's SQLite file, and a PostgreSQL server this
// program starts itself (initdb in a temp dir, loopback port; a fresh
// database per run), so their throughput and Ack latency compare directly.
//
// Usage: ingest_bench [--agents=1,100,1000] [--seconds=5] [--batch=200]
//                     [--window=4] [--channels_per_1000=20]
//                     [--stores=sqlite,postgresql]
#include <grpcpp/grpcpp.h>
#include <signal.h>
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

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::Process;

Clock* clock_ = Clock::Real();

v1::Outcome SampleOutcome(int i) {
  v1::Outcome o;
  o.set_agent_id("bench");
  o.set_region("us-east-1");
  o.set_target("canary");
  o.set_mode(i % 2 ? v1::BUFFERED : v1::RESPONSE_STREAM);
  o.set_requested_bytes(uint64_t{2} << (2 * (i % 6)));
  o.set_probe_id(absl::StrCat("0123456789abcdef", i));
  o.set_schedule_id("ladder");
  o.mutable_start_time()->set_seconds(1700000000 + i / 100);
  auto* t = o.mutable_timings();
  t->mutable_connect()->set_nanos(300000);
  t->mutable_headers_received()->set_nanos(20000000 + i % 1000 * 10000);
  t->mutable_total()->set_nanos(120000000);
  o.set_http_version("1.1");
  o.set_status(i % 97 ? 200 : 502);
  o.set_platform_request_id("c0ffee00-1111-2222-3333-444455556666");
  o.set_expected_bytes(o.requested_bytes());
  o.set_received_bytes(o.requested_bytes());
  o.set_chunk_count(1);
  o.set_first_bad_offset(-1);
  o.set_transfer_end(v1::COMPLETE);
  o.set_outcome_class(i % 97 ? v1::OK : v1::HTTP_5XX);
  o.set_seed(i);
  return o;
}

struct Shared {
  absl::Mutex mu;
  std::vector<double> ack_latency_ms ABSL_GUARDED_BY(mu);
  std::atomic<uint64_t> acked{0};
  std::atomic<int> welcomed{0};
  std::atomic<int> done{0};
  std::atomic<bool> measuring{false};
  std::atomic<bool> go{false};
  double rate_per_agent = 0;
  absl::Duration start;
  std::atomic<bool> stop{false};
};

// One simulated agent: one Connect stream.
class SimAgent
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  SimAgent(v1::AgentSession::Stub* stub, std::string id, int batch, int window,
           const std::vector<v1::Outcome>* pool, Shared* shared)
      : id_(std::move(id)),
        batch_(batch),
        window_(window),
        pool_(pool),
        shared_(shared) {
    stub->async()->Connect(&context_, this);
    StartRead(&in_);
    StartCall();
    v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_id(id_);
    hello.mutable_hello()->set_region("us-east-1");
    Write(std::move(hello));
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_welcome()) {
      {
        absl::MutexLock lock(&mu_);
        next_seq_ = in_.welcome().applied_sequence() + 1;
      }
      shared_->welcomed++;
      SendMore();
    } else if (in_.has_ack()) {
      const uint64_t seq = in_.ack().applied_sequence();
      const absl::Duration now = clock_->MonotonicNow();
      std::vector<double> lat;
      uint64_t n = 0;
      {
        absl::MutexLock lock(&mu_);
        while (!inflight_.empty() && inflight_.front().first <= seq) {
          lat.push_back(
              absl::ToDoubleMilliseconds(now - inflight_.front().second));
          inflight_.pop_front();
          n += batch_;
        }
      }
      if (shared_->measuring) {
        shared_->acked += n;
        absl::MutexLock lock(&shared_->mu);
        shared_->ack_latency_ms.insert(shared_->ack_latency_ms.end(),
                                       lat.begin(), lat.end());
      }
      SendMore();
    }
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      out_.pop_front();
      if (ok && !out_.empty()) {
        next = &out_.front();
      } else {
        writing_ = false;
        if (!ok) out_.clear();
      }
    }
    if (next) StartWrite(next);
  }

  void OnDone(const grpc::Status&) override { shared_->done++; }

  void Cancel() { context_.TryCancel(); }

  // Sends batches while the window and the offered rate allow.
  void SendMore() {
    for (;;) {
      v1::AgentMessage m;
      {
        absl::MutexLock lock(&mu_);
        if (!shared_->go || shared_->stop ||
            static_cast<int>(inflight_.size()) >= window_) {
          return;
        }
        if (shared_->rate_per_agent > 0) {
          const double allowed =
              shared_->rate_per_agent *
              absl::ToDoubleSeconds(clock_->MonotonicNow() - shared_->start);
          if (static_cast<double>(sent_ + batch_) > allowed) return;
        }
        sent_ += batch_;
        v1::OutcomeBatch* b = m.mutable_outcomes();
        b->set_first_sequence(next_seq_);
        for (int i = 0; i < batch_; ++i) {
          v1::Outcome* o = b->add_outcomes();
          *o = (*pool_)[(next_seq_ + i) % pool_->size()];
          o->set_sequence(next_seq_ + i);
        }
        next_seq_ += batch_;
        inflight_.push_back({next_seq_ - 1, clock_->MonotonicNow()});
      }
      Write(std::move(m));
    }
  }

  void Write(v1::AgentMessage m) {
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      out_.push_back(std::move(m));
      if (!writing_) {
        writing_ = true;
        next = &out_.front();
      }
    }
    if (next) StartWrite(next);
  }

  const std::string id_;
  const int batch_;
  const int window_;
  const std::vector<v1::Outcome>* const pool_;
  Shared* const shared_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  absl::Mutex mu_;
  std::deque<v1::AgentMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<uint64_t, absl::Duration>> inflight_
      ABSL_GUARDED_BY(mu_);
};

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

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

struct RunResult {
  int agents = 0;
  double outcomes_per_second = 0;
  double p50_ms = 0, p99_ms = 0;
  double controller_cores = 0;
  double rss_idle_mib = 0, rss_connected_mib = 0, rss_end_mib = 0;
  double offered = 0;
};

// `store_url` "" = the controller's SQLite file in `dir`.
RunResult Run(int agents, const std::string& dir, const std::string& store_url,
              const std::vector<v1::Outcome>& pool) {
  RunResult r;
  r.agents = agents;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<std::string> args = {
      "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
      "--data_dir=" + dir, "--heartbeat_interval=60s", "--insecure"};
  if (!store_url.empty()) {
    args.push_back("--store=" + store_url);
    args.push_back("--leader_lease=300s");
  }
  auto controller =
      Process::Spawn(BinaryPath("controller/server/fleetcanary-controller"),
                     args, dir + "/controller.log");
  if (!controller.ok()) {
    std::fprintf(stderr, "%s\n", controller.status().ToString().c_str());
    std::exit(1);
  }
  auto line = (*controller)->WaitForLine("listening ", absl::Seconds(30));
  if (!line.ok()) {
    std::fprintf(stderr, "%s\n", line.status().ToString().c_str());
    std::exit(1);
  }
  const std::string address = testing::FieldOf(*line, "grpc");
  const pid_t pid = (*controller)->pid();
  r.rss_idle_mib = ReadProc(pid).rss_mib;

  const int channels =
      std::max(1, agents * absl::GetFlag(FLAGS_channels_per_1000) / 1000);
  std::vector<std::unique_ptr<v1::AgentSession::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("bench.channel", c);  // Distinct channels, not shared.
    stubs.push_back(v1::AgentSession::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  Shared shared;
  std::vector<std::unique_ptr<SimAgent>> sims;
  for (int i = 0; i < agents; ++i) {
    sims.push_back(std::make_unique<SimAgent>(
        stubs[i % channels].get(), absl::StrCat("sim-", i),
        absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_window), &pool,
        &shared));
  }
  testing::WaitUntil([&] { return shared.welcomed.load() == agents; },
                     absl::Seconds(60));
  // Every agent connected and welcomed, nothing sent yet.
  clock_->SleepFor(absl::Milliseconds(500));
  r.rss_connected_mib = ReadProc(pid).rss_mib;
  shared.rate_per_agent = absl::GetFlag(FLAGS_rate_per_agent);
  r.offered = shared.rate_per_agent * agents;
  shared.start = clock_->MonotonicNow();
  shared.go = true;
  std::atomic<bool> pacing{true};
  std::thread pacer([&] {
    while (pacing) {
      for (auto& s : sims) s->SendMore();
      clock_->SleepFor(
          absl::Milliseconds(shared.rate_per_agent > 0 ? 10 : 200));
    }
  });
  // Warm up, then measure.
  clock_->SleepFor(absl::Seconds(1));
  const ProcStats before = ReadProc(pid);
  const absl::Duration t0 = clock_->MonotonicNow();
  shared.measuring = true;
  clock_->SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  shared.measuring = false;
  const double elapsed = absl::ToDoubleSeconds(clock_->MonotonicNow() - t0);
  const ProcStats after = ReadProc(pid);
  shared.stop = true;
  r.outcomes_per_second = shared.acked.load() / elapsed;
  {
    absl::MutexLock lock(&shared.mu);
    r.p50_ms = Percentile(shared.ack_latency_ms, 0.50);
    r.p99_ms = Percentile(shared.ack_latency_ms, 0.99);
  }
  r.controller_cores = (after.cpu_seconds - before.cpu_seconds) / elapsed;
  r.rss_end_mib = after.rss_mib;
  pacing = false;
  pacer.join();
  clock_->SleepFor(absl::Seconds(1));  // In-flight batches finish.
  for (auto& s : sims) s->Cancel();
  testing::WaitUntil([&] { return shared.done.load() == agents; },
                     absl::Seconds(30));
  (*controller)->Signal(SIGTERM);
  (*controller)->Wait(absl::Seconds(30));
  return r;
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
  for (int i = 0; i < 1000; ++i) pool.push_back(SampleOutcome(i));
  std::printf("outcome size: %zu bytes serialized\n",
              pool[1].SerializeAsString().size());
  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/ingest_bench_", getpid());

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
      results.push_back(Run(agents, dir + "/controller", url, pool));
      const RunResult& r = results.back();
      std::printf(
          "store=%s agents=%d batch=%d window=%d offered=%s: %.0f outcomes/s "
          "acked, "
          "ack p50 %.1f ms p99 %.1f ms, controller %.2f cores, RSS idle %.1f "
          "MiB, connected %.1f MiB (+%.1f MiB per 1000 agents), end %.1f MiB, "
          "ratio to first run %.2f\n",
          std::string(store).c_str(), r.agents, absl::GetFlag(FLAGS_batch),
          absl::GetFlag(FLAGS_window),
          r.offered > 0 ? absl::StrCat(r.offered, "/s").c_str() : "max",
          r.outcomes_per_second, r.p50_ms, r.p99_ms, r.controller_cores,
          r.rss_idle_mib, r.rss_connected_mib,
          (r.rss_connected_mib - r.rss_idle_mib) * 1000.0 / r.agents,
          r.rss_end_mib,
          r.outcomes_per_second / results[0].outcomes_per_second);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
