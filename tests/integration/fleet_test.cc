// The fleet end to end, with real processes: fleetcanary-controller and
// fleetcanary-agent binaries, the function-url-emulator serving the canary
// in several regions (in this process, on loopback), SQLite files.
//
// Exactly-once tests compare, outcome class by outcome class and stream by
// stream, what the agents produced (their --outcome_journal) with what the
// controller stored (its SQLite stream totals): (1) kill -9 of the
// controller, (2) kill -9 of an agent, (3) the controller unreachable
// (SIGSTOP) for a while, (4) an agent's outbox overflowing its bound — there
// exactly the counted drops are missing.
//
// Replica tests share one real PostgreSQL database. One of them gives the
// agent its own /etc/hosts (a mount namespace made with util-linux
// `unshare --mount`, as root) so that one name resolves to two replicas;
// the machine's /etc/hosts is never touched.
#include <signal.h>
#include <sys/mount.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/time/clock.h"
#include "controller/store/store.h"
#include "emulator/emulator.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/testing/ports.h"
#include "tests/testing/postgres_server.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::MetricValue;
using testing::Process;
using testing::ReadFile;
using testing::UnusedLoopbackPort;
using testing::WaitUntil;

// (region, mode, size, outcome class) -> count.
using Counts =
    std::map<std::tuple<std::string, std::string, uint64_t, std::string>,
             uint64_t>;

const std::vector<uint64_t> kSizes = {2, 64, 1024, 4096};

struct Agent {
  std::string id;
  std::string region;
  std::string dir;
  std::string journal;
  std::string http;  // /metrics address.
  std::unique_ptr<Process> process;
};

std::string Counted(const Counts& c) {
  std::vector<std::string> parts;
  for (const auto& [k, n] : c) {
    parts.push_back(absl::StrCat(std::get<0>(k), "/", std::get<1>(k), "/",
                                 std::get<2>(k), "/", std::get<3>(k), "=", n));
  }
  return absl::StrJoin(parts, " ");
}

class FleetTest : public testing::ScratchDirTest {
 protected:
  FleetTest() : ScratchDirTest("fleet", /*per_test=*/true) {}
  void TearDown() override {
    for (Agent& a : agents_) a.process.reset();
    controller_.reset();
    standby_.reset();
    postgres_.reset();
    if (emulator_) emulator_->Stop();
    ScratchDirTest::TearDown();
  }

