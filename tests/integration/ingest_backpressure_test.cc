// Controller memory under saturation: a real fleetcanary-controller (SQLite)
// offered twice what it commits, by 1,000 simulated agents, for 60 s.
//
// The controller bounds what it holds (ingest's pending outcomes, then flow
// control: it stops reading saturated streams, so HTTP/2 keeps further
// batches in the agents' outboxes; gRPC's memory quota bounds the
// transport's buffers). The test asserts what that guarantees, independent
// of the machine's speed:
//   - the offer did exceed what was committed (the premise), by an outbox
//     backlog at the end of the 60 s;
//   - pending outcomes stay within flow control's bound, and the
//     controller's RSS high-water mark below the bound its memory settings
//     imply, and the second half of the run peaks no higher than the first
//     half plus a margin (memory is flat, not slowly climbing);
//   - nothing is lost: once the agents stop producing, every produced
//     outcome is acknowledged, the controller counts exactly as many applied
//     outcomes, no gap and no duplicate, and no stream was ended.
// Capacity is measured first in the same run (200 agents sending as fast as
// their windows allow); "twice capacity" is that rate times two.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/integration/sim_agents.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::MetricValue;
using testing::Process;
using testing::SimAgents;
using testing::SimAgentsOptions;
using testing::SimAgentsStats;

constexpr int kAgents = 1000;
constexpr int kBatch = 200;
constexpr absl::Duration kSaturation = absl::Seconds(60);
// The controller's memory settings for this run (flags).
constexpr int64_t kPendingLimit = 100000;
constexpr int64_t kGrpcMemoryMib = 512;
// Flow control's bound on pending outcomes: the limit, plus the one batch
// each stream had already been asked for when ingest saturated.
constexpr int64_t kPendingBound = kPendingLimit + int64_t{kAgents} * kBatch;
// Memory per pending (parsed) outcome, the allocator's slack included.
constexpr double kBytesPerPendingOutcome = 2560;
// Everything else: code, SQLite's cache, 1,000 sessions (~25 MiB), threads.
constexpr double kBaseMib = 256;
// RSS may not exceed what the configuration bounds, whatever the machine's
// speed: the gRPC transport's quota, the pending outcomes and the rest.
constexpr double kRssBoundMib =
    kBaseMib + kGrpcMemoryMib +
    kPendingBound * kBytesPerPendingOutcome / (1 << 20);
// How much higher the second half of the run may peak than the first.
constexpr double kGrowthMarginMib = 64;

double RssMib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      double kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits += c;
      }
      absl::SimpleAtod(digits, &kb);
      return kb / 1024;
    }
  }
  return 0;
}

class IngestBackpressureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        absl::StrCat(::testing::TempDir(), "/ingest_backpressure_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/fleet.yaml") << testing::SimFleetYaml();
    auto p = Process::Spawn(
        BinaryPath("controller/server/fleetcanary-controller"),
        {"--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
         "--data_dir=" + dir_ + "/controller",
         "--fleet=" + dir_ + "/fleet.yaml", "--target_allow_loopback",
         "--heartbeat_interval=60s", "--insecure",
         absl::StrCat("--grpc_memory_mib=", kGrpcMemoryMib),
         absl::StrCat("--ingest_max_pending_outcomes=", kPendingLimit)},
        dir_ + "/controller.log");
    ASSERT_TRUE(p.ok()) << p.status();
    controller_ = std::move(*p);
    auto line = controller_->WaitForLine("listening ", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    grpc_ = FieldOf(*line, "grpc");
    http_ = FieldOf(*line, "http");
  }

  void TearDown() override {
    if (controller_ != nullptr) {
      controller_->Signal(SIGTERM);
      controller_->Wait(absl::Seconds(120));
    }
  }

  double Metric(const std::string& body, const std::string& name) {
    return MetricValue(body, "fleetcanary_" + name).value_or(-1);
  }

  std::string dir_, grpc_, http_;
  std::unique_ptr<Process> controller_;
};

