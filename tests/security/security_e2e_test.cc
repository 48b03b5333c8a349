// Transport security and the SSRF target guard, with the real binaries:
// - the controller refuses to start without TLS files unless --insecure, and
//   with --insecure serves plaintext (and the health-only listener);
// - with --client_ca, an agent without a client certificate never gets a
//   session, one whose Hello claims another region than its certificate is
//   refused with PERMISSION_DENIED (and counted), and one with the right
//   certificate connects and its outcomes are ingested;
// - an agent whose schedule points at a loopback URL, without
//   --target_allow_loopback, records AGENT_ERROR outcomes and never connects
//   to the loopback listener.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc/security.h"
#include "fleetcanary/v1/session.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/testing/controller_process.h"
#include "tests/testing/fault_server.h"
#include "tests/testing/pki.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::MetricSum;
using testing::Process;
using testing::ReadFile;
using testing::TestPki;
using testing::WaitUntil;

class SecurityTest : public testing::ControllerProcessTest {
 protected:
  SecurityTest() : ControllerProcessTest("security_e2e_") {}

  void SetUp() override {
    ControllerProcessTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(
        pki_->Leaf("agent-a", "URI:" + AgentSpiffeId("us-east-1", "agent-a"))
            .ok());
    // The fleet's loopback target: reads requests, never answers.
    testing::FaultServerOptions listener;
    listener.default_spec.silent = true;
    auto server = testing::FaultServer::Create(listener);
    ASSERT_TRUE(server.ok()) << server.status();
    listener_ = std::move(*server);
  }

  // Starts the controller with `extra` flags and a fleet probing the loopback
  // listener in us-east-1; returns false (and the exit code) if it exits.
  void StartController(const std::vector<std::string>& extra) {
    const std::string fleet = dir_ + "/fleet.yaml";
    std::ofstream(fleet) << absl::StrCat(
        "targets:\n- name: canary\n  regions:\n  - region: us-east-1\n"
        "    urls:\n    - mode: BUFFERED\n      url: http://127.0.0.1:",
        listener_->port(),
        "/\n"
        "schedules:\n- id: s\n  target: canary\n  sizes: [1024]\n"
        "  rate_per_second: 20\n  limits: {timeout: 2s, stall_limit: 1s}\n");
    std::vector<std::string> args = {
        "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
        "--data_dir=" + dir_ + "/controller", "--fleet=" + fleet,
        "--heartbeat_interval=1s",
        // The controller lets the loopback target in; the agents' own
        // guard still refuses it unless they allow loopback too.
        "--target_allow_loopback"};
    args.insert(args.end(), extra.begin(), extra.end());
    ControllerProcessTest::StartController(args);
  }

  std::vector<std::string> MtlsControllerFlags() {
    return {"--tls_cert=" + pki_->Path("server", "pem"),
            "--tls_key=" + pki_->Path("server", "key"),
            "--client_ca=" + pki_->ca()};
  }

