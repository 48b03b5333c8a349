// AgentSession.Connect over a real loopback gRPC server: the session hub and
// its callback service, with the in-memory store. The hub's and the
// scheduler's timers run on a SimulatedClock: heartbeats and liveness checks
// happen only when a test advances it, never because the machine was slow.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controller/fleet/scheduler.h"
#include "controller/ingest/ingest.h"
#include "controller/session/agent_session_service.h"
#include "controller/session/session_hub.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/held_batches.h"
#include "tests/testing/sim_time.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace controller {
namespace {

using Stream =
    grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = CreateMemoryStore();
    metrics_ = std::make_unique<ControllerMetrics>();
    ingest_ = *Ingest::Create(IngestOptionsForTest(), store_.get(),
                              metrics_.get(), Clock::Real());
    SchedulerOptions so;
    so.heartbeat_interval = absl::Milliseconds(200);
    so.target_addresses.allow_loopback = true;  // The target is on loopback.
    scheduler_ = *Scheduler::Create(so, store_.get(), &clock_);
    v1::ApplySchedulesRequest req;
    v1::Target* t = req.add_targets();
    t->set_name("canary");
    v1::RegionEndpoints* re = t->add_regions();
    re->set_region("r1");
    for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      v1::FunctionUrl* u = re->add_urls();
      u->set_mode(mode);
      u->set_url("http://127.0.0.1:1/");
    }
    v1::Schedule* s = req.add_schedules();
    s->set_id("s");
    s->set_target("canary");
    s->add_sizes(2);
    s->set_rate_per_second(1);
    ASSERT_TRUE(scheduler_->ApplySchedules(req).ok());
    SessionHubOptions ho;
    ho.heartbeat_interval = absl::Milliseconds(200);
    hub_ = *SessionHub::Create(ho, ingest_.get(), scheduler_.get(),
                               metrics_.get(), &clock_);
    service_ = std::make_unique<AgentSessionService>(hub_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_GT(port, 0);
    stub_ = v1::AgentSession::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    hub_->Shutdown();
    ingest_->Shutdown();
    scheduler_->Shutdown();
  }

  virtual IngestOptions IngestOptionsForTest() const { return {}; }

  static v1::AgentMessage Hello(const std::string& id) {
    v1::AgentMessage m;
    m.mutable_hello()->set_agent_id(id);
    m.mutable_hello()->set_region("r1");
    return m;
  }
  static v1::AgentMessage Batch(uint64_t first, int n) {
    v1::AgentMessage m;
    m.mutable_outcomes()->set_first_sequence(first);
    for (int i = 0; i < n; ++i) {
      v1::Outcome* o = m.mutable_outcomes()->add_outcomes();
      o->set_sequence(first + i);
      o->set_schedule_id("s");
      o->set_target("canary");
      o->set_mode(v1::BUFFERED);
      o->set_requested_bytes(2);
      o->set_outcome_class(v1::OK);
    }
    return m;
  }
  // Reads until a message of `kind` (skipping heartbeats/assignments).
  static bool ReadUntil(Stream* s, v1::ControllerMessage::MsgCase kind,
                        v1::ControllerMessage* out) {
    while (s->Read(out)) {
      if (out->msg_case() == kind) return true;
    }
    return false;
  }

  // Timer threads parked on clock_ between their runs: the scheduler's
  // liveness check and the hub's heartbeat tick.
  static constexpr int kTimers = 2;
  SimulatedClock clock_{absl::FromUnixSeconds(1700000000)};
  std::unique_ptr<Store> store_;
  std::unique_ptr<ControllerMetrics> metrics_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SessionHub> hub_;
  std::unique_ptr<AgentSessionService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AgentSession::Stub> stub_;
};

// The welcomed handler runs after Welcome went out and outside the
// session's locks, so it can send on that very session (the admin API
// re-sends missed cancels this way).
TEST_F(SessionTest, WelcomedHandlerCanSendOnTheNewSession) {
  SessionHub* hub = hub_.get();
  hub_->SetAgentWelcomedHandler([hub](const std::string& agent_id) {
    v1::ControllerMessage m;
    m.mutable_adhoc_probe()->set_adhoc_id("adhoc-1");
    m.mutable_adhoc_probe()->set_cancel(true);
    EXPECT_TRUE(hub->SendToAgent(agent_id, std::move(m)).ok());
  });
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("a1")));
  v1::ControllerMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.has_welcome());
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAdhocProbe, &m));
  EXPECT_EQ(m.adhoc_probe().adhoc_id(), "adhoc-1");
  EXPECT_TRUE(m.adhoc_probe().cancel());
  ctx.TryCancel();
}

