#include "controller/fleet/scheduler.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/sim_time.h"

namespace fleetcanary {
namespace controller {
namespace {

const std::vector<std::string> kRegions = {"us-east-1", "eu-west-1",
                                           "ap-south-1"};

class Recorder : public AssignmentListener {
 public:
  void OnAssignments(const v1::AssignmentSet& set) override {
    absl::MutexLock lock(&mu);
    latest = set;
    ++pushes;
  }
  void OnLost() override {
    absl::MutexLock lock(&mu);
    ++lost;
  }
  absl::Mutex mu;
  int lost = 0;
  v1::AssignmentSet latest;
  int pushes = 0;
};

v1::ApplySchedulesRequest Fleet(int schedules, int sizes) {
  v1::ApplySchedulesRequest req;
  v1::Target* t = req.add_targets();
  t->set_name("canary");
  for (const std::string& r : kRegions) {
    v1::RegionEndpoints* re = t->add_regions();
    re->set_region(r);
    for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      v1::FunctionUrl* u = re->add_urls();
      u->set_mode(mode);
      u->set_url(absl::StrCat("http://127.0.0.1:1/", r, "/", mode, "/"));
    }
  }
  for (int s = 0; s < schedules; ++s) {
    v1::Schedule* sc = req.add_schedules();
    sc->set_id(absl::StrCat("s", s));
    sc->set_target("canary");
    for (int i = 0; i < sizes; ++i) sc->add_sizes(uint64_t{2} << (i * 2));
    sc->set_rate_per_second(0.5);
  }
  return req;
}

// (schedule|region|size) -> agent, from the agents' current sets.
std::map<std::string, std::string> Placement(
    Scheduler* s, const std::vector<std::string>& agents) {
  std::map<std::string, std::string> out;
  for (const std::string& id : agents) {
    const v1::AssignmentSet set = s->AssignmentsFor(id);
    for (const auto& a : set.assignments()) {
      const std::string key =
          absl::StrCat(a.schedule_id(), "|", a.region(), "|", a.size_bytes());
      auto [it, inserted] = out.emplace(key, id);
      EXPECT_TRUE(inserted || it->second == id)
          << key << " on " << it->second << " and " << id;
    }
  }
  return out;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = CreateMemoryStore();
    SchedulerOptions options;
    options.heartbeat_interval = absl::Seconds(10);
    options.metrics = &metrics_;
    // The fixtures' URLs are on loopback (allowed deliberately).
    options.target_addresses.allow_loopback = true;
    auto s = Scheduler::Create(options, store_.get(), &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
  }
  void TearDown() override { scheduler_->Shutdown(); }
  void Connect(const std::string& id, const std::string& region) {
    v1::Hello hello;
    hello.set_agent_id(id);
    hello.set_region(region);
    scheduler_->AgentConnected(hello, &listeners_[id]);
  }
  std::vector<std::string> Agents(const std::string& region) {
    std::vector<std::string> out;
    for (const auto& info : scheduler_->ListAgents(region)) {
      out.push_back(info.agent_id());
    }
    return out;
  }

  SimulatedClock clock_{absl::FromUnixSeconds(1700000000)};
  ControllerMetrics metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, Recorder> listeners_;
};

// Targets at loopback, private, link-local or metadata addresses are refused
// when applied, naming the field, unless deliberately allowed; nothing is
// stored.
TEST(SchedulerTargetAddressTest, SpecialAddressesRefusedUnlessAllowed) {
  SimulatedClock clock(absl::FromUnixSeconds(1000));
  auto store = CreateMemoryStore();
  auto scheduler = Scheduler::Create({}, store.get(), &clock);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  auto apply = [&](const std::string& url) {
    v1::ApplySchedulesRequest req;
    v1::Target* t = req.add_targets();
    t->set_name("canary");
    v1::RegionEndpoints* ok = t->add_regions();
    ok->set_region("us-east-1");
    v1::FunctionUrl* u = ok->add_urls();
    u->set_mode(v1::BUFFERED);
    u->set_url("https://abc.lambda-url.us-east-1.on.aws/");
    v1::RegionEndpoints* re = t->add_regions();
    re->set_region("eu-west-1");
    u = re->add_urls();
    u->set_mode(v1::BUFFERED);
    u->set_url("https://abc.lambda-url.eu-west-1.on.aws/");
    u = re->add_urls();
    u->set_mode(v1::RESPONSE_STREAM);
    u->set_url(url);
    return (*scheduler)->ApplySchedules(req).status();
  };
  for (const char* url :
       {"http://169.254.169.254/latest/meta-data/", "http://169.254.1.1/",
        "http://127.0.0.1:8080/", "http://127.9.9.9/", "http://localhost:80/",
        "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
        "http://[::1]:9000/", "http://[fc00::1]/", "http://[fd12::1]/",
        "http://[fe80::1]/", "http://[fd00:ec2::254]/"}) {
    absl::Status s = apply(url);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(s.message(),
                ::testing::HasSubstr("targets[0].regions[1].urls[1].url: "))
        << url;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("--target_allow_networks"));
  }
  EXPECT_TRUE((*scheduler)->ListSchedules().targets().empty());
  // Public addresses and names pass (names are judged by agents on connect).
  EXPECT_TRUE(apply("http://203.0.113.7/").ok());
  EXPECT_TRUE(apply("https://internal.example.com/").ok());
  (*scheduler)->Shutdown();