  // Emulator regions with some injected faults, so several outcome classes
  // appear; and a fleet file probing every size in both modes.
  void StartEmulator(const std::vector<std::string>& regions, double rate,
                     absl::Duration heartbeat,
                     absl::Duration first_byte_delay = absl::ZeroDuration()) {
    emulator::EmulatorOptions options;
    for (const std::string& r : regions)
      options.config.add_regions()->set_name(r);
    v1::Scenario* s = options.config.mutable_scenario();
    s->set_seed(7);
    v1::FaultRule* f = s->add_faults();
    f->set_name("stream-502");
    f->add_modes(v1::RESPONSE_STREAM);
    f->mutable_probability()->set_base(0.08);
    f->set_effect(v1::FAULT_EFFECT_HTTP_STATUS);
    f->set_status(502);
    f = s->add_faults();
    f->set_name("truncate-big");
    f->set_min_bytes(1024);
    f->mutable_probability()->set_base(0.08);
    f->set_effect(v1::FAULT_EFFECT_TRUNCATE);
    f->set_after_bytes(100);
    if (first_byte_delay > absl::ZeroDuration()) {
      // Every probe is in flight this long: a kill finds some mid-probe.
      f = s->add_faults();
      f->set_name("slow");
      f->mutable_probability()->set_base(1);
      f->set_effect(v1::FAULT_EFFECT_DELAY_FIRST_BYTE);
      f->mutable_duration()->set_seconds(
          absl::ToInt64Seconds(first_byte_delay));
    }
    auto emu = emulator::Emulator::Create(options, Clock::Real());
    ASSERT_TRUE(emu.ok()) << emu.status();
    emulator_ = std::move(*emu);

    std::string yaml = "targets:\n- name: canary\n  regions:\n";
    for (const std::string& r : regions) {
      absl::StrAppend(&yaml, "  - region: ", r, "\n    urls:\n");
      for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
        absl::StrAppend(&yaml, "    - mode: ", v1::InvokeMode_Name(mode),
                        "\n      url: ", emulator_->url(r, mode), "\n");
      }
    }
    absl::StrAppend(&yaml, "schedules:\n- id: ladder\n  target: canary\n",
                    "  sizes: [", absl::StrJoin(kSizes, ", "), "]\n",
                    "  rate_per_second: ", rate, "\n",
                    "  limits: {timeout: 5s, stall_limit: 2s}\n");
    fleet_file_ = dir_ + "/fleet.yaml";
    std::ofstream(fleet_file_) << yaml;
    heartbeat_ = heartbeat;
  }

  // Spawns a controller (with --store=store_url_ when set); does not wait.
  std::unique_ptr<Process> SpawnController(
      int port, const std::vector<std::string>& extra = {},
      const std::string& log = "controller") {
    std::vector<std::string> args = {
        absl::StrCat("--grpc_listen=", controller_ip_, ":", port),
        "--http_listen=127.0.0.1:0", "--data_dir=" + dir_ + "/controller",
        "--fleet=" + fleet_file_, "--insecure",
        // The emulator's targets are on loopback: allowed deliberately.
        "--target_allow_loopback",
        "--heartbeat_interval=" + absl::FormatDuration(heartbeat_)};
    if (!store_url_.empty()) args.push_back("--store=" + store_url_);
    for (const std::string& e : extra) args.push_back(e);
    auto p =
        Process::Spawn(BinaryPath("controller/server/fleetcanary-controller"),
                       args, dir_ + "/" + log + ".log");
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  void StartController(int port = 0,
                       const std::vector<std::string>& extra = {}) {
    controller_ = SpawnController(port, extra);
    ASSERT_NE(controller_, nullptr);
    auto line = controller_->WaitForLine("listening ", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    grpc_address_ = FieldOf(*line, "grpc");
    controller_http_ = FieldOf(*line, "http");
  }

  // A fresh PostgreSQL server with an empty `database` as the controllers'
  // --store.
  void UsePostgres(const std::string& database) {
    auto pg = testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    postgres_ = std::move(*pg);
    auto url = postgres_->CreateDatabase(database);
    ASSERT_TRUE(url.ok()) << url.status();
    store_url_ = *url;
  }

  // On a fresh PostgreSQL `database`: the emulator, a leader (replica a,
  // controller_) and a standby (replica b, standby_ on *port_b), both with a
  // 3 s lease; agents started from now on are given both addresses.
  void StartLeaderAndStandby(const std::string& database, int* port_b) {
    ASSERT_NO_FATAL_FAILURE(UsePostgres(database));
    StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
    const int port_a = UnusedLoopbackPort();
    StartController(port_a, {"--leader_lease=3s", "--replica_id=a"});
    *port_b = UnusedLoopbackPort();
    standby_ = SpawnController(*port_b, {"--leader_lease=3s", "--replica_id=b"},
                               "standby");
    ASSERT_NE(standby_, nullptr);
    controller_target_ =
        absl::StrCat("127.0.0.1:", port_a, ",127.0.0.1:", *port_b);
  }

  // What the agents produced (their journals, less what their outboxes
  // dropped), summed over the agents.
  Counts Produced() {
    Counts produced;
    for (const Agent& a : agents_) {
      for (const auto& [k, n] : FromJournal(a)) produced[k] += n;
    }
    return produced;
  }

  // The store holds exactly what the agents produced; with
  // `several_streams` that is more than 8 (stream, class) entries, and with
  // `no_gaps` the controller counted no sequence gap.
  void ExpectStoredEqualsProduced(bool several_streams, bool no_gaps) {
    const Counts produced = Produced();
    std::map<std::string, double> counters;
    const Counts stored = FromStore(nullptr, &counters);
    EXPECT_EQ(stored, produced) << "stored:   " << Counted(stored)
                                << "\nproduced: " << Counted(produced);
    if (several_streams) {
      EXPECT_GT(produced.size(), 8u);  // Several classes, modes and sizes.
    }
    if (no_gaps) {
      EXPECT_EQ(counters["ingest_gaps_total"], 0);
    }
  }

  // Spawns a standby replica ("b", standby_) on `port` with a `lease`
  // leader lease, its HTTP on a port of its own, whose address goes to
  // *http. Does not wait.
  void SpawnStandby(int port, const std::string& lease, std::string* http) {
    *http = absl::StrCat("127.0.0.1:", UnusedLoopbackPort());
    standby_ = SpawnController(
        port,
        {"--leader_lease=" + lease, "--replica_id=b", "--http_listen=" + *http},
        "standby");
    ASSERT_NE(standby_, nullptr);
  }

  // Whether the standby's /readyz at `http` says it is a standby and names
  // `leader`, within `timeout`.
  static bool StandbyNamesLeader(const std::string& http,
                                 const std::string& leader,
                                 absl::Duration timeout) {
    return WaitUntil(
        [&] {
          return HttpGet(http, "/readyz") ==
                 absl::StrCat("standby; leader=", leader, "\n");
        },
        timeout);
  }

  // Exactly one stored outcome per request the emulator served (no agent
  // was killed mid-probe). Returns the number stored.
  uint64_t ExpectStoredEqualsServed() {
    uint64_t stored = 0;
    for (const auto& [k, n] : FromStore()) stored += n;
    EXPECT_EQ(static_cast<double>(stored), EmulatorRequests())
        << "stored outcomes vs requests the emulator served";
    return stored;
  }

  // kill -9 of the leader (controller_), then waits until the standby
  // (standby_) leads: it becomes controller_, with its addresses.
  void KillLeaderUntilStandbyLeads() {
    controller_->Signal(SIGKILL);
    ASSERT_TRUE(controller_->Wait(absl::Seconds(10)).has_value());
    StandbyLeads();
  }

  // Waits until the standby (standby_) leads: it becomes controller_, with
  // its addresses.
  void StandbyLeads() {
    // The standby prints its listening line once it leads.
    auto line = standby_->WaitForLine("listening ", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    controller_ = std::move(standby_);
    grpc_address_ = FieldOf(*line, "grpc");
    controller_http_ = FieldOf(*line, "http");
  }

  int ControllerPort() const {
    int port = 0;
    absl::SimpleAtoi(grpc_address_.substr(grpc_address_.rfind(':') + 1), &port);
    return port;
  }

  Agent& AddAgent(const std::string& id, const std::string& region,
                  std::vector<std::string> extra = {}) {
    Agent a;
    a.id = id;
    a.region = region;
    a.dir = dir_ + "/" + id;
    a.journal = dir_ + "/" + id + ".journal";
    agents_.push_back(std::move(a));
    agent_extra_[id] = std::move(extra);
    StartAgent(agents_.back());
    return agents_.back();
  }

  void StartAgent(Agent& a) {
    std::vector<std::string> args = {
        "--agent_id=" + a.id,
        "--region=" + a.region,
        "--controller=" + controller_target_,
        "--data_dir=" + a.dir,
        "--outcome_journal=" + a.journal,
        "--http_listen=127.0.0.1:0",
        "--heartbeat_interval=" + absl::FormatDuration(heartbeat_),
        "--reconnect_min=50ms",
        "--reconnect_max=300ms",
        "--drain_timeout=30s",
        "--insecure",
        "--target_allow_loopback"};
    for (const std::string& e : agent_extra_[a.id]) args.push_back(e);
    std::string binary = BinaryPath("agent/fleetcanary-agent");
    if (!agent_wrapper_.empty()) {
      args.insert(args.begin(), binary);
      args.insert(args.begin(), agent_wrapper_.begin() + 1,
                  agent_wrapper_.end());
      binary = agent_wrapper_.front();
    }
    auto p = Process::Spawn(binary, args, dir_ + "/" + a.id + ".log");
    ASSERT_TRUE(p.ok()) << p.status();
    a.process = std::move(*p);
    auto line = a.process->WaitForLine("listening ", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    a.http = FieldOf(*line, "http");
  }

  // Agents started from now on run in their own mount namespace where
  // `hosts` (lines of /etc/hosts) is /etc/hosts and /etc/host.conf says
  // "multi on" (every address of a name, not the first); the machine's files
  // are untouched. Fails the test, naming what is missing, when that cannot
  // be set up (util-linux unshare, mount namespaces as root) or when `name`
  // does not resolve there to `expected` (IPv4 addresses, in that order).
  void AgentsResolveWith(const std::string& hosts, const std::string& name,
                         const std::vector<std::string>& expected) {
    const std::string hosts_file = dir_ + "/hosts";
    const std::string host_conf = dir_ + "/host.conf";
    std::ofstream(hosts_file) << hosts;
    std::ofstream(host_conf) << "multi on\n";
    // Each exec keeps the pid: signals reach the agent itself.
    agent_wrapper_ = {
        "/bin/sh", "-c",
        "exec unshare --mount -- /bin/sh -c 'mount --bind \"$0\" /etc/hosts "
        "&& mount --bind \"$1\" /etc/host.conf && shift && exec \"$@\"' "
        "\"$0\" \"$@\"",
        hosts_file, host_conf};
    const std::string log = dir_ + "/resolve.log";
    // getent ahostsv4 goes through getaddrinfo, like the agent.
    std::vector<std::string> args(agent_wrapper_.begin() + 1,
                                  agent_wrapper_.end());
    args.insert(args.end(), {"getent", "ahostsv4", name});
    auto p = Process::Spawn(agent_wrapper_.front(), args, log);
    ASSERT_TRUE(p.ok()) << p.status();
    std::vector<std::string> got;
    while (true) {
      absl::StatusOr<std::string> line =
          (*p)->WaitForLine("", absl::Seconds(60));
      if (!line.ok()) break;
      std::vector<std::string> f =
          absl::StrSplit(*line, ' ', absl::SkipWhitespace());
      if (f.size() >= 2 && f[1] == "STREAM") got.push_back(f[0]);
    }
    EXPECT_EQ((*p)->Wait(absl::Seconds(60)), 0)
        << "cannot give the agent its own /etc/hosts: needs util-linux "
           "`unshare --mount` and bind mounts (root, mount namespaces); "
        << log << ": " << ReadFile(log);
    ASSERT_EQ(got, expected)
        << name << " in a mount namespace with " << hosts_file
        << " over /etc/hosts; " << log << ": " << ReadFile(log);
  }

  static size_t Lines(const std::string& path) {
    std::ifstream in(path);
    size_t n = 0;
    std::string line;
    while (std::getline(in, line)) ++n;
    return n;
  }
  size_t AllLines() {
    size_t n = 0;
    for (const Agent& a : agents_) n += Lines(a.journal);
    return n;
  }
  // Waits until the agents produced `more` outcomes beyond now.
  void WaitForMore(size_t more) {
    const size_t target = AllLines() + more;
    ASSERT_TRUE(
        WaitUntil([&] { return AllLines() >= target; }, absl::Seconds(60)))
        << "agents produced " << AllLines() << " of " << target;
  }

  // What an agent produced, one entry per sequence (the last line of a
  // sequence wins), less what its outbox bound dropped (their number goes
  // to `dropped_out`).
  // Per-stream counts of what the agent produced and kept; `dropped_out`
  // gets the sequences its outbox dropped.
  static Counts FromJournal(const Agent& a,
                            std::set<uint64_t>* dropped_out = nullptr) {
    std::map<uint64_t, std::tuple<std::string, std::string, uint64_t>> by_seq;
    std::ifstream in(a.journal);
    std::string line;
    std::set<uint64_t> dropped;
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      uint64_t d = 0;
      if (f.size() == 2 && f[0] == "dropped" && absl::SimpleAtoi(f[1], &d)) {
        dropped.insert(d);
        continue;
      }
      if (f.size() != 5) continue;
      uint64_t seq = 0, size = 0;
      if (!absl::SimpleAtoi(f[0], &seq) || !absl::SimpleAtoi(f[4], &size)) {
        continue;
      }
      by_seq[seq] = {f[3], f[2], size};
    }
    Counts c;
    if (dropped_out != nullptr) *dropped_out = dropped;
    for (const auto& [seq, v] : by_seq) {
      if (dropped.count(seq)) continue;
      ++c[{a.region, std::get<0>(v), std::get<2>(v), std::get<1>(v)}];
    }
    return c;
  }

  Counts FromStore(std::vector<controller::AgentRecord>* agents = nullptr,
                   std::map<std::string, double>* counters = nullptr) {
    auto store = store_url_.empty()
                     ? controller::CreateSqliteStore(
                           {dir_ + "/controller/controller.db"})
                     : controller::OpenStore(store_url_, "store");
    EXPECT_TRUE(store.ok()) << store.status();
    Counts c;
    if (!store.ok()) return c;
    auto totals = (*store)->LoadStreamTotals();
    EXPECT_TRUE(totals.ok());
    for (const auto& t : *totals) {
      for (int cls = 0; cls < controller::kNumOutcomeClasses; ++cls) {
        if (t.stats.counts[cls] == 0) continue;
        c[{t.key.region, v1::InvokeMode_Name(t.key.mode), t.key.size_bytes,
           v1::OutcomeClass_Name(static_cast<v1::OutcomeClass>(cls))}] +=
            t.stats.counts[cls];
      }
    }
    if (agents) *agents = *(*store)->LoadAgents();
    if (counters) *counters = *(*store)->LoadCounters();
    return c;
  }

  // Drains every agent (SIGTERM: flush to the controller) then the
  // controller, expecting clean exits.
  void DrainAll() {
    for (Agent& a : agents_) a.process->Signal(SIGTERM);
    for (Agent& a : agents_) {
      EXPECT_EQ(a.process->Wait(absl::Seconds(40)), 0)
          << a.id << " did not flush its outbox";
    }
    controller_->Signal(SIGTERM);
    EXPECT_EQ(controller_->Wait(absl::Seconds(20)), 0);
  }

  // Ground truth: Function URL requests the emulator's handler received
  // (every code, region and mode).
  double EmulatorRequests() {
    const std::string url = emulator_->control_url();
    absl::string_view control = url;
    absl::ConsumePrefix(&control, "http://");
    absl::ConsumeSuffix(&control, "/");
    double total = 0;
    for (absl::string_view line :
         absl::StrSplit(HttpGet(std::string(control), "/metrics"), '\n')) {
      if (!absl::StartsWith(line, "fleetcanary_emulator_url_requests_total{")) {
        continue;
      }
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
    }
    return total;
  }

  // Whether a line of the controller's log has both `event` and `agent_id`.
  bool ControllerLogged(const std::string& event, const std::string& agent_id) {
    std::ifstream in(dir_ + "/controller.log");
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StrContains(line, event) && absl::StrContains(line, agent_id)) {
        return true;
      }
    }
    return false;
  }

  double ControllerMetric(const std::string& series) {
    return MetricValue(HttpGet(controller_http_, "/metrics"), series)
        .value_or(-1);
  }

  std::string fleet_file_;
  // The controller's --store ("" = SQLite in its data_dir).
  std::string store_url_;
  std::unique_ptr<testing::PostgresServer> postgres_;
  absl::Duration heartbeat_ = absl::Milliseconds(500);
  std::unique_ptr<emulator::Emulator> emulator_;
  std::unique_ptr<Process> controller_;
  std::unique_ptr<Process> standby_;  // A second replica (failover test).
  std::string grpc_address_, controller_http_;
  // What agents dial (fixed across controller restarts).
  std::string controller_target_;
  std::vector<Agent> agents_;
  std::map<std::string, std::vector<std::string>> agent_extra_;
  // The address controllers' gRPC listens on (replicas behind one name
  // listen on different loopback addresses).
  std::string controller_ip_ = "127.0.0.1";
  // Program and leading arguments agents are started through (the agent's
  // path and flags follow); empty: the agent itself.
  std::vector<std::string> agent_wrapper_;
};