TEST_F(IngestBackpressureTest, RssStaysBoundedAtTwiceCapacityAndNothingIsLost) {
  Clock* clock = Clock::Real();
  // Capacity: what the controller commits and acknowledges from agents that
  // send as fast as their windows allow.
  double capacity = 0;
  uint64_t calibration_acked = 0;
  {
    SimAgentsOptions o;
    o.address = grpc_;
    o.agents = 200;
    o.batch = kBatch;
    o.id_prefix = "calibrate-";
    auto cal = SimAgents::Connect(o, absl::Seconds(300));
    ASSERT_TRUE(cal.ok()) << cal.status();
    (*cal)->Start();
    clock->SleepFor(absl::Seconds(1));
    const uint64_t a0 = (*cal)->Stats().acked;
    const absl::Duration t0 = clock->MonotonicNow();
    clock->SleepFor(absl::Seconds(5));
    capacity = ((*cal)->Stats().acked - a0) /
               absl::ToDoubleSeconds(clock->MonotonicNow() - t0);
    (*cal)->StopProducing();
    ASSERT_TRUE((*cal)->WaitAllAcked(absl::Seconds(300)));
    calibration_acked = (*cal)->Stats().acked;
  }
  ASSERT_GT(capacity, 0);

  SimAgentsOptions o;
  o.address = grpc_;
  o.agents = kAgents;
  o.batch = kBatch;
  o.rate_per_agent = 2 * capacity / kAgents;
  auto sims = SimAgents::Connect(o, absl::Seconds(300));
  ASSERT_TRUE(sims.ok()) << sims.status();
  const pid_t pid = controller_->pid();
  (*sims)->Start();
  // The run lasts 60 s of real time by definition; RSS is sampled meanwhile.
  double first_half_max = 0, second_half_max = 0, pending_max = 0;
  bool saturated_seen = false;
  const absl::Duration start = clock->MonotonicNow();
  for (absl::Duration now = start; now - start < kSaturation;
       now = clock->MonotonicNow()) {
    const double rss = RssMib(pid);
    double& half =
        now - start < kSaturation / 2 ? first_half_max : second_half_max;
    half = std::max(half, rss);
    const std::string metrics = HttpGet(http_, "/metrics");
    pending_max =
        std::max(pending_max, Metric(metrics, "ingest_pending_outcomes"));
    saturated_seen = saturated_seen || Metric(metrics, "ingest_saturated") == 1;
    clock->SleepFor(absl::Milliseconds(200));
  }

  const SimAgentsStats saturated = (*sims)->Stats();
  (*sims)->StopProducing();
  std::printf(
      "capacity %.0f outcomes/s, offered %.0f/s for %s: acked %llu of %llu "
      "produced; controller RSS max %.1f MiB (first half) %.1f MiB (second "
      "half), bound %.0f MiB; pending outcomes max %.0f, bound %lld\n",
      capacity, 2 * capacity, absl::FormatDuration(kSaturation).c_str(),
      static_cast<unsigned long long>(saturated.acked),
      static_cast<unsigned long long>(saturated.produced), first_half_max,
      second_half_max, kRssBoundMib, pending_max,
      static_cast<long long>(kPendingBound));

  // The premise: more was offered than committed (an outbox backlog), and
  // the controller said so (fleetcanary_ingest_saturated, its alert's input).
  EXPECT_GT(saturated.produced, saturated.acked);
  EXPECT_TRUE(saturated_seen);
  EXPECT_LE(pending_max, kPendingBound);
  EXPECT_LT(std::max(first_half_max, second_half_max), kRssBoundMib);
  EXPECT_LE(second_half_max, first_half_max + kGrowthMarginMib);

  // Nothing lost: the backlog drains, every outcome applied exactly once.
  ASSERT_TRUE((*sims)->WaitAllAcked(absl::Seconds(900)))
      << (*sims)->Stats().streams_ended << " streams ended";
  const SimAgentsStats end = (*sims)->Stats();
  EXPECT_EQ(end.acked, end.produced);
  EXPECT_EQ(end.streams_ended, 0);
  const std::string body = HttpGet(http_, "/metrics");
  // Committed == acknowledged (the calibration agents' included).
  EXPECT_EQ(Metric(body, "ingest_outcomes_total"),
            static_cast<double>(calibration_acked + end.acked));
  EXPECT_EQ(Metric(body, "ingest_gaps_total") <= 0, true)
      << Metric(body, "ingest_gaps_total");
  EXPECT_EQ(Metric(body, "ingest_duplicates_total") <= 0, true)
      << Metric(body, "ingest_duplicates_total");
  EXPECT_EQ(Metric(body, "outcomes_rejected_total") <= 0, true)
      << Metric(body, "outcomes_rejected_total");
  EXPECT_GE(Metric(body, "ingest_saturations_total"), 1);
  EXPECT_EQ(Metric(body, "ingest_saturated"), 0);
}

}  // namespace
}  // namespace fleetcanary