  std::unique_ptr<Process> StartAgent(const std::string& id,
                                      const std::string& region,
                                      const std::vector<std::string>& extra) {
    std::vector<std::string> args = {
        "--agent_id=" + id,
        "--region=" + region,
        "--controller=" + grpc_,
        "--data_dir=" + dir_ + "/" + id,
        "--http_listen=127.0.0.1:0",
        "--heartbeat_interval=1s",
        "--reconnect_min=50ms",
        "--reconnect_max=300ms",
        "--outcome_journal=" + dir_ + "/" + id + ".journal"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto p = Process::Spawn(BinaryPath("agent/fleetcanary-agent"), args,
                            dir_ + "/" + id + ".log");
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    auto line = (*p)->WaitForLine("listening ", absl::Seconds(60));
    EXPECT_TRUE(line.ok()) << line.status()
                           << ReadFile(dir_ + "/" + id + ".log");
    return std::move(*p);
  }

  // Opens an AgentSession stream with `tls`, sends Hello(id, region) and
  // returns how the stream ended (OK if a Welcome arrived).
  grpc::Status Hello(const TlsOptions& tls, const std::string& id,
                     const std::string& region) {
    grpc::ChannelArguments args;
    auto creds = MakeChannelCredentials(tls, &args);
    EXPECT_TRUE(creds.ok()) << creds.status();
    auto channel = grpc::CreateCustomChannel(grpc_, *creds, args);
    auto stub = v1::AgentSession::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    auto stream = stub->Connect(&context);
    v1::AgentMessage m;
    m.mutable_hello()->set_agent_id(id);
    m.mutable_hello()->set_region(region);
    stream->Write(m);
    v1::ControllerMessage in;
    if (stream->Read(&in) && in.has_welcome()) {
      context.TryCancel();
      stream->Finish().IgnoreError();
      return grpc::Status::OK;
    }
    return stream->Finish();
  }

  TlsOptions AgentTls(const std::string& name) {
    TlsOptions t;
    if (!name.empty()) {
      t.cert_file = pki_->Path(name, "pem");
      t.key_file = pki_->Path(name, "key");
    }
    t.ca_file = pki_->ca();
    t.server_name_override = "localhost";
    return t;
  }

  std::unique_ptr<testing::FaultServer> listener_;
};

TEST_F(SecurityTest, ControllerRefusesToStartWithoutTlsOrInsecure) {
  auto p =
      Process::Spawn(BinaryPath("controller/server/fleetcanary-controller"),
                     {"--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                      "--data_dir=" + dir_ + "/controller"},
                     dir_ + "/controller.log");
  ASSERT_TRUE(p.ok()) << p.status();
  auto code = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  const std::string log = ReadFile(dir_ + "/controller.log");
  EXPECT_TRUE(absl::StrContains(log, "--tls_cert and --tls_key are required"))
      << log;
}

TEST_F(SecurityTest, InsecureControllerServesPlaintextAndHealthListener) {
  StartController({"--insecure", "--health_listen=127.0.0.1:0"});
  EXPECT_TRUE(absl::StrContains(line_, "tls=off")) << line_;
  const std::string health = FieldOf(line_, "health");
  ASSERT_FALSE(health.empty()) << line_;
  for (const std::string& address : {grpc_, health}) {
    auto channel =
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                          std::chrono::seconds(30)))
        << address;
  }
  // A plaintext agent session works in --insecure mode.
  TlsOptions plain;
  plain.insecure = true;
  EXPECT_TRUE(Hello(plain, "agent-x", "us-east-1").ok());
  // The health listener serves nothing but health.
  auto channel =
      grpc::CreateChannel(health, grpc::InsecureChannelCredentials());
  auto stub = v1::AgentSession::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  auto stream = stub->Connect(&context);
  v1::ControllerMessage in;
  EXPECT_FALSE(stream->Read(&in));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(SecurityTest, MtlsRefusesWrongRegionAndMissingCertificate) {
  StartController(MtlsControllerFlags());
  EXPECT_TRUE(absl::StrContains(line_, "tls=mtls")) << line_;
  // Certificate for us-east-1, Hello claims eu-west-1.
  grpc::Status wrong = Hello(AgentTls("agent-a"), "agent-a", "eu-west-1");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << wrong.error_message();
  EXPECT_TRUE(absl::StrContains(wrong.error_message(), "eu-west-1"))
      << wrong.error_message();
  // Same certificate, another agent id.
  grpc::Status other = Hello(AgentTls("agent-a"), "agent-b", "us-east-1");
  EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // No client certificate: the handshake fails, no session.
  grpc::Status none = Hello(AgentTls(""), "agent-a", "us-east-1");
  EXPECT_FALSE(none.ok());
  EXPECT_NE(none.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Plaintext against the TLS port: no session either.
  TlsOptions plain;
  plain.insecure = true;
  EXPECT_FALSE(Hello(plain, "agent-a", "us-east-1").ok());
  // The right certificate gets a Welcome.
  EXPECT_TRUE(Hello(AgentTls("agent-a"), "agent-a", "us-east-1").ok());
  // A certificate name is the whole id, never a prefix of another one.
  EXPECT_EQ(
      Hello(AgentTls("agent-a"), "agent-a-7d9f-x2", "us-east-1").error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Hello(AgentTls("agent-a"), "agent-ab", "us-east-1").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_GE(MetricSum(HttpGet(http_, "/metrics"),
                      "fleetcanary_session_refused_total", {}),
            4);
}

// Pods sharing a Deployment's certificate: --agent_id_pattern says which ids
// the certificate may claim, matched as a whole.
TEST_F(SecurityTest, AgentIdPatternAllowsPodNamesOnly) {
  std::vector<std::string> flags = MtlsControllerFlags();
  flags.push_back("--agent_id_pattern={cert}-[a-z0-9]+-[a-z0-9]+");
  StartController(flags);
  EXPECT_TRUE(Hello(AgentTls("agent-a"), "agent-a-7d9f-x2", "us-east-1").ok());
  EXPECT_TRUE(Hello(AgentTls("agent-a"), "agent-a", "us-east-1").ok());
  EXPECT_EQ(Hello(AgentTls("agent-a"), "agent-a-7d9f-x2-more.evil", "us-east-1")
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Hello(AgentTls("agent-a"), "agent-ab", "us-east-1").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityTest, AllowedRegionsRefuseOthers) {
  StartController({"--insecure", "--allowed_regions=eu-west-1"});
  TlsOptions plain;
  plain.insecure = true;
  grpc::Status s = Hello(plain, "agent-x", "us-east-1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Hello(plain, "agent-y", "eu-west-1").ok());
}

// A real agent over mTLS; its schedule names a loopback URL it is not allowed
// to reach: outcomes are AGENT_ERROR ("target guard"), ingested by the
// controller, and the loopback listener sees no connection.
TEST_F(SecurityTest, MtlsAgentIngestsAndGuardBlocksLoopback) {
  StartController(MtlsControllerFlags());
  auto agent = StartAgent("agent-a", "us-east-1",
                          {"--tls_cert=" + pki_->Path("agent-a", "pem"),
                           "--tls_key=" + pki_->Path("agent-a", "key"),
                           "--ca=" + pki_->ca(), "--server_name=localhost"});
  ASSERT_NE(agent, nullptr);
  const bool ingested = WaitUntil(
      [&] {
        return MetricSum(HttpGet(http_, "/metrics"), "fleetcanary_probes_total",
                         {"outcome=\"AGENT_ERROR\""}) >= 3;
      },
      absl::Seconds(60));
  EXPECT_TRUE(ingested) << HttpGet(http_, "/metrics")
                        << ReadFile(dir_ + "/agent-a.log");
  EXPECT_EQ(MetricSum(HttpGet(http_, "/metrics"), "fleetcanary_probes_total",
                      {"outcome=\"SUCCESS\""}),
            0);
  const std::string journal = ReadFile(dir_ + "/agent-a.journal");
  EXPECT_TRUE(absl::StrContains(journal, "AGENT_ERROR")) << journal;
  EXPECT_EQ(listener_->connections_accepted(), 0);
  EXPECT_EQ(MetricSum(HttpGet(http_, "/metrics"),
                      "fleetcanary_session_refused_total", {}),
            0);
}

}  // namespace
}  // namespace fleetcanary
