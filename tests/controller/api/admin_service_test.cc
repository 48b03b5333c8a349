// CanaryAdmin over real gRPC (loopback, port 0): authorization, status
// conversion, RunProbe streaming, cancellation and deadlines reaching the
// agents within a second, request size bound, WatchVerdicts.
#include "controller/api/admin_service.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/config/loader.h"
#include "common/time/clock.h"
#include "controller/store/store.h"
#include "fleetcanary/v1/admin.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_adhoc_agents.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

constexpr char kViewer[] = "viewer-token-0123456789";
constexpr char kOperator[] = "operator-token-0123456789";

class NullListener : public AssignmentListener {
 public:
  void OnAssignments(const v1::AssignmentSet&) override {}
};

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = Clock::Real();
    store_ = CreateMemoryStore();
    scheduler_ = std::move(*Scheduler::Create({}, store_.get(), clock_));
    StoreVerdictSourceOptions vo;
    vo.poll_interval = absl::Milliseconds(20);
    verdicts_ = std::move(*CreateStoreVerdictSource(vo, store_.get(), clock_));
    agents_ = std::make_unique<testing::FakeAdhocAgents>(clock_);
    AdminCoreDeps d;
    d.scheduler = scheduler_.get();
    d.verdicts = verdicts_.get();
    d.clock = clock_;
    testing::FakeAdhocAgents* agents = agents_.get();
    d.send_adhoc = [agents](const std::string& a, const v1::AdhocProbe& p) {
      return agents->Send(a, p);
    };
    core_ = std::move(*AdminCore::Create({}, d));
    agents_->set_core(core_.get());
    v1::AdminTokens tokens;
    ASSERT_TRUE(
        ParseYamlToMessage(
            absl::StrCat("tokens:\n- {name: dash, role: viewer, token: ",
                         kViewer, "}\n- {name: ops, role: operator, ",
                         "token: ", kOperator, "}\n"),
            "tokens", &tokens)
            .ok());
    auth_ = std::move(*AdminAuthorizer::Create(tokens));
    service_ = CreateAdminService({}, core_.get(), auth_.get());
    closed_service_ = CreateAdminService({}, core_.get(), nullptr);
    address_ = Serve(service_.get(), &server_);
    closed_address_ = Serve(closed_service_.get(), &closed_server_);
    stub_ = v1::CanaryAdmin::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));

    v1::ApplySchedulesRequest req;
    ASSERT_TRUE(
        ParseYamlToMessage(
            "targets:\n- name: canary\n  regions:\n  - region: r1\n"
            "    urls:\n    - {mode: BUFFERED, url: "
            "'https://b.lambda-url.r1.on.aws/'}\n    - {mode: "
            "RESPONSE_STREAM, url: 'https://s.lambda-url.r1.on.aws/'}\n",
            "fleet", &req)
            .ok());
    ASSERT_TRUE(core_->ApplySchedules(req).ok());
    v1::Hello h;
    h.set_agent_id("a1");
    h.set_region("r1");
    scheduler_->AgentConnected(h, &listener_);
  }

  void TearDown() override {
    server_->Shutdown();
    closed_server_->Shutdown();
    core_->Shutdown();
    service_->Shutdown();
    closed_service_->Shutdown();
    agents_.reset();
    scheduler_->Shutdown();
  }

  static std::string Serve(AdminService* service,
                           std::unique_ptr<grpc::Server>* server) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service);
    builder.SetMaxReceiveMessageSize(kAdminMaxRequestBytes);
    *server = builder.BuildAndStart();
    return absl::StrCat("127.0.0.1:", port);
  }

  static void Auth(grpc::ClientContext* ctx, const char* token) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(10));
  }

  v1::RunProbeRequest Request(uint32_t count) {
    v1::RunProbeRequest r;
    r.set_target("canary");
    r.add_sizes(2);
    r.add_sizes(1024);
    r.set_count(count);
    return r;
  }

  Clock* clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<VerdictSource> verdicts_;
  std::unique_ptr<testing::FakeAdhocAgents> agents_;
  std::unique_ptr<AdminCore> core_;
  std::unique_ptr<AdminAuthorizer> auth_;
  std::unique_ptr<AdminService> service_, closed_service_;
  std::unique_ptr<grpc::Server> server_, closed_server_;
  std::string address_, closed_address_;
  std::unique_ptr<v1::CanaryAdmin::Stub> stub_;
  NullListener listener_;
};

