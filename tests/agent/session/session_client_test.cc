// The agent's session client over real loopback gRPC: its stream reactor and
// reconnect loop, against a controller replica that refuses every stream
// (a standby) and an address where nothing listens.
#include "agent/session/session_client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace agent {
namespace {

// Finishes every stream at once, as a standby replica does.
class RefusingReplica : public v1::AgentSession::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext*) override {
    ++refused_;
    auto* reactor = new Refusal;
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader"));
    return reactor;
  }
  int refused() const { return refused_.load(); }

 private:
  class Refusal : public grpc::ServerBidiReactor<v1::AgentMessage,
                                                 v1::ControllerMessage> {
    void OnDone() override { delete this; }
  };
  std::atomic<int> refused_{0};
};

class NoAssignments : public AssignmentSink {
 public:
  void OnAssignments(const v1::AssignmentSet&) override {}
};

// Every stream ends before or just after the client writes its Hello: the
// call fails on connect (nothing listens) or the replica finishes it at
// once. The client writes from its driver thread, outside gRPC's reactions;
// had it not held the stream (outside_ops_hold.h), gRPC could free the call
// between the stream's end and that write, and the write would corrupt the
// heap (an agent crashed this way mid-failover). Run under AddressSanitizer
// by the test suite's second pass, where such a write fails the test.
TEST(SessionClientTest, StreamsThatEndAtOnceAreNeverWrittenAfterTheirEnd) {
  RefusingReplica replica;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&replica);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_GT(port, 0);

  const std::string path =
      absl::StrCat(::testing::TempDir(), "/session_client_", getpid(), ".db");
  OutboxOptions outbox_options;
  outbox_options.path = path;
  auto outbox = Outbox::Create(outbox_options);
  ASSERT_TRUE(outbox.ok()) << outbox.status();

  SessionClientOptions options;
  options.controller_address = absl::StrCat(
      "127.0.0.1:", port, ",127.0.0.1:", testing::UnusedLoopbackPort());
  options.tls.insecure = true;
  options.hello.set_agent_id("a1");
  options.hello.set_region("us-east-1");
  options.reconnect_min = absl::Milliseconds(1);
  options.reconnect_max = absl::Milliseconds(1);
  options.seed = 7;
  NoAssignments sink;
  auto client =
      SessionClient::Create(options, outbox->get(), &sink, Clock::Real());
  ASSERT_TRUE(client.ok()) << client.status();

  constexpr uint64_t kStreams = 600;
  EXPECT_TRUE(testing::WaitUntil([&] {
    return (*client)->stats().reconnects_total >= kStreams;
  })) << (*client)->stats().reconnects_total
      << " streams ended";
  EXPECT_GE(replica.refused(), 100);
  EXPECT_FALSE((*client)->stats().connected);
  (*client)->Shutdown();
  client->reset();
  server->Shutdown();
  outbox->reset();
  for (const char* suffix : {"", "-wal", "-shm", ".lost", ".reserve"}) {
    std::remove((path + suffix).c_str());
  }
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