TEST_F(SessionTest, WelcomeAssignmentsAndAckAfterCommit) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("a1")));
  v1::ControllerMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.has_welcome());  // Welcome comes first.
  EXPECT_EQ(m.welcome().applied_sequence(), 0u);
  EXPECT_EQ(m.welcome().heartbeat_interval().nanos(), 200000000);
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAssignments, &m));
  EXPECT_EQ(m.assignments().assignments_size(), 2);  // Both modes of size 2.

  ASSERT_TRUE(stream->Write(Batch(1, 5)));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAck, &m));
  EXPECT_EQ(m.ack().applied_sequence(), 5u);
  // The Ack means committed.
  auto totals = store_->LoadStreamTotals();
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_EQ((*totals)[0].stats.probes(), 5u);
  // A resend is acknowledged without being applied again.
  ASSERT_TRUE(stream->Write(Batch(3, 5)));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAck, &m));
  EXPECT_EQ(m.ack().applied_sequence(), 7u);
  EXPECT_EQ((*store_->LoadStreamTotals())[0].stats.probes(), 7u);
  EXPECT_EQ(metrics_->counter(kIngestDuplicates), 3);
  EXPECT_EQ(metrics_->sessions_active(), 1);
  // A heartbeat from the controller arrives once the interval has passed.
  ASSERT_TRUE(
      testing::StepAndSettle(&clock_, kTimers, absl::Milliseconds(200)));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kHeartbeat, &m));

  stream->WritesDone();
  while (stream->Read(&m)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  // The closed session's agent is LOST and a reconnect resumes from 7.
  grpc::ClientContext ctx2;
  auto again = stub_->Connect(&ctx2);
  ASSERT_TRUE(again->Write(Hello("a1")));
  ASSERT_TRUE(again->Read(&m));
  EXPECT_EQ(m.welcome().applied_sequence(), 7u);
  again->WritesDone();
  while (again->Read(&m)) {
  }
  again->Finish();
}

TEST_F(SessionTest, FirstMessageMustBeHello) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Batch(1, 1)));
  v1::ControllerMessage m;
  while (stream->Read(&m)) {
  }
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("hello"), std::string::npos);
}

TEST_F(SessionTest, BadHelloAndBadBatchAreRefused) {
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Connect(&ctx);
    v1::AgentMessage hello = Hello("");
    ASSERT_TRUE(stream->Write(hello));
    v1::ControllerMessage m;
    while (stream->Read(&m)) {
    }
    const grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("hello.agent_id"), std::string::npos);
  }
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("a2")));
  ASSERT_TRUE(stream->Write(Batch(0, 2)));  // Sequence 0 is invalid.
  v1::ControllerMessage m;
  while (stream->Read(&m)) {
  }
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("first_sequence"), std::string::npos);
}

TEST_F(SessionTest, DrainAcknowledgesThenClosesAndRefusesNewStreams) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("a3")));
  v1::ControllerMessage m;
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAssignments, &m));
  ASSERT_TRUE(stream->Write(Batch(1, 3)));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAck, &m));
  hub_->Drain("test", absl::Seconds(5));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kDrain, &m));
  EXPECT_EQ(m.drain().reason(), "test");
  while (stream->Read(&m)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(hub_->active_sessions(), 0);
  grpc::ClientContext ctx2;
  auto refused = stub_->Connect(&ctx2);
  refused->Write(Hello("a4"));
  while (refused->Read(&m)) {
  }
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SessionTest, ASecondSessionForTheSameAgentFencesTheFirst) {
  grpc::ClientContext ctx1;
  auto first = stub_->Connect(&ctx1);
  ASSERT_TRUE(first->Write(Hello("twin")));
  v1::ControllerMessage m;
  ASSERT_TRUE(ReadUntil(first.get(), v1::ControllerMessage::kAssignments, &m));

  grpc::ClientContext ctx2;
  auto second = stub_->Connect(&ctx2);
  ASSERT_TRUE(second->Write(Hello("twin")));
  ASSERT_TRUE(ReadUntil(second.get(), v1::ControllerMessage::kAssignments, &m));
  EXPECT_EQ(m.assignments().assignments_size(), 2);
  // The first stream ends ABORTED, named as fenced; the metric counts it.
  while (first->Read(&m)) {
  }
  const grpc::Status s = first->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_NE(s.error_message().find("newer session"), std::string::npos);
  EXPECT_EQ(metrics_->counter("session_fenced_total"), 1);
  // The second keeps working.
  ASSERT_TRUE(second->Write(Batch(1, 2)));
  ASSERT_TRUE(ReadUntil(second.get(), v1::ControllerMessage::kAck, &m));
  EXPECT_EQ(m.ack().applied_sequence(), 2u);
  second->WritesDone();
  while (second->Read(&m)) {
  }
  second->Finish();
}