  // Deliberately allowed: a network, or the private switch.
  SchedulerOptions o;
  o.target_addresses.allowed_networks = {"10.20.0.0/16"};
  auto allowed = Scheduler::Create(o, store.get(), &clock);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  scheduler = std::move(allowed);
  EXPECT_TRUE(apply("http://10.20.3.4/").ok());
  EXPECT_EQ(apply("http://10.21.3.4/").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(apply("http://169.254.169.254/").code(),
            absl::StatusCode::kInvalidArgument);
  (*scheduler)->Shutdown();
  o = SchedulerOptions();
  o.target_addresses.allow_private = true;
  o.target_addresses.allow_loopback = true;
  allowed = Scheduler::Create(o, store.get(), &clock);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  scheduler = std::move(allowed);
  EXPECT_TRUE(apply("http://192.168.1.1/").ok());
  EXPECT_TRUE(apply("http://127.0.0.1:1/").ok());
  EXPECT_EQ(apply("http://169.254.169.254/").code(),
            absl::StatusCode::kInvalidArgument);
  (*scheduler)->Shutdown();
}

TEST_F(SchedulerTest, BalancedPairsBothModesInterleaved) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(2, 8)).ok());
  for (const std::string& r : kRegions) {
    for (int i = 0; i < 3; ++i) Connect(absl::StrCat(r, "-a", i), r);
  }
  for (const std::string& r : kRegions) {
    std::vector<std::string> agents = Agents(r);
    ASSERT_EQ(agents.size(), 3u);
    auto placement = Placement(scheduler_.get(), agents);
    EXPECT_EQ(placement.size(), 16u);  // Every pair placed exactly once.
    std::map<std::string, int> load;
    for (const auto& [pair, agent] : placement) ++load[agent];
    for (const std::string& a : agents) {
      // Fair share 16/3; bounded loads keep each within [3, 7].
      EXPECT_GE(load[a], 3) << a;
      EXPECT_LE(load[a], 7) << a;
      const v1::AssignmentSet set = scheduler_->AssignmentsFor(a);
      EXPECT_EQ(set.assignments_size(), 2 * load[a]);
      // Both modes of each size, offsets half an interval apart.
      std::map<std::string, std::map<int, int64_t>> offsets;
      for (const auto& as : set.assignments()) {
        EXPECT_EQ(as.region(), r);
        EXPECT_EQ(as.interval().seconds(), 2);
        EXPECT_EQ(as.url().mode(), as.mode());
        offsets[absl::StrCat(as.schedule_id(), as.size_bytes())][as.mode()] =
            as.offset().seconds() * 1000000000LL + as.offset().nanos();
      }
      for (const auto& [k, by_mode] : offsets) {
        ASSERT_EQ(by_mode.size(), 2u) << k;
        const int64_t d =
            by_mode.at(v1::RESPONSE_STREAM) - by_mode.at(v1::BUFFERED);
        EXPECT_TRUE(d == 1000000000LL || d == -1000000000LL) << d;
      }
    }
  }
  EXPECT_TRUE(scheduler_->RegionsWithoutAgents().empty());
}

