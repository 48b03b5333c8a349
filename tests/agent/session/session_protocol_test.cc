// The session protocol driven by hand: controller messages in, agent
// messages out, time from a SimulatedClock, a real (temporary) outbox.
#include "agent/session/session_protocol.h"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto/time_convert.h"
#include "common/time/clock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace agent {
namespace {

class RecordingSink : public AssignmentSink {
 public:
  void OnAssignments(const v1::AssignmentSet& set) override {
    versions.push_back(set.version());
  }
  std::vector<uint64_t> versions;
};

v1::ControllerMessage Welcome(uint64_t applied,
                              absl::Duration heartbeat = absl::Seconds(5)) {
  v1::ControllerMessage m;
  m.mutable_welcome()->set_controller_id("c1");
  m.mutable_welcome()->set_applied_sequence(applied);
  *m.mutable_welcome()->mutable_heartbeat_interval() =
      DurationToProto(heartbeat);
  return m;
}

v1::ControllerMessage Ack(uint64_t applied) {
  v1::ControllerMessage m;
  m.mutable_ack()->set_applied_sequence(applied);
  return m;
}

// Outcome batches among `messages`, as (first sequence, count).
std::vector<std::pair<uint64_t, int>> Batches(
    const std::vector<v1::AgentMessage>& messages) {
  std::vector<std::pair<uint64_t, int>> out;
  for (const v1::AgentMessage& m : messages) {
    if (!m.has_outcomes()) continue;
    out.emplace_back(m.outcomes().first_sequence(),
                     m.outcomes().outcomes_size());
  }
  return out;
}

int CountHeartbeats(const std::vector<v1::AgentMessage>& messages) {
  int n = 0;
  for (const v1::AgentMessage& m : messages) n += m.has_heartbeat();
  return n;
}

class SessionProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(
        ::testing::TempDir(), "/session_outbox_", getpid(), "_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".db");
    Cleanup();
    OutboxOptions o;
    o.path = path_;
    auto box = Outbox::Create(o);
    ASSERT_TRUE(box.ok()) << box.status();
    outbox_ = std::move(*box);
    options_.hello.set_agent_id("agent-1");
    options_.hello.set_region("eu-west-1");
    options_.heartbeat_interval = absl::Seconds(10);
    options_.welcome_timeout = absl::Seconds(3);
  }
  void TearDown() override {
    protocol_.reset();
    outbox_.reset();
    Cleanup();
  }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm", ".lost", ".reserve"}) {
      std::remove((path_ + suffix).c_str());
    }
  }
  void Append(int n, size_t detail_bytes = 0) {
    for (int i = 0; i < n; ++i) {
      v1::Outcome o;
      o.set_probe_id(absl::StrCat("probe-", i));
      o.set_detail(std::string(detail_bytes, 'x'));
      ASSERT_TRUE(outbox_->Append(o).ok());
    }
  }
  SessionProtocol& Make() {
    protocol_ =
        std::make_unique<SessionProtocol>(options_, outbox_.get(), &sink_);
    return *protocol_;
  }
  absl::Duration Now() { return clock_.MonotonicNow(); }
  std::vector<v1::AgentMessage> Poll(SessionInputs inputs = {}) {
    return protocol_->Poll(Now(), clock_.Now(), std::move(inputs));
  }
  // StartStream + Welcome(applied).
  SessionProtocol& Welcomed(uint64_t applied) {
    SessionProtocol& p = protocol_ ? *protocol_ : Make();
    p.StartStream(Now());
    EXPECT_TRUE(p.OnControllerMessage(Welcome(applied), Now()).ok());
    return p;
  }

  std::string path_;
  std::unique_ptr<Outbox> outbox_;
  SessionProtocolOptions options_;
  RecordingSink sink_;
  SimulatedClock clock_;
  std::unique_ptr<SessionProtocol> protocol_;
};

TEST_F(SessionProtocolTest, HelloCarriesIdentityAndAckedSequence) {
  Append(5);
  ASSERT_TRUE(outbox_->Ack(2).ok());
  SessionProtocol& p = Make();
  const v1::AgentMessage hello = p.StartStream(Now());
  ASSERT_TRUE(hello.has_hello());
  EXPECT_EQ(hello.hello().agent_id(), "agent-1");
  EXPECT_EQ(hello.hello().region(), "eu-west-1");
  EXPECT_EQ(hello.hello().last_acked_sequence(), 2u);
  EXPECT_EQ(p.stats().acked_sequence, 2u);
  EXPECT_FALSE(p.CanSend());
  EXPECT_TRUE(Poll().empty());  // Nothing before Welcome.
}