TEST_F(FleetTest, ControllerKilledAndRestartedLosesAndDoublesNothing) {
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  StartController();
  controller_target_ = grpc_address_;
  AddAgent("a1", "us-east-1");
  AddAgent("a2", "us-east-1");
  WaitForMore(60);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(60)));
  const double before = ControllerMetric("fleetcanary_ingest_outcomes_total");

  controller_->Signal(SIGKILL);
  ASSERT_TRUE(controller_->Wait(absl::Seconds(10)).has_value());
  WaitForMore(60);  // Agents keep probing; outcomes wait in their outboxes.
  StartController(ControllerPort());
  // Totals survive the restart: counters never go backwards.
  EXPECT_GE(ControllerMetric("fleetcanary_ingest_outcomes_total"), before);
  WaitForMore(60);
  DrainAll();

  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
}

TEST_F(FleetTest, AgentKilledAndRestartedLosesAndDoublesNothing) {
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  StartController();
  controller_target_ = grpc_address_;
  AddAgent("a1", "us-east-1");
  AddAgent("a2", "us-east-1");
  WaitForMore(60);
  for (Agent& a : agents_) {
    a.process->Signal(SIGKILL);
    ASSERT_TRUE(a.process->Wait(absl::Seconds(10)).has_value());
    StartAgent(a);  // Same data dir: the outbox and sequence survive.
    WaitForMore(40);
  }
  DrainAll();

  ExpectStoredEqualsProduced(/*several_streams=*/false, /*no_gaps=*/true);
}