TEST_F(AdminServiceTest, TokensAndRolesAreChecked) {
  v1::ListAgentsResponse agents;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->ListAgents(&ctx, {}, &agents).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, "not-a-known-token-at-all");
    EXPECT_EQ(stub_->ListAgents(&ctx, {}, &agents).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kViewer);
    ASSERT_TRUE(stub_->ListAgents(&ctx, {}, &agents).ok());
    ASSERT_EQ(agents.agents_size(), 1);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kViewer);
    auto reader = stub_->RunProbe(&ctx, Request(1));
    v1::RunProbeEvent e;
    EXPECT_FALSE(reader->Read(&e));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("needs operator"));
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kViewer);
    v1::DeleteScheduleRequest del;
    del.set_id("x");
    v1::DeleteScheduleResponse resp;
    EXPECT_EQ(stub_->DeleteSchedule(&ctx, del, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(agents_->received("a1"), 0u);
  // A controller without --admin_tokens or --insecure refuses everything.
  auto closed = v1::CanaryAdmin::NewStub(
      grpc::CreateChannel(closed_address_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Auth(&ctx, kOperator);
  grpc::Status s = closed->ListAgents(&ctx, {}, &agents);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("--admin_tokens"));
}

TEST_F(AdminServiceTest, RunProbeStreamsEventsThenDone) {
  grpc::ClientContext ctx;
  Auth(&ctx, kOperator);
  v1::RunProbeRequest req = Request(5);
  req.set_stream_outcomes(true);
  auto reader = stub_->RunProbe(&ctx, req);
  v1::RunProbeEvent e;
  std::vector<v1::RunProbeEvent::EventCase> kinds;
  v1::RunProbeEvent::Done done;
  while (reader->Read(&e)) {
    kinds.push_back(e.event_case());
    if (e.has_done()) done = e.done();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_GE(kinds.size(), 2u);
  EXPECT_EQ(kinds.front(), v1::RunProbeEvent::kDispatched);
  EXPECT_EQ(kinds.back(), v1::RunProbeEvent::kDone);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), v1::RunProbeEvent::kOutcome),
            20);
  EXPECT_EQ(
      std::count(kinds.begin(), kinds.end(), v1::RunProbeEvent::kRegionSummary),
      4);
  EXPECT_EQ(done.total_probes(), 20u);
  ASSERT_EQ(done.summaries_size(), 4);
  EXPECT_EQ(done.summaries(0).probes(), 5u);
}