TEST_F(SessionProtocolTest, WelcomeDropsAppliedAndResendsTheRest) {
  Append(10);
  SessionProtocol& p = Welcomed(4);
  EXPECT_TRUE(p.CanSend());
  EXPECT_EQ(outbox_->stats().acked_sequence, 4u);
  EXPECT_EQ(outbox_->stats().depth, 6u);
  EXPECT_EQ(Batches(Poll()), (std::vector<std::pair<uint64_t, int>>{{5, 6}}));
  EXPECT_EQ(p.stats().connects_total, 1u);

  // The stream breaks before the Ack; the controller applied up to 7.
  EXPECT_FALSE(p.EndStream());
  EXPECT_FALSE(p.stats().welcomed);
  Welcomed(7);
  EXPECT_EQ(Batches(Poll()), (std::vector<std::pair<uint64_t, int>>{{8, 3}}));
  EXPECT_EQ(p.stats().connects_total, 2u);
  EXPECT_EQ(p.stats().outcomes_sent_total, 9u);
}

TEST_F(SessionProtocolTest, BatchesRespectCountAndByteLimits) {
  options_.max_batch_outcomes = 3;
  options_.max_unacked_batches = 100;
  Append(10);
  Welcomed(0);
  EXPECT_EQ(Batches(Poll()), (std::vector<std::pair<uint64_t, int>>{
                                 {1, 3}, {4, 3}, {7, 3}, {10, 1}}));

  // Bytes: ~1 KB outcomes, 2.5 KB per batch -> two per batch.
  options_.max_batch_outcomes = 100;
  options_.max_batch_bytes = 2500;
  protocol_.reset();
  Append(5, 1000);
  Welcomed(10);
  EXPECT_EQ(Batches(Poll()),
            (std::vector<std::pair<uint64_t, int>>{{11, 2}, {13, 2}, {15, 1}}));
}

TEST_F(SessionProtocolTest, UnackedWindowLimitsBatchesInFlight) {
  options_.max_batch_outcomes = 2;
  options_.max_unacked_batches = 2;
  Append(9);
  SessionProtocol& p = Welcomed(0);
  EXPECT_EQ(Batches(Poll()),
            (std::vector<std::pair<uint64_t, int>>{{1, 2}, {3, 2}}));
  EXPECT_EQ(p.unacked_batches(), 2u);
  EXPECT_TRUE(Batches(Poll()).empty());  // Window full.

  // Acking part of the second batch frees only the first.
  ASSERT_TRUE(p.OnControllerMessage(Ack(3), Now()).ok());
  EXPECT_EQ(p.unacked_batches(), 1u);
  EXPECT_EQ(Batches(Poll()), (std::vector<std::pair<uint64_t, int>>{{5, 2}}));
  ASSERT_TRUE(p.OnControllerMessage(Ack(6), Now()).ok());
  EXPECT_EQ(Batches(Poll()),
            (std::vector<std::pair<uint64_t, int>>{{7, 2}, {9, 1}}));
  EXPECT_EQ(p.stats().batches_sent_total, 5u);
}

TEST_F(SessionProtocolTest, AckDeletesFromTheOutbox) {
  Append(6);
  SessionProtocol& p = Welcomed(0);
  Poll();
  EXPECT_EQ(outbox_->stats().depth, 6u);
  ASSERT_TRUE(p.OnControllerMessage(Ack(4), Now()).ok());
  EXPECT_EQ(outbox_->stats().depth, 2u);
  EXPECT_EQ(outbox_->stats().acked_sequence, 4u);
  EXPECT_EQ(p.stats().acked_sequence, 4u);
  EXPECT_EQ(p.stats().acks_total, 1u);
  // An older Ack is harmless and changes nothing.
  ASSERT_TRUE(p.OnControllerMessage(Ack(2), Now()).ok());
  EXPECT_EQ(outbox_->stats().acked_sequence, 4u);
  EXPECT_EQ(p.stats().acked_sequence, 4u);
  ASSERT_TRUE(p.OnControllerMessage(Ack(6), Now()).ok());
  EXPECT_EQ(outbox_->stats().depth, 0u);
  EXPECT_EQ(p.unacked_batches(), 0u);
}