// kill -9 of an agent while probes are in flight (every response is held
// back a second): after the restart its outbox drains, and against the
// emulator's own count of requests nothing is lost or counted twice. Each
// request the emulator received has exactly one stored outcome: the probe's,
// or an AGENT_ERROR "interrupted" one for a probe the kill cut short (its
// start was recorded before it ran); an interrupted probe whose request had
// not reached the emulator yet is the only outcome without a request.
TEST_F(FleetTest, AgentKilledMidProbeDrainsItsOutboxAgainstEmulatorTruth) {
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500), absl::Seconds(1));
  StartController();
  controller_target_ = grpc_address_;
  Agent& a = AddAgent("a1", "us-east-1");
  WaitForMore(20);
  // Requests the emulator received that have no outcome yet: in flight.
  ASSERT_TRUE(WaitUntil(
      [&] { return EmulatorRequests() > static_cast<double>(AllLines()); },
      absl::Seconds(30)));
  a.process->Signal(SIGKILL);
  ASSERT_TRUE(a.process->Wait(absl::Seconds(10)).has_value());
  StartAgent(a);  // Same data dir: the outbox and sequence survive.
  WaitForMore(20);
  DrainAll();  // The agent finishes its probes and flushes its outbox.

  Counts produced = FromJournal(a);
  std::map<std::string, double> counters;
  const Counts stored = FromStore(nullptr, &counters);
  EXPECT_EQ(stored, produced)
      << "stored:   " << Counted(stored) << "\nproduced: " << Counted(produced);
  EXPECT_EQ(counters["ingest_gaps_total"], 0);
  EXPECT_EQ(counters["ingest_gaps_refused_total"], 0);

  auto store =
      controller::CreateSqliteStore({dir_ + "/controller/controller.db"});
  ASSERT_TRUE(store.ok()) << store.status();
  auto failures = (*store)->QueryFailures(absl::InfinitePast(), 1 << 20);
  ASSERT_TRUE(failures.ok()) << failures.status();
  uint64_t interrupted = 0;
  for (const v1::Outcome& o : *failures) {
    if (o.outcome_class() == v1::AGENT_ERROR &&
        absl::StartsWith(o.detail(), "interrupted")) {
      ++interrupted;
    }
  }
  uint64_t total = 0;
  for (const auto& [k, n] : stored) total += n;
  const double requests = EmulatorRequests();
  EXPECT_GE(interrupted, 1u) << "the kill found no probe in flight";
  // Completed outcomes <= requests <= completed + interrupted outcomes.
  EXPECT_LE(static_cast<double>(total - interrupted), requests);
  EXPECT_LE(requests, static_cast<double>(total));
  std::printf(
      "emulator requests %.0f, stored outcomes %llu (%llu interrupted)\n",
      requests, static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(interrupted));
}

// The agent's outbox on a small tmpfs that fills while the controller is
// away, then kill -9 of the agent, then both back: every request the
// emulator served has an outcome in the store or is in the count the agent
// reported (`dropped_total`, which includes what the full disk lost), and no
// completed outcome is invented: completed <= served <= stored + counted.
// (A probe whose outcome the full disk lost may also come back as an
// "interrupted" outcome after the restart, its start record having
// survived: the count errs on the side of reporting, never of hiding.)
TEST_F(FleetTest, DiskFullThenKilledLeavesEveryServedProbeAccounted) {
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  const std::string disk = dir_ + "/a1";
  std::filesystem::create_directories(disk);
  if (mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs for the agent's outbox (needs "
                    "root): "
                 << std::strerror(errno);
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
  } unmount{disk};
  const int port = UnusedLoopbackPort();
  controller_target_ = absl::StrCat("127.0.0.1:", port);
  StartController(port);
  Agent& a = AddAgent("a1", "us-east-1", {"--outbox_max_bytes=64Mi"});
  WaitForMore(20);
  controller_->Signal(SIGTERM);
  ASSERT_EQ(controller_->Wait(absl::Seconds(20)), 0);
  // Nowhere to send: the outbox grows until the disk is full and appends
  // fail (each counted as lost).
  const std::string errors =
      "fleetcanary_agent_outbox_append_errors_total{region=\"us-east-1\"}";
  ASSERT_TRUE(WaitUntil(
      [&] {
        return MetricValue(HttpGet(a.http, "/metrics"), errors).value_or(0) >=
               20;
      },
      absl::Seconds(120)))
      << "the agent's disk never filled";
  a.process->Signal(SIGKILL);
  ASSERT_TRUE(a.process->Wait(absl::Seconds(10)).has_value());
  StartController(port);
  StartAgent(a);  // The same full disk: it must start and drain.
  if (HasFatalFailure()) return;
  WaitForMore(40);
  DrainAll();

  std::vector<controller::AgentRecord> records;
  const Counts stored_counts = FromStore(&records);
  ASSERT_EQ(records.size(), 1u);
  const uint64_t counted = records[0].dropped_total;
  uint64_t stored = 0;
  for (const auto& [k, n] : stored_counts) stored += n;
  uint64_t agent_errors = 0;
  for (const auto& [k, n] : stored_counts) {
    if (std::get<3>(k) == "AGENT_ERROR") agent_errors += n;
  }
  const double served = EmulatorRequests();
  EXPECT_GT(counted, 0u) << "the full disk lost nothing?";
  EXPECT_LE(static_cast<double>(stored - agent_errors), served);
  EXPECT_LE(served, static_cast<double>(stored + counted));
  std::printf(
      "disk full + kill -9: emulator served %.0f; stored %llu (%llu "
      "AGENT_ERROR: interrupted or not run), counted lost %llu\n",
      served, static_cast<unsigned long long>(stored),
      static_cast<unsigned long long>(agent_errors),
      static_cast<unsigned long long>(counted));
}