TEST_F(AdminServiceTest, BadRequestsComeBackAsStatusesNamingTheField) {
  struct Case {
    v1::RunProbeRequest req;
    grpc::StatusCode code;
    const char* message;
  };
  v1::RunProbeRequest no_count = Request(0);
  v1::RunProbeRequest unknown = Request(1);
  unknown.set_target("nope");
  v1::RunProbeRequest region = Request(1);
  region.add_regions("r2");
  for (const Case& c :
       {Case{no_count, grpc::StatusCode::INVALID_ARGUMENT, "count"},
        Case{unknown, grpc::StatusCode::NOT_FOUND, "nope"},
        Case{region, grpc::StatusCode::NOT_FOUND, "regions[0]"}}) {
    grpc::ClientContext ctx;
    Auth(&ctx, kOperator);
    auto reader = stub_->RunProbe(&ctx, c.req);
    v1::RunProbeEvent e;
    EXPECT_FALSE(reader->Read(&e));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  grpc::ClientContext ctx;
  Auth(&ctx, kViewer);
  v1::AnalyzeRequest analyze;
  *analyze.mutable_from() = TimeUtil::SecondsToTimestamp(20);
  *analyze.mutable_to() = TimeUtil::SecondsToTimestamp(10);
  v1::AnalysisReport report;
  grpc::Status s = stub_->Analyze(&ctx, analyze, &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("from"));
}

TEST_F(AdminServiceTest, OversizedRequestsAreRefused) {
  v1::ApplySchedulesRequest req;
  v1::Target* t = req.add_targets();
  t->set_name(std::string(kAdminMaxRequestBytes + 10, 'x'));
  grpc::ClientContext ctx;
  Auth(&ctx, kOperator);
  v1::ApplySchedulesResponse resp;
  EXPECT_EQ(stub_->ApplySchedules(&ctx, req, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// The cancel reaches the agents from the RPC's own cancellation event, not a
// timer: the test waits for it (bounded) and prints the latency; how fast it
// is belongs to a benchmark, not to an assertion on a shared machine.
TEST_F(AdminServiceTest, ClientCancelStopsTheAgents) {
  agents_->set_answer(false);  // The probes never finish by themselves.
  grpc::ClientContext ctx;
  Auth(&ctx, kOperator);
  auto reader = stub_->RunProbe(&ctx, Request(2500));
  v1::RunProbeEvent e;
  ASSERT_TRUE(reader->Read(&e));
  ASSERT_TRUE(e.has_dispatched());
  const absl::Duration cancelled_at = clock_->MonotonicNow();
  ctx.TryCancel();
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  std::optional<absl::Duration> got =
      agents_->CancelTime("a1", absl::Seconds(60));
  ASSERT_TRUE(got.has_value()) << "the agent never got the cancel";
  EXPECT_GE(*got, cancelled_at);
  std::printf("client cancel -> agent cancel: %s\n",
              absl::FormatDuration(*got - cancelled_at).c_str());
  // The run ends right after its cancels went out.
  EXPECT_TRUE(testing::WaitUntil([&] { return core_->active_runs() == 0; }))
      << core_->active_runs() << " runs still active";
}

TEST_F(AdminServiceTest, ClientDeadlineStopsTheAgents) {
  agents_->set_answer(false);
  // The deadline must pass while the agents probe, so it leaves the call
  // ample time to reach them: the channel is connected first, and two
  // seconds is far more than a loopback call takes on a loaded machine
  // under AddressSanitizer (300 ms once was not).
  constexpr auto kDeadline = std::chrono::seconds(2);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                        std::chrono::seconds(60)));
  auto stub = v1::CanaryAdmin::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kOperator));
  const absl::Duration start = clock_->MonotonicNow();
  ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
  auto reader = stub->RunProbe(&ctx, Request(2500));
  v1::RunProbeEvent e;
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_GE(agents_->received("a1"), 1u)
      << "the probe never reached the agent within the deadline";
  std::optional<absl::Duration> got =
      agents_->CancelTime("a1", absl::Seconds(60));
  ASSERT_TRUE(got.has_value()) << "the agent never got the cancel";
  // Not before the deadline. The server counts the client's timeout from
  // when the call reached it, on gRPC's millisecond clock, so allow it a few
  // milliseconds; a run cancelled early would be off by far more.
  EXPECT_GE(*got - start, absl::FromChrono(kDeadline) - absl::Milliseconds(50));
  std::printf("2s deadline -> agent cancel after %s\n",
              absl::FormatDuration(*got - start).c_str());
}

TEST_F(AdminServiceTest, WatchVerdictsStreamsCurrentAndNew) {
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.mutable_key()->set_region("r1");
  v.set_state(v1::SUSPECT);
  *v.mutable_updated() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(clock_->Now()));
  ASSERT_TRUE(store_->AppendVerdict(v).ok());
  grpc::ClientContext ctx;
  Auth(&ctx, kViewer);
  auto reader = stub_->WatchVerdicts(&ctx, {});
  v1::Verdict got;
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.state(), v1::SUSPECT);
  v.set_state(v1::REGRESSION);
  *v.mutable_updated() = TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(clock_->Now() + absl::Milliseconds(1)));
  ASSERT_TRUE(store_->AppendVerdict(v).ok());
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.state(), v1::REGRESSION);
  ctx.TryCancel();
  while (reader->Read(&got)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