TEST_F(SessionProtocolTest, HeartbeatsFollowTheControllersInterval) {
  options_.in_flight = [] { return 7u; };
  Append(3);
  SessionProtocol& p = Welcomed(1);  // Controller interval: 5 s.
  EXPECT_EQ(p.heartbeat_interval(), absl::Seconds(5));
  std::vector<v1::AgentMessage> out = Poll();
  ASSERT_EQ(CountHeartbeats(out), 1);  // Due at Welcome.
  const v1::Heartbeat& h = out.back().heartbeat();
  EXPECT_EQ(TimeFromProto(h.time()), clock_.Now());
  EXPECT_EQ(h.outbox_depth(), 2u);
  EXPECT_EQ(h.in_flight(), 7u);
  EXPECT_EQ(CountHeartbeats(Poll()), 0);
  EXPECT_EQ(p.NextDeadline(), Now() + absl::Seconds(5));

  clock_.AdvanceTime(absl::Seconds(4));
  EXPECT_EQ(CountHeartbeats(Poll()), 0);
  clock_.AdvanceTime(absl::Seconds(1));
  EXPECT_EQ(CountHeartbeats(Poll()), 1);
  EXPECT_EQ(p.NextDeadline(), Now() + absl::Seconds(5));
}

TEST_F(SessionProtocolTest, SilenceForTwoHeartbeatsClosesTheStream) {
  SessionProtocol& p = Welcomed(0);  // 5 s heartbeats: 10 s of silence.
  Poll();
  clock_.AdvanceTime(absl::Seconds(8));
  ASSERT_TRUE(p.OnControllerMessage(Ack(0), Now()).ok());  // Alive.
  clock_.AdvanceTime(absl::Seconds(10));
  EXPECT_TRUE(p.CheckDeadlines(Now()).ok());
  Poll();  // Heartbeats are due; the deadline is the silence one.
  EXPECT_EQ(p.NextDeadline(), Now());
  clock_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_EQ(p.CheckDeadlines(Now()).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SessionProtocolTest, NoWelcomeInTimeClosesTheStream) {
  SessionProtocol& p = Make();
  p.StartStream(Now());
  EXPECT_EQ(p.NextDeadline(), Now() + absl::Seconds(3));
  clock_.AdvanceTime(absl::Seconds(3));
  EXPECT_TRUE(p.CheckDeadlines(Now()).ok());
  clock_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_EQ(p.CheckDeadlines(Now()).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SessionProtocolTest, AssignmentsAndAdhocProbesAreDelivered) {
  std::vector<std::string> adhoc;
  options_.on_adhoc_probe = [&](const v1::AdhocProbe& a) {
    adhoc.push_back(a.adhoc_id());
  };
  SessionProtocol& p = Welcomed(0);
  v1::ControllerMessage a;
  a.mutable_assignments()->set_version(42);
  ASSERT_TRUE(p.OnControllerMessage(a, Now()).ok());
  v1::ControllerMessage probe;
  probe.mutable_adhoc_probe()->set_adhoc_id("adhoc-1");
  ASSERT_TRUE(p.OnControllerMessage(probe, Now()).ok());
  EXPECT_EQ(sink_.versions, std::vector<uint64_t>{42});
  EXPECT_EQ(adhoc, std::vector<std::string>{"adhoc-1"});
  EXPECT_EQ(p.stats().assignment_version, 42u);
  std::vector<v1::AgentMessage> out = Poll();
  ASSERT_EQ(CountHeartbeats(out), 1);
  EXPECT_EQ(out.back().heartbeat().assignment_version(), 42u);
}

TEST_F(SessionProtocolTest, AdhocResultsGoOutBeforeBatches) {
  Append(1);
  Welcomed(0);
  SessionInputs in;
  in.adhoc_results.emplace_back().set_adhoc_id("r1");
  in.adhoc_results.emplace_back().set_adhoc_id("r2");
  std::vector<v1::AgentMessage> out = Poll(std::move(in));
  ASSERT_GE(out.size(), 3u);
  EXPECT_EQ(out[0].adhoc_result().adhoc_id(), "r1");
  EXPECT_EQ(out[1].adhoc_result().adhoc_id(), "r2");
  EXPECT_TRUE(out[2].has_outcomes());
}

// Drops after the last batch and heartbeat reach the controller before the
// stream ends (it stores the agent's dropped count from heartbeats).
TEST_F(SessionProtocolTest, GoodbyeFollowsAHeartbeatWithTheFinalDroppedCount) {
  outbox_.reset();
  Cleanup();
  OutboxOptions o;
  o.path = path_;
  o.max_bytes = 64 << 10;
  auto box = Outbox::Create(o);
  ASSERT_TRUE(box.ok()) << box.status();
  outbox_ = std::move(*box);
  SessionProtocol& p = Welcomed(0);
  Poll();             // The heartbeat due at Welcome.
  Append(200, 2048);  // About 400 KiB into a 64 KiB outbox, nothing sent.
  const uint64_t dropped = outbox_->stats().dropped_total;
  ASSERT_GT(dropped, 0u);
  SessionInputs in;
  in.goodbye_reason = "shutdown";
  const std::vector<v1::AgentMessage> out = Poll(std::move(in));
  ASSERT_EQ(out.size(), 2u);
  ASSERT_TRUE(out[0].has_heartbeat());
  EXPECT_EQ(out[0].heartbeat().dropped_total(), dropped);
  EXPECT_TRUE(out[1].has_goodbye());
  EXPECT_TRUE(p.goodbye_sent());
}

TEST_F(SessionProtocolTest, GoodbyeIsTheLastMessage) {
  Append(4);
  SessionProtocol& p = Welcomed(1);
  SessionInputs in;
  in.goodbye_reason = "shutdown";
  in.adhoc_results.emplace_back().set_adhoc_id("late");
  std::vector<v1::AgentMessage> out = Poll(std::move(in));
  ASSERT_EQ(out.size(), 2u);
  // A last heartbeat carries the final counts, then the Goodbye.
  ASSERT_TRUE(out[0].has_heartbeat());
  EXPECT_EQ(out[0].heartbeat().outbox_depth(), 3u);
  ASSERT_TRUE(out[1].has_goodbye());
  EXPECT_EQ(out[1].goodbye().reason(), "shutdown");
  EXPECT_EQ(out[1].goodbye().outbox_depth(), 3u);
  EXPECT_TRUE(p.goodbye_sent());
  EXPECT_FALSE(p.CanSend());
  clock_.AdvanceTime(absl::Seconds(5));
  EXPECT_TRUE(Poll().empty());  // Not even a heartbeat.
  // Only the silence deadline remains.
  EXPECT_EQ(p.NextDeadline(), Now() + absl::Seconds(5));
  EXPECT_TRUE(p.EndStream());  // The controller closed: goodbye taken.
}

TEST_F(SessionProtocolTest, PlatformQueueIsBoundedAndCountsDrops) {
  SessionQueue q(5);
  v1::PlatformMetricBatch batch;
  for (int i = 0; i < 7; ++i) {
    batch.add_samples()->set_metric(absl::StrCat("m", i));
  }
  q.AddPlatformMetrics(batch);
  EXPECT_EQ(q.platform_samples(), 5u);
  EXPECT_EQ(q.platform_dropped_total(), 2u);
  SessionInputs in = q.Take();
  ASSERT_EQ(in.platform_samples.size(), 5u);
  EXPECT_EQ(in.platform_samples.front().metric(), "m2");  // Oldest dropped.
  EXPECT_EQ(in.platform_samples.back().metric(), "m6");
  EXPECT_EQ(q.platform_samples(), 0u);
  EXPECT_FALSE(in.goodbye_reason.has_value());

  q.RequestGoodbye("bye");
  EXPECT_EQ(q.Take().goodbye_reason, "bye");
  EXPECT_EQ(q.Take().goodbye_reason, "bye");  // Stays requested.
}

TEST_F(SessionProtocolTest, AdhocQueueIsBounded) {
  SessionQueue q(1);
  for (size_t i = 0; i < SessionQueue::kMaxAdhocResults + 5; ++i) {
    q.AddAdhocResult(v1::AdhocResult());
  }
  EXPECT_EQ(q.Take().adhoc_results.size(), SessionQueue::kMaxAdhocResults);
  EXPECT_FALSE(q.has_adhoc_results());
}

TEST_F(SessionProtocolTest, PlatformSamplesAreSentInMessagesOfAThousand) {
  SessionProtocol& p = Welcomed(0);
  SessionInputs in;
  in.platform_samples.resize(2500);
  std::vector<int> sizes;
  for (const v1::AgentMessage& m : Poll(std::move(in))) {
    if (m.has_platform_metrics()) {
      sizes.push_back(m.platform_metrics().samples_size());
    }
  }
  EXPECT_EQ(sizes, (std::vector<int>{1000, 1000, 500}));
  EXPECT_EQ(p.stats().platform_samples_sent_total, 2500u);
}

TEST_F(SessionProtocolTest, MessagesBeforeWelcomeAreProtocolErrors) {
  Append(3);
  SessionProtocol& p = Make();
  p.StartStream(Now());
  const absl::Status s = p.OnControllerMessage(Ack(3), Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("ack before Welcome"), absl::string_view::npos)
      << s;
  EXPECT_EQ(outbox_->stats().acked_sequence, 0u);  // Not applied.
  // The stream is finished: even a Welcome is refused now.
  EXPECT_FALSE(p.OnControllerMessage(Welcome(0), Now()).ok());
  EXPECT_FALSE(p.CanSend());

  // A new stream starts clean; assignments and probes before Welcome are
  // refused too.
  p.StartStream(Now());
  v1::ControllerMessage a;
  a.mutable_assignments()->set_version(1);
  EXPECT_EQ(p.OnControllerMessage(a, Now()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(sink_.versions.empty());
  p.StartStream(Now());
  v1::ControllerMessage probe;
  probe.mutable_adhoc_probe()->set_adhoc_id("early");
  EXPECT_EQ(p.OnControllerMessage(probe, Now()).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionProtocolTest, SecondWelcomeIsAProtocolError) {
  SessionProtocol& p = Welcomed(0);
  EXPECT_EQ(p.OnControllerMessage(Welcome(0), Now()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(p.CanSend());
  EXPECT_TRUE(Poll().empty());
}

TEST_F(SessionProtocolTest, AckOfOutcomesNeverWrittenIsAnError) {
  options_.max_batch_outcomes = 2;
  options_.max_unacked_batches = 1;
  Append(5);
  SessionProtocol& p = Welcomed(0);
  EXPECT_EQ(Batches(Poll()), (std::vector<std::pair<uint64_t, int>>{{1, 2}}));
  // Beyond this stream's batches but written (an earlier stream sent them
  // and the controller committed them late): acknowledged.
  ASSERT_TRUE(p.OnControllerMessage(Ack(4), Now()).ok());
  EXPECT_EQ(outbox_->stats().acked_sequence, 4u);
  EXPECT_EQ(p.unacked_batches(), 0u);
  // Beyond anything ever written: an error, the outbox untouched.
  const absl::Status s = p.OnControllerMessage(Ack(6), Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_EQ(outbox_->stats().acked_sequence, 4u);
  EXPECT_EQ(outbox_->stats().depth, 1u);
  EXPECT_FALSE(p.CanSend());
}

TEST_F(SessionProtocolTest, HeartbeatDrainAndEmptyMessagesMayComeFirst) {
  SessionProtocol& p = Make();
  p.StartStream(Now());
  EXPECT_TRUE(p.OnControllerMessage(v1::ControllerMessage(), Now()).ok());
  v1::ControllerMessage heartbeat;
  *heartbeat.mutable_heartbeat()->mutable_time() = TimeToProto(clock_.Now());
  EXPECT_TRUE(p.OnControllerMessage(heartbeat, Now()).ok());
  v1::ControllerMessage drain;
  drain.mutable_drain()->set_reason("shutdown");
  EXPECT_TRUE(p.OnControllerMessage(drain, Now()).ok());
  EXPECT_TRUE(p.OnControllerMessage(Welcome(0), Now()).ok());
  EXPECT_TRUE(p.OnControllerMessage(v1::ControllerMessage(), Now()).ok());
  EXPECT_TRUE(p.CanSend());
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