// A rolling restart as a StatefulSet does it: one agent at a time gets
// SIGTERM, flushes its outbox, says goodbye and exits 0; it comes back with
// the same id and data dir. Nothing is lost or counted twice, the controller
// logs each agent DRAINED and none LOST, and a drained agent that does not
// come back is forgotten after --forget_drained_after.
TEST_F(FleetTest, RollingRestartWithGoodbyeLosesNothingAndLeavesNoLostAgents) {
  // "No agent LOST" must not depend on the machine's speed: with 5 s
  // heartbeats the liveness timeout (two of them) is far beyond any
  // scheduling delay, and nothing here waits for a heartbeat.
  StartEmulator({"us-east-1"}, 5, absl::Seconds(5));
  StartController(0, {"--forget_drained_after=1s"});
  controller_target_ = grpc_address_;
  AddAgent("fleetcanary-agent-0-us-east-1", "us-east-1");
  AddAgent("fleetcanary-agent-1-us-east-1", "us-east-1");
  WaitForMore(60);
  // Highest ordinal first, like the StatefulSet controller.
  for (int i = static_cast<int>(agents_.size()) - 1; i >= 0; --i) {
    Agent& a = agents_[i];
    a.process->Signal(SIGTERM);
    ASSERT_EQ(a.process->Wait(absl::Seconds(40)), 0)
        << a.id << " did not flush its outbox";
    EXPECT_TRUE(WaitUntil(
        [&] { return ControllerLogged("event=agent_drained ", a.id); },
        absl::Seconds(60)))
        << a.id << " not drained";
    StartAgent(a);  // Same id and data dir: the outbox survives.
    ASSERT_TRUE(WaitUntil(
        [&] {
          return ControllerMetric(
                     "fleetcanary_agents{region=\"us-east-1\",state="
                     "\"LIVE\"}") == 2;
        },
        absl::Seconds(60)))
        << HttpGet(controller_http_, "/metrics");
    WaitForMore(40);
  }
  EXPECT_LE(ControllerMetric(
                "fleetcanary_agents{region=\"us-east-1\",state=\"LOST\"}"),
            0);
  // One agent leaves for good: drained, then forgotten.
  agents_[1].process->Signal(SIGTERM);
  ASSERT_EQ(agents_[1].process->Wait(absl::Seconds(40)), 0);
  EXPECT_TRUE(WaitUntil(
      [&] { return ControllerLogged("event=agent_forgotten ", agents_[1].id); },
      absl::Seconds(60)));
  agents_[0].process->Signal(SIGTERM);
  EXPECT_EQ(agents_[0].process->Wait(absl::Seconds(40)), 0);
  std::ifstream log(dir_ + "/controller.log");
  std::string line;
  while (std::getline(log, line)) {
    EXPECT_FALSE(absl::StrContains(line, "event=agent_lost ")) << line;
  }
  controller_->Signal(SIGTERM);
  EXPECT_EQ(controller_->Wait(absl::Seconds(20)), 0);

  ExpectStoredEqualsProduced(/*several_streams=*/false, /*no_gaps=*/true);
}

TEST_F(FleetTest, ControllerUnreachableThenReachableLosesAndDoublesNothing) {
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(300));
  StartController();
  controller_target_ = grpc_address_;
  AddAgent("a1", "us-east-1");
  AddAgent("a2", "us-east-1");
  WaitForMore(40);
  // Frozen: connections stay open but nothing answers. Agents hit their
  // liveness timeout and keep retrying.
  controller_->Signal(SIGSTOP);
  WaitForMore(80);
  controller_->Signal(SIGCONT);
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string m = HttpGet(agents_[0].http, "/metrics");
        auto v = MetricValue(
            m,
            "fleetcanary_agent_session_reconnects_total{region=\"us-east-1\"}");
        return v.has_value() && *v >= 1;
      },
      absl::Seconds(60)));
  WaitForMore(40);
  DrainAll();

  ExpectStoredEqualsProduced(/*several_streams=*/false, /*no_gaps=*/false);
}

TEST_F(FleetTest, OutboxOverflowMissesExactlyTheCountedDrops) {
  StartEmulator({"us-east-1"}, 10, absl::Milliseconds(500));
  const int port = UnusedLoopbackPort();
  controller_target_ = absl::StrCat("127.0.0.1:", port);
  StartController(port);
  AddAgent("a1", "us-east-1", {"--outbox_max_bytes=8Ki"});
  WaitForMore(30);
  // Graceful stop: everything the controller received is committed and
  // acknowledged, the rest stays in the agent's outbox.
  controller_->Signal(SIGTERM);
  ASSERT_EQ(controller_->Wait(absl::Seconds(20)), 0);
  std::vector<controller::AgentRecord> records;
  // The agent keeps probing with nowhere to send: its outbox overflows and
  // drops the oldest outcomes it has not sent.
  WaitForMore(250);
  StartController(port);
  WaitForMore(40);
  DrainAll();

  std::map<std::string, double> counters;
  const Counts stored = FromStore(&records, &counters);
  ASSERT_EQ(records.size(), 1u);
  const uint64_t dropped = records[0].dropped_total;
  EXPECT_GT(dropped, 100u);
  // Produced minus exactly the dropped outcomes.
  std::set<uint64_t> journal_dropped;
  const Counts expected = FromJournal(agents_[0], &journal_dropped);
  EXPECT_EQ(journal_dropped.size(), dropped);
  // Every drop shows at the controller: as a sequence gap, or - the newest
  // outcomes, dropped after the last batch the controller applied - only in
  // the dropped count the agent reports (no later batch reveals them).
  const uint64_t trailing = std::count_if(
      journal_dropped.begin(), journal_dropped.end(),
      [&](uint64_t seq) { return seq > records[0].applied_sequence; });
  EXPECT_EQ(counters["ingest_gaps_total"] + trailing,
            static_cast<double>(dropped));
  EXPECT_EQ(stored, expected)
      << "stored:   " << Counted(stored) << "\nexpected: " << Counted(expected);
}