TEST_F(SchedulerTest, StableWhenAnAgentJoins) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(3, 10)).ok());
  const std::string r = "us-east-1";
  for (int i = 0; i < 3; ++i) Connect(absl::StrCat("a", i), r);
  auto before = Placement(scheduler_.get(), Agents(r));
  ASSERT_EQ(before.size(), 30u);
  Connect("a3", r);
  auto after = Placement(scheduler_.get(), Agents(r));
  ASSERT_EQ(after.size(), 30u);
  int moved = 0, to_new = 0;
  for (const auto& [pair, agent] : before) {
    if (after[pair] != agent) {
      ++moved;
      if (after[pair] == "a3") ++to_new;
    }
  }
  // Ideal movement is 30/4 = 7.5 pairs, all onto the newcomer.
  EXPECT_GE(to_new, 5);
  EXPECT_LE(moved, 12);
  EXPECT_GE(to_new * 10, moved * 7) << "moved=" << moved;
}

TEST_F(SchedulerTest, LostAgentsWorkMovesToOthers) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(2, 6)).ok());
  const std::string r = "eu-west-1";
  for (int i = 0; i < 3; ++i) Connect(absl::StrCat("a", i), r);
  auto before = Placement(scheduler_.get(), Agents(r));
  ASSERT_GT(scheduler_->AssignmentsFor("a1").assignments_size(), 0);
  scheduler_->AgentDisconnected("a1", &listeners_["a1"]);
  auto after = Placement(scheduler_.get(), {"a0", "a2"});
  EXPECT_EQ(after.size(), 12u);
  for (const auto& [pair, agent] : before) {
    if (agent != "a1") {
      EXPECT_EQ(after[pair], agent) << pair;  // Stable.
    }
  }
  // The survivors were pushed their new sets.
  const int expected = scheduler_->AssignmentsFor("a0").assignments_size();
  Recorder& rec = listeners_["a0"];
  absl::MutexLock lock(&rec.mu);
  EXPECT_EQ(rec.latest.assignments_size(), expected);
}

TEST_F(SchedulerTest, HeartbeatTimeoutLosesAgentWithinTwoIntervals) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 4)).ok());
  Connect("a0", "ap-south-1");
  Connect("a1", "ap-south-1");
  // a0 keeps heart-beating, a1 falls silent. The scheduler's timer checks
  // liveness every heartbeat/4 = 2.5 s; each step lets it run and park again,
  // so the first step at which a1 is LOST is exact, on any machine.
  Recorder& rec = listeners_["a0"];
  auto a1_lost = [&] {
    for (const auto& info : scheduler_->ListAgents("ap-south-1")) {
      if (info.agent_id() == "a1") return info.state() == v1::LOST;
    }
    return false;
  };
  absl::Duration elapsed;
  while (!a1_lost() && elapsed < absl::Seconds(60)) {
    ASSERT_TRUE(testing::StepAndSettle(&clock_, 1, absl::Milliseconds(2500)));
    elapsed += absl::Milliseconds(2500);
    scheduler_->AgentHeartbeat("a0", v1::Heartbeat());
  }
  // Liveness timeout 2 x 10 s: lost at the first check past it.
  EXPECT_EQ(elapsed, absl::Milliseconds(22500));
  {
    // Its work was pushed to a0 by the same check.
    absl::MutexLock lock(&rec.mu);
    EXPECT_EQ(rec.latest.assignments_size(), 8);
  }
  for (const auto& info : scheduler_->ListAgents("ap-south-1")) {
    EXPECT_EQ(info.state(), info.agent_id() == "a1" ? v1::LOST : v1::LIVE);
  }
}