// An agent that says nothing after its hello gets the controller's
// heartbeats, and once the liveness timeout (2 heartbeat intervals) passes
// without a message its stream is closed so that it reconnects.
TEST_F(SessionTest, SilentAgentIsClosedAfterTheLivenessTimeout) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("mute")));
  v1::ControllerMessage m;
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAssignments, &m));
  ASSERT_TRUE(
      testing::StepAndSettle(&clock_, kTimers, absl::Milliseconds(200)));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kHeartbeat, &m));
  EXPECT_EQ(hub_->active_sessions(), 1);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        testing::StepAndSettle(&clock_, kTimers, absl::Milliseconds(200)));
  }
  while (stream->Read(&m)) {
  }
  const grpc::Status s = stream->Finish();
  // Whichever notices first closes it: the scheduler (UNAVAILABLE, agent
  // LOST) or the session's own check (DEADLINE_EXCEEDED).
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
              s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_code() << " " << s.error_message();
  EXPECT_NE(s.error_message().find("liveness"), std::string::npos)
      << s.error_message();
}

TEST_F(SessionTest, OutcomesOfStreamsNotAssignedAreCountedNotStored) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("forger")));
  v1::ControllerMessage m;
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAssignments, &m));
  // Two real outcomes, then three for streams never assigned to this agent:
  // another schedule, another size, and an ad-hoc run never dispatched.
  v1::AgentMessage b = Batch(1, 5);
  b.mutable_outcomes()->mutable_outcomes(2)->set_schedule_id("other");
  b.mutable_outcomes()->mutable_outcomes(3)->set_requested_bytes(1 << 20);
  b.mutable_outcomes()->mutable_outcomes(4)->set_adhoc_id("never-sent");
  ASSERT_TRUE(stream->Write(b));
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAck, &m));
  EXPECT_EQ(m.ack().applied_sequence(), 5u);
  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  uint64_t stored = 0;
  for (const auto& t : *totals) stored += t.stats.probes();
  EXPECT_EQ(stored, 2u);
  EXPECT_EQ(metrics_->counter("outcomes_rejected_total"), 3);
  stream->WritesDone();
  while (stream->Read(&m)) {
  }
  stream->Finish();
}

class SaturatedSessionTest : public SessionTest {
 protected:
  IngestOptions IngestOptionsForTest() const override {
    IngestOptions options;
    options.max_queued_outcomes = 10;
    return options;
  }
  void SetUp() override {
    SessionTest::SetUp();
    ingest_->AddObserver(&holder_);
  }

  // Outlives ingest's shutdown in TearDown.
  testing::HeldBatches holder_;
};

// While ingest is saturated the controller stops reading the agent's stream,
// so the agent's heartbeats wait unread. That is our backlog, not the
// agent's silence: after several liveness timeouts the agent is still LIVE
// with its stream open, and when ingest catches up its stream carries on.
TEST_F(SaturatedSessionTest, AgentPausedByFlowControlIsNotLost) {
  grpc::ClientContext ctx;
  auto stream = stub_->Connect(&ctx);
  ASSERT_TRUE(stream->Write(Hello("busy")));
  v1::ControllerMessage m;
  ASSERT_TRUE(ReadUntil(stream.get(), v1::ControllerMessage::kAssignments, &m));
  ASSERT_TRUE(stream->Write(Batch(1, 10)));  // Fills ingest to its limit.
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return metrics_->Snapshot().ingest.sessions_paused == 1; }));

  // Six heartbeat intervals: three liveness timeouts (2 intervals each).
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        testing::StepAndSettle(&clock_, kTimers, absl::Milliseconds(200)));
  }
  ASSERT_EQ(scheduler_->ListAgents("r1").size(), 1u);
  EXPECT_EQ(scheduler_->ListAgents("r1")[0].state(), v1::LIVE);
  EXPECT_EQ(hub_->active_sessions(), 1);
  EXPECT_GT(scheduler_->AssignmentsFor("busy").assignments_size(), 0);

  holder_.Drop();  // Ingest drains: reads resume.
  ASSERT_TRUE(stream->Write(Batch(11, 1)));
  while (ReadUntil(stream.get(), v1::ControllerMessage::kAck, &m) &&
         m.ack().applied_sequence() < 11) {
  }
  EXPECT_EQ(m.ack().applied_sequence(), 11u);
  EXPECT_EQ(scheduler_->ListAgents("r1")[0].state(), v1::LIVE);
  ctx.TryCancel();
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