TEST_F(FleetTest, LostAgentsWorkMovesToTheOthersWithinTwoHeartbeats) {
  const std::vector<std::string> regions = {"us-east-1", "eu-west-1",
                                            "ap-south-1"};
  StartEmulator(regions, 2, absl::Seconds(1));
  StartController();
  controller_target_ = grpc_address_;
  for (const std::string& r : regions) {
    AddAgent(r + "-a", r);
    AddAgent(r + "-b", r);
  }
  auto assignments = [&](const Agent& a) {
    return MetricValue(HttpGet(a.http, "/metrics"),
                       absl::StrCat("fleetcanary_agent_assignments{region=\"",
                                    a.region, "\"}"))
        .value_or(-1);
  };
  // Every region's 4 size pairs × 2 modes are spread over its two agents.
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (size_t i = 0; i < agents_.size(); i += 2) {
          const double x = assignments(agents_[i]);
          const double y = assignments(agents_[i + 1]);
          if (x + y != 8 || x < 2 || y < 2) return false;
        }
        return true;
      },
      absl::Seconds(60)));

  // us-east-1: an agent dies (its stream closes).
  agents_[0].process->Signal(SIGKILL);
  // eu-west-1: an agent freezes (stream open, heartbeats stop).
  agents_[2].process->Signal(SIGSTOP);
  const absl::Time start = Clock::Real()->Now();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return assignments(agents_[1]) == 8 && assignments(agents_[3]) == 8;
      },
      absl::Seconds(60)));
  // How fast the work moves is the scheduler's liveness timeout (two
  // heartbeats, checked every quarter heartbeat): pinned exactly on a
  // simulated clock in
  // SchedulerTest.HeartbeatTimeoutLosesAgentWithinTwoIntervals. Here, with real
  // processes, the work moved at all, and not before the frozen agent missed a
  // heartbeat.
  const absl::Duration took = Clock::Real()->Now() - start;
  EXPECT_GE(took, heartbeat_) << took;
  std::printf("lost agents' work moved after %s (heartbeat %s)\n",
              absl::FormatDuration(took).c_str(),
              absl::FormatDuration(heartbeat_).c_str());
  EXPECT_EQ(ControllerMetric(
                "fleetcanary_agents{region=\"us-east-1\",state=\"LOST\"}"),
            1);
  EXPECT_EQ(ControllerMetric(
                "fleetcanary_agents{region=\"eu-west-1\",state=\"LOST\"}"),
            1);
  // ap-south-1 untouched.
  EXPECT_EQ(assignments(agents_[4]) + assignments(agents_[5]), 8);
  agents_[2].process->Signal(SIGCONT);
}

// PostgreSQL stops in the middle of ingest and comes back: while it is down
// the controller acknowledges nothing, says so (fleetcanary_store_up 0,
// store_unavailable_total), and agents keep their outcomes; afterwards every
// outcome is in the database exactly once.
TEST_F(FleetTest, PostgresStoppedMidIngestLosesAndDoublesNothing) {
  ASSERT_NO_FATAL_FAILURE(UsePostgres("fleet"));
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  // A lease longer than the outage: this replica stays the leader.
  StartController(0, {"--leader_lease=300s"});
  controller_target_ = grpc_address_;
  AddAgent("a1", "us-east-1");
  AddAgent("a2", "us-east-1");
  WaitForMore(60);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(60)));
  EXPECT_EQ(ControllerMetric("fleetcanary_controller_leader"), 1);

  ASSERT_TRUE(postgres_->Stop("fast").ok());
  ASSERT_TRUE(
      WaitUntil([&] { return ControllerMetric("fleetcanary_store_up") == 0; },
                absl::Seconds(60)));
  const double acked = ControllerMetric("fleetcanary_ingest_outcomes_total");
  WaitForMore(60);  // Agents keep probing; outcomes wait in their outboxes.
  EXPECT_EQ(ControllerMetric("fleetcanary_ingest_outcomes_total"), acked);
  EXPECT_GE(ControllerMetric("fleetcanary_store_unavailable_total"), 1);

  ASSERT_TRUE(postgres_->Restart().ok());
  ASSERT_TRUE(
      WaitUntil([&] { return ControllerMetric("fleetcanary_store_up") == 1; },
                absl::Seconds(60)));
  WaitForMore(60);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
}

// Two replicas on one PostgreSQL database; kill -9 of the leader: the
// standby takes the lease (3 s) and leads within 10 s of the kill, continues
// from the detector state the old leader saved, and the agents (given both
// addresses) follow it and drain their outboxes into it. Nothing is lost or
// applied twice: the store holds exactly the agents' journals, and exactly
// one outcome per request the emulator served.
TEST_F(FleetTest, LeaderKilledStandbyTakesOverLosesAndDoublesNothing) {
  int port_b = 0;
  ASSERT_NO_FATAL_FAILURE(StartLeaderAndStandby("failover", &port_b));
  EXPECT_EQ(ControllerMetric("fleetcanary_controller_leader"), 1);
  AddAgent("a1", "us-east-1");
  AddAgent("a2", "us-east-1");
  WaitForMore(60);
  // Outcomes committed and the detector state saved to the shared store.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 20 &&
               ControllerMetric("fleetcanary_detector_state_saves_total") >= 1;
      },
      absl::Seconds(60)));

  const absl::Time killed = absl::Now();
  ASSERT_NO_FATAL_FAILURE(KillLeaderUntilStandbyLeads());
  const absl::Duration leading = absl::Now() - killed;
  EXPECT_EQ(grpc_address_, absl::StrCat("127.0.0.1:", port_b));
  EXPECT_EQ(ControllerMetric("fleetcanary_controller_leader"), 1);
  EXPECT_EQ(ControllerMetric("fleetcanary_detector_state_restores_total"), 1)
      << "the new leader did not continue from the saved detector state";
  // The new leader schedules: both agents come to it and their outcomes are
  // committed there.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_sessions_active") == 2 &&
               ControllerMetric("fleetcanary_ingest_outcomes_total") > 0;
      },
      absl::Seconds(60)));
  const absl::Duration committing = absl::Now() - killed;
  // The bound with a 3 s lease: the standby notices the expired lease
  // within one lease and needs no more than a start to lead.
  EXPECT_LT(leading, absl::Seconds(10));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 40;
      },
      absl::Seconds(60)));
  WaitForMore(60);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
  const uint64_t stored = ExpectStoredEqualsServed();
  std::printf(
      "failover: kill -9 of the leader -> standby leading after %s, first "
      "outcome committed on it after %s; %llu outcomes stored for %.0f "
      "emulator requests\n",
      absl::FormatDuration(leading).c_str(),
      absl::FormatDuration(committing).c_str(),
      static_cast<unsigned long long>(stored), EmulatorRequests());
}