// An agent that said goodbye is DRAINED, not LOST, even without
// heartbeats; its work moves to the others; it is forgotten after
// forget_drained_after (default 1h) and LIVE again if it comes back first.
TEST_F(SchedulerTest, DrainedAgentIsNotLostAndIsForgottenLater) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 4)).ok());
  const std::string r = "eu-west-1";
  Connect("a0", r);
  Connect("a1", r);
  Connect("a2", r);
  ASSERT_GT(scheduler_->AssignmentsFor("a1").assignments_size(), 0);
  scheduler_->AgentDrained("a1", &listeners_["a1"]);
  scheduler_->AgentDisconnected("a1", &listeners_["a1"]);
  scheduler_->AgentDrained("a2", &listeners_["a2"]);
  scheduler_->AgentDisconnected("a2", &listeners_["a2"]);
  // Everything (4 sizes x 2 modes) moved to a0.
  EXPECT_EQ(scheduler_->AssignmentsFor("a0").assignments_size(), 8);
  auto states = [&] {
    std::map<std::string, v1::AgentState> out;
    for (const auto& info : scheduler_->ListAgents(r)) {
      out[info.agent_id()] = info.state();
    }
    return out;
  };
  EXPECT_EQ(states()["a1"], v1::DRAINED);
  // Half the retention without heartbeats from a1: still DRAINED.
  clock_.AdvanceTime(absl::Minutes(30));
  scheduler_->AgentHeartbeat("a0", v1::Heartbeat());
  scheduler_->CheckLiveness();
  EXPECT_EQ(states()["a1"], v1::DRAINED);
  EXPECT_EQ(states()["a2"], v1::DRAINED);
  // a2 comes back (same id, as a StatefulSet pod does): LIVE again.
  Connect("a2", r);
  EXPECT_EQ(states()["a2"], v1::LIVE);
  clock_.AdvanceTime(absl::Minutes(31));
  scheduler_->AgentHeartbeat("a0", v1::Heartbeat());
  scheduler_->AgentHeartbeat("a2", v1::Heartbeat());
  scheduler_->CheckLiveness();
  const auto after = states();
  EXPECT_EQ(after.count("a1"), 0u) << "a drained agent is forgotten";
  EXPECT_EQ(after.count("a2"), 1u) << "an agent that came back is kept";
}

TEST_F(SchedulerTest, ReportsRegionsWithoutAgents) {
  Connect("a0", "us-east-1");
  auto resp = scheduler_->ApplySchedules(Fleet(1, 2));
  ASSERT_TRUE(resp.ok());
  std::set<std::string> lonely(resp->regions_without_agents().begin(),
                               resp->regions_without_agents().end());
  EXPECT_EQ(lonely, (std::set<std::string>{"eu-west-1", "ap-south-1"}));
  EXPECT_EQ(scheduler_->RegionsWithoutAgents().size(), 2u);
  auto counts = scheduler_->AgentCounts();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].count, 1);
}

TEST_F(SchedulerTest, TargetRoleReachesEveryAssignmentAndIsValidated) {
  v1::ApplySchedulesRequest req = Fleet(1, 2);
  req.mutable_targets(0)->set_role_arn("arn:aws:iam::12345:role/short");
  auto bad = scheduler_->ApplySchedules(req);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("targets[0].role_arn: "),
            std::string::npos)
      << bad.status();
  EXPECT_NE(bad.status().message().find("12 digits"), std::string::npos)
      << bad.status();

  const std::string role = "arn:aws:iam::210987654321:role/canary";
  req.mutable_targets(0)->set_role_arn(role);
  ASSERT_TRUE(scheduler_->ApplySchedules(req).ok());
  Connect("a", kRegions[0]);
  v1::AssignmentSet set = scheduler_->AssignmentsFor("a");
  ASSERT_EQ(set.assignments_size(), 4);
  for (const auto& a : set.assignments()) EXPECT_EQ(a.role_arn(), role);
  // Without a role (or after removing it) the agent's own credentials sign.
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 2)).ok());
  set = scheduler_->AssignmentsFor("a");
  ASSERT_EQ(set.assignments_size(), 4);
  for (const auto& a : set.assignments()) EXPECT_EQ(a.role_arn(), "");
}