// Fencing with real processes: the leader is stalled (SIGSTOP) past its
// lease, the standby takes over and the agents follow it. When the old leader
// wakes (SIGCONT) it finds its lease taken and exits (75, crash-only
// demotion) without committing or acknowledging anything more: the store
// still holds exactly the agents' journals and one outcome per request the
// emulator served - two leaders are never visible in the data.
TEST_F(FleetTest, StalledLeaderWakesFencedAndExitsWithoutWriting) {
  int port_b = 0;
  ASSERT_NO_FATAL_FAILURE(StartLeaderAndStandby("stalled", &port_b));
  AddAgent("a1", "us-east-1");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(60)));

  std::unique_ptr<Process> old_leader = std::move(controller_);
  old_leader->Signal(SIGSTOP);
  ASSERT_NO_FATAL_FAILURE(StandbyLeads());
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_sessions_active") == 1 &&
               ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(60)))
      << "the agent did not follow the new leader";

  old_leader->Signal(SIGCONT);
  EXPECT_EQ(old_leader->Wait(absl::Seconds(60)), 75)
      << "the woken old leader did not step down";
  const std::string old_log = ReadFile(dir_ + "/controller.log");
  const size_t lost_at = old_log.find("event=leadership_lost");
  ASSERT_NE(lost_at, std::string::npos);
  std::printf(
      "stalled leader on waking: %s\n",
      old_log.substr(lost_at, old_log.find('\n', lost_at) - lost_at).c_str());
  EXPECT_EQ(ControllerMetric("fleetcanary_controller_leader"), 1);

  WaitForMore(40);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
  ExpectStoredEqualsServed();
}

// Runs canaryctl with `args`; stdout to `out`, stderr to `out`.stderr.
// Returns the exit code.
int Canaryctl(const std::vector<std::string>& args, const std::string& out) {
  return testing::RunCanaryctl(args, out);
}

// Two real replicas on one real PostgreSQL: the standby answers the admin
// API's reads (agents, schedules, verdicts, analyze) and the status page
// from the database, and refuses changes and probes naming the leader.
TEST_F(FleetTest, StandbyServesAdminReadsAndStatusPageFromTheDatabase) {
  ASSERT_NO_FATAL_FAILURE(UsePostgres("standby_reads"));
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  const int port_a = UnusedLoopbackPort();
  StartController(port_a, {"--leader_lease=60s", "--replica_id=a"});
  const std::string leader = absl::StrCat("127.0.0.1:", port_a);
  const int port_b = UnusedLoopbackPort();
  const std::string standby_grpc = absl::StrCat("127.0.0.1:", port_b);
  std::string standby_http;
  ASSERT_NO_FATAL_FAILURE(SpawnStandby(port_b, "60s", &standby_http));
  // Not ready (agents and load balancers go to the leader), but it names it.
  ASSERT_TRUE(StandbyNamesLeader(standby_http, leader, absl::Seconds(60)))
      << HttpGet(standby_http, "/readyz");
  EXPECT_EQ(MetricValue(HttpGet(standby_http, "/metrics"),
                        "fleetcanary_controller_leader"),
            0);
  controller_target_ = grpc_address_;
  AddAgent("a1", "us-east-1");
  WaitForMore(40);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(60)));

  const std::string out = dir_ + "/ctl";
  const std::vector<std::string> to_standby = {"--controller", standby_grpc,
                                               "--insecure"};
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.end(), to_standby.begin(), to_standby.end());
    return Canaryctl(args, out);
  };
  // Agents as the database knows them: the watermark the leader committed.
  ASSERT_EQ(ctl({"agents", "-o", "json"}), 0) << ReadFile(out + ".stderr");
  std::string agents = ReadFile(out);
  EXPECT_NE(agents.find("\"a1\""), std::string::npos) << agents;
  EXPECT_NE(agents.find("us-east-1"), std::string::npos) << agents;
  EXPECT_NE(agents.find("LIVE"), std::string::npos) << agents;
  std::vector<controller::AgentRecord> records;
  FromStore(&records);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_GT(records[0].applied_sequence, 20u);
  // Schedules the leader applied from its fleet file.
  ASSERT_EQ(ctl({"schedules", "list"}), 0) << ReadFile(out + ".stderr");
  EXPECT_NE(ReadFile(out).find("ladder"), std::string::npos) << ReadFile(out);
  ASSERT_EQ(ctl({"verdicts"}), 0) << ReadFile(out + ".stderr");
  // Analyze over the shared store: the stream's probes are there.
  ASSERT_EQ(ctl({"analyze", "-o", "json"}), 0) << ReadFile(out + ".stderr");
  EXPECT_NE(ReadFile(out).find("us-east-1"), std::string::npos)
      << ReadFile(out);
  // The status page, rendered from the database.
  const std::string page = HttpGet(standby_http, "/status");
  EXPECT_NE(page.find("<html"), std::string::npos) << page.substr(0, 500);
  EXPECT_NE(page.find("canary"), std::string::npos) << page.substr(0, 500);

  // Changes and probes go to the leader: refused, naming it; nothing
  // changed.
  EXPECT_NE(ctl({"schedules", "delete", "ladder"}), 0);
  EXPECT_NE(ReadFile(out + ".stderr").find("leader=" + leader),
            std::string::npos)
      << ReadFile(out + ".stderr");
  EXPECT_NE(
      ctl({"probe", "--target", "canary", "--sizes", "2", "--count", "1"}), 0);
  EXPECT_NE(ReadFile(out + ".stderr").find("leader=" + leader),
            std::string::npos)
      << ReadFile(out + ".stderr");
  ASSERT_EQ(Canaryctl({"schedules", "list", "--controller", grpc_address_,
                       "--insecure"},
                      out),
            0);
  EXPECT_NE(ReadFile(out).find("ladder"), std::string::npos);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
}

// An agent told only a name that reaches a standby (not the leader's
// address): the standby's refusal names the leader, the agent dials it
// directly and its outcomes are committed there, none lost or doubled.
TEST_F(FleetTest, AgentGivenOnlyAStandbysNameFollowsTheLeader) {
  ASSERT_NO_FATAL_FAILURE(UsePostgres("follow_leader"));
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  StartController(UnusedLoopbackPort(),
                  {"--leader_lease=60s", "--replica_id=a"});
  const int port_b = UnusedLoopbackPort();
  std::string standby_http;
  ASSERT_NO_FATAL_FAILURE(SpawnStandby(port_b, "60s", &standby_http));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StartsWith(HttpGet(standby_http, "/readyz"),
                                "standby; leader=" + grpc_address_);
      },
      absl::Seconds(60)));
  // "localhost" (a name, resolved by the agent) at the standby's port only.
  controller_target_ = absl::StrCat("localhost:", port_b);
  AddAgent("a1", "us-east-1");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ControllerMetric("fleetcanary_sessions_active") == 1 &&
               ControllerMetric("fleetcanary_ingest_outcomes_total") > 20;
      },
      absl::Seconds(30)));
  WaitForMore(30);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
}

// An agent given ONE name that resolves to two controller replicas (its own
// /etc/hosts: the standby's address first, then the leader's, same port):
// the standby refuses the session naming the leader, which is among the
// name's addresses, and the agent goes there. After kill -9 of the leader
// the standby takes the lease and the agent moves to it, the name's other
// address. Its outcomes are committed, none lost or doubled.
TEST_F(FleetTest, AgentGivenOneNameOfSeveralReplicasFollowsTheLeader) {
  const std::string name = "canary-controllers.test";
  ASSERT_NO_FATAL_FAILURE(
      AgentsResolveWith(absl::StrCat("127.0.0.1 localhost\n127.0.0.3 ", name,
                                     "\n127.0.0.2 ", name, "\n"),
                        name, {"127.0.0.3", "127.0.0.2"}));
  ASSERT_NO_FATAL_FAILURE(UsePostgres("one_name"));
  StartEmulator({"us-east-1"}, 5, absl::Milliseconds(500));
  controller_ip_ = "127.0.0.2";
  StartController(0, {"--leader_lease=3s", "--replica_id=a"});
  const int port = ControllerPort();
  const std::string leader = absl::StrCat("127.0.0.2:", port);
  ASSERT_EQ(grpc_address_, leader);
  controller_ip_ = "127.0.0.3";
  std::string standby_http;
  ASSERT_NO_FATAL_FAILURE(SpawnStandby(port, "3s", &standby_http));
  // The standby listens and refuses, naming the leader, before the agent
  // dials it.
  ASSERT_TRUE(StandbyNamesLeader(standby_http, leader, absl::Seconds(60)))
      << HttpGet(standby_http, "/readyz");

  controller_target_ = absl::StrCat(name, ":", port);
  AddAgent("a1", "us-east-1");
  const std::string live =
      "fleetcanary_agents{region=\"us-east-1\",state=\"LIVE\"}";
  auto live_and_ingesting = [&](double above) {
    return WaitUntil(
        [&] {
          return ControllerMetric("fleetcanary_sessions_active") == 1 &&
                 ControllerMetric(live) == 1 &&
                 ControllerMetric("fleetcanary_ingest_outcomes_total") >
                     above + 20;
        },
        absl::Seconds(60));
  };
  ASSERT_TRUE(live_and_ingesting(0));
  // It dialed the name's first address, the standby, and was refused; the
  // leader it named was already one of the name's addresses (a leader
  // outside the list is added and logged as session_follow_leader).
  const std::string agent_log = dir_ + "/a1.log";
  EXPECT_NE(ReadFile(agent_log).find("not the leader; leader=" + leader),
            std::string::npos)
      << ReadFile(agent_log);
  EXPECT_EQ(ReadFile(agent_log).find("event=session_follow_leader"),
            std::string::npos)
      << ReadFile(agent_log);

  ASSERT_NO_FATAL_FAILURE(KillLeaderUntilStandbyLeads());
  EXPECT_EQ(grpc_address_, absl::StrCat("127.0.0.3:", port));
  ASSERT_TRUE(live_and_ingesting(
      ControllerMetric("fleetcanary_ingest_outcomes_total")));
  EXPECT_EQ(ReadFile(agent_log).find("event=session_follow_leader"),
            std::string::npos)
      << ReadFile(agent_log);
  WaitForMore(30);
  DrainAll();
  ExpectStoredEqualsProduced(/*several_streams=*/true, /*no_gaps=*/true);
}

// An agent paused (SIGSTOP) long enough for the controller to declare it
// LOST -- what a pause of (liveness - 0.5 s) does when it starts just before
// a heartbeat was due -- and one paused until the controller also closed its
// stream (well past the liveness timeout): in both cases, once resumed, it is
// LIVE again with all its assignments, probes, and the
// controller counted the lost-and-back time. Before the fix a LOST agent on
// an open stream stayed LOST with 0 assignments for good.
TEST_F(FleetTest, PausedAgentIsLiveWithItsWorkAgain) {
  StartEmulator({"us-east-1"}, 2, absl::Seconds(1));
  StartController();
  controller_target_ = grpc_address_;
  Agent& agent = AddAgent("paused", "us-east-1");
  auto assignments = [&] {
    return MetricValue(HttpGet(agent.http, "/metrics"),
                       "fleetcanary_agent_assignments{region=\"us-east-1\"}")
        .value_or(-1);
  };
  const std::string lost =
      "fleetcanary_agents{region=\"us-east-1\",state=\"LOST\"}";
  const std::string live =
      "fleetcanary_agents{region=\"us-east-1\",state=\"LIVE\"}";
  ASSERT_TRUE(WaitUntil([&] { return assignments() == 8; }, absl::Seconds(60)));
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE(round == 1 ? "paused until LOST" : "paused until closed");
    agent.process->Signal(SIGSTOP);
    ASSERT_TRUE(WaitUntil([&] { return ControllerMetric(lost) == 1; },
                          absl::Seconds(60)));
    if (round == 2) {
      // The controller closes the LOST agent's stream.
      ASSERT_TRUE(WaitUntil(
          [&] { return ControllerMetric("fleetcanary_sessions_active") == 0; },
          absl::Seconds(60)));
    }
    const size_t before = Lines(agent.journal);
    agent.process->Signal(SIGCONT);
    const absl::Time resumed = Clock::Real()->Now();
    ASSERT_TRUE(WaitUntil(
        [&] {
          return ControllerMetric(live) == 1 && assignments() == 8 &&
                 Lines(agent.journal) >= before + 4;
        },
        absl::Seconds(60)));
    // That a heartbeat on the open stream revives the agent at once is pinned
    // on a simulated clock (SchedulerTest.LostAgentThatHeartbeatsAgainIs...);
    // here, with real processes, it came back with all its work at all.
    const absl::Duration took = Clock::Real()->Now() - resumed;
    std::printf(
        "paused agent LIVE with its work %s after SIGCONT "
        "(heartbeat %s)\n",
        absl::FormatDuration(took).c_str(),
        absl::FormatDuration(heartbeat_).c_str());
    EXPECT_GE(ControllerMetric("fleetcanary_agents_recovered_total"), round);
    EXPECT_GT(ControllerMetric("fleetcanary_agent_lost_seconds_total"), 0);
    // It stays LIVE with its work (the bug: LOST for good, 0 assignments).
    ASSERT_TRUE(WaitUntil(
        [&] {
          return ControllerMetric("fleetcanary_agents_recovered_total") >=
                     round &&
                 ControllerMetric(live) == 1;
        },
        absl::Seconds(60)));
  }
  DrainAll();
}

}  // namespace
}  // namespace fleetcanary