TEST_F(SchedulerTest, RejectsBadSchedulesAndPersists) {
  v1::ApplySchedulesRequest req = Fleet(1, 2);
  req.mutable_schedules(0)->set_target("nope");
  auto r = scheduler_->ApplySchedules(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("schedules[0].target"),
            std::string::npos);
  req = Fleet(1, 2);
  req.mutable_schedules(0)->add_regions("mars-1");
  r = scheduler_->ApplySchedules(req);
  EXPECT_NE(r.status().message().find("schedules[0].regions[0]"),
            std::string::npos)
      << r.status();

  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(2, 2)).ok());
  auto again = scheduler_->ApplySchedules(Fleet(2, 2));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->unchanged_size(), 2);
  v1::ApplySchedulesRequest prune = Fleet(1, 2);
  prune.set_prune(true);
  auto pruned = scheduler_->ApplySchedules(prune);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->deleted_size(), 1);
  EXPECT_EQ(store_->LoadFleet()->schedules_size(), 1);
  EXPECT_EQ(scheduler_->DeleteSchedule("zzz").code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary

namespace fleetcanary {
namespace controller {
namespace {

// Size rotation: each size of the ladder gets one turn of the platform
// period in sizes_size(), at that many times the rate.
TEST_F(SchedulerTest, SizeRotationAssignsTurnsAtTheLadderTimesTheRate) {
  v1::ApplySchedulesRequest req = Fleet(1, 4);
  req.mutable_schedules(0)->set_size_rotation(true);
  ASSERT_TRUE(scheduler_->ApplySchedules(req).ok());
  Connect("a0", "us-east-1");
  const v1::AssignmentSet set = scheduler_->AssignmentsFor("a0");
  ASSERT_EQ(set.assignments_size(), 8);
  std::set<uint32_t> slots;
  for (const v1::Assignment& a : set.assignments()) {
    EXPECT_EQ(a.rotation_slots(), 4u);
    EXPECT_EQ(a.rotation_period().seconds(), 60);  // The default period.
    // Rate 0.5/s per stream, four sizes: every 0.5 s during its turn.
    EXPECT_EQ(a.interval().seconds(), 0);
    EXPECT_EQ(a.interval().nanos(), 500000000);
    // The slot is the size's place in the ladder: 2 << (2 * slot).
    EXPECT_EQ(a.size_bytes(), uint64_t{2} << (2 * a.rotation_slot()));
    slots.insert(a.rotation_slot());
  }
  EXPECT_EQ(slots, (std::set<uint32_t>{0, 1, 2, 3}));
  // Without rotation nothing changes.
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 4)).ok());
  const v1::AssignmentSet plain = scheduler_->AssignmentsFor("a0");
  for (const v1::Assignment& a : plain.assignments()) {
    EXPECT_EQ(a.rotation_slots(), 0u);
    EXPECT_EQ(a.interval().seconds(), 2);
  }
}

// A paused agent (silent for longer than the liveness timeout) is LOST and
// its stream is told to close; if its heartbeat still arrives on the open
// stream it is LIVE again at once, with its assignments, and the time it
// spent LOST is counted.
TEST_F(SchedulerTest, LostAgentThatHeartbeatsAgainIsLiveWithItsWork) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 4)).ok());
  Connect("a0", "us-east-1");
  const int mine = scheduler_->AssignmentsFor("a0").assignments_size();
  ASSERT_EQ(mine, 8);
  // Paused for 2x the liveness timeout (20 s with a 10 s heartbeat).
  clock_.AdvanceTime(absl::Seconds(40));
  scheduler_->CheckLiveness();
  EXPECT_EQ(scheduler_->ListAgents("us-east-1")[0].state(), v1::LOST);
  EXPECT_EQ(scheduler_->AssignmentsFor("a0").assignments_size(), 0);
  {
    absl::MutexLock lock(&listeners_["a0"].mu);
    EXPECT_EQ(listeners_["a0"].lost, 1);  // Its stream is closed.
  }
  EXPECT_EQ(metrics_.counter("agents_lost_total"), 1);
  // It resumes and heartbeats on the still-open stream.
  clock_.AdvanceTime(absl::Seconds(2));
  scheduler_->AgentHeartbeat("a0", v1::Heartbeat());
  EXPECT_EQ(scheduler_->ListAgents("us-east-1")[0].state(), v1::LIVE);
  EXPECT_EQ(scheduler_->AssignmentsFor("a0").assignments_size(), mine);
  {
    absl::MutexLock lock(&listeners_["a0"].mu);
    EXPECT_EQ(listeners_["a0"].latest.assignments_size(), mine);
  }
  EXPECT_EQ(metrics_.counter("agents_recovered_total"), 1);
  EXPECT_EQ(metrics_.counter("agent_lost_seconds_total"), 2);
}

// A stream the controller stopped reading (flow control) is not silence:
// the session says so every heartbeat interval and the agent stays LIVE. A
// stale stream of the same agent does not count, and the agent's reported
// last heartbeat is not moved.
TEST_F(SchedulerTest, AgentWhoseStreamTheControllerPausedStaysLive) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 2)).ok());
  Connect("a0", "us-east-1");
  const auto connected =
      scheduler_->ListAgents("us-east-1")[0].last_heartbeat();
  Recorder stale;
  for (int i = 0; i < 6; ++i) {  // 60 s: three liveness timeouts.
    clock_.AdvanceTime(absl::Seconds(10));
    scheduler_->AgentStreamPaused("a0", &listeners_["a0"]);
    scheduler_->CheckLiveness();
  }
  v1::AgentInfo info = scheduler_->ListAgents("us-east-1")[0];
  EXPECT_EQ(info.state(), v1::LIVE);
  EXPECT_EQ(info.last_heartbeat().seconds(), connected.seconds());
  EXPECT_EQ(metrics_.counter("agents_lost_total"), 0);
  for (int i = 0; i < 3; ++i) {
    clock_.AdvanceTime(absl::Seconds(10));
    scheduler_->AgentStreamPaused("a0", &stale);
    scheduler_->CheckLiveness();
  }
  EXPECT_EQ(scheduler_->ListAgents("us-east-1")[0].state(), v1::LOST);
  // Once LOST, only a heartbeat read from the agent brings it back.
  scheduler_->AgentStreamPaused("a0", &listeners_["a0"]);
  EXPECT_EQ(scheduler_->ListAgents("us-east-1")[0].state(), v1::LOST);
}

// Same, when it comes back by reconnecting.
TEST_F(SchedulerTest, LostAgentThatReconnectsIsCountedBack) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 2)).ok());
  Connect("a0", "eu-west-1");
  clock_.AdvanceTime(absl::Seconds(25));
  scheduler_->CheckLiveness();
  scheduler_->AgentDisconnected("a0", &listeners_["a0"]);
  ASSERT_EQ(scheduler_->ListAgents("eu-west-1")[0].state(), v1::LOST);
  clock_.AdvanceTime(absl::Seconds(3));
  Connect("a0", "eu-west-1");
  EXPECT_EQ(scheduler_->ListAgents("eu-west-1")[0].state(), v1::LIVE);
  EXPECT_EQ(scheduler_->AssignmentsFor("a0").assignments_size(), 4);
  EXPECT_EQ(metrics_.counter("agents_lost_total"), 1);
  EXPECT_EQ(metrics_.counter("agents_recovered_total"), 1);
  EXPECT_EQ(metrics_.counter("agent_lost_seconds_total"), 3);
}

TEST_F(SchedulerTest, WasAssignedKnowsOnlyTheAgentsOwnStreams) {
  ASSERT_TRUE(scheduler_->ApplySchedules(Fleet(1, 1)).ok());
  Connect("a0", "us-east-1");
  const v1::Assignment a = scheduler_->AssignmentsFor("a0").assignments(0);
  v1::Outcome o;
  o.set_schedule_id(a.schedule_id());
  o.set_target(a.target());
  o.set_mode(a.mode());
  o.set_requested_bytes(a.size_bytes());
  EXPECT_TRUE(scheduler_->WasAssigned("a0", o));
  EXPECT_FALSE(scheduler_->WasAssigned("someone-else", o));
  o.set_requested_bytes(a.size_bytes() + 1);
  EXPECT_FALSE(scheduler_->WasAssigned("a0", o));
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
