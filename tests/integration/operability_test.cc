// Running fleetcanary as the Kubernetes manifests do, with the real binaries
// and a throwaway PKI:
// - the controller is started with exactly the args of
//   deploy/k8s/base/controller/statefulset.yaml (files and addresses mapped
//   into the test's sandbox; a flag the test does not know fails it), and
//   canaryctl reaches the admin listener with TLS + a bearer token and no
//   client certificate, while the agents' mTLS port answers canaryctl with
//   "the controller asked for a client certificate: pass --cert/--key";
// - canaryctl speaks mutual TLS (--cert/--key and FLEETCANARY_CERT/_KEY) when
//   the admin API shares the mTLS port, and names a refused certificate;
// - the controller turns unready (gRPC health NOT_SERVING, /readyz 503) while
//   its store refuses writes, and ready again after;
// - an agent's /healthz stays 200 while /readyz follows its session.
#include <curl/curl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/testing/controller_process.h"
#include "tests/testing/pki.h"

#ifndef FLEETCANARY_SOURCE_DIR
#error FLEETCANARY_SOURCE_DIR must name the source tree
#endif

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::MetricValue;
using testing::Process;
using testing::ReadFile;
using testing::TestPki;
using testing::WaitUntil;

constexpr char kManifest[] = "deploy/k8s/base/controller/statefulset.yaml";
constexpr char kToken[] = "operator-token-for-tests";

// The controller container's args in the manifest.
std::vector<std::string> ManifestControllerArgs() {
  const YAML::Node doc =
      YAML::LoadFile(absl::StrCat(FLEETCANARY_SOURCE_DIR, "/", kManifest));
  for (const YAML::Node& c : doc["spec"]["template"]["spec"]["containers"]) {
    if (c["name"].as<std::string>() != "controller") continue;
    return c["args"].as<std::vector<std::string>>();
  }
  return {};
}

size_t WriteBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET http://address/path: status code (0 when unreachable) and body.
std::pair<long, std::string> Get(const std::string& address,
                                 const std::string& path) {
  CURL* curl = curl_easy_init();
  std::string body;
  const std::string url = absl::StrCat("http://", address, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  long code = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  }
  curl_easy_cleanup(curl);
  return {code, body};
}

// grpc.health.v1.Health/Check("") over plaintext: 1 SERVING, 2 NOT_SERVING,
// -1 when the call fails.
int HealthStatus(const std::string& address) {
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call =
      stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // HealthCheckResponse{status = 1}: field 1, varint.
  if (bytes.empty()) return 0;  // UNKNOWN (default value, not encoded).
  if (bytes.size() != 2 || bytes[0] != 0x08) return -1;
  return bytes[1];
}

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

class OperabilityTest : public testing::ControllerProcessTest {
 protected:
  OperabilityTest() : ControllerProcessTest("operability_") {}

  void SetUp() override {
    ControllerProcessTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(
        pki_->Leaf("operator", "URI:spiffe://fleetcanary/operator/alice").ok());
    std::ofstream(dir_ + "/tokens.yaml") << absl::StrCat(
        "tokens:\n- name: alice\n  role: OPERATOR\n  token: ", kToken, "\n");
    // Token files must not be readable by others (docs/hardening.md).
    chmod((dir_ + "/tokens.yaml").c_str(), 0600);
  }

  // The manifest's args with every file and address mapped into the
  // sandbox; a flag without a mapping fails the test (so the manifest cannot
  // grow a flag this test does not run with).
  std::vector<std::string> ProductionArgs() {
    const std::string k8s =
        absl::StrCat(FLEETCANARY_SOURCE_DIR, "/deploy/k8s/base/controller/");
    const std::map<std::string, std::string> mapped = {
        {"--grpc_listen", "127.0.0.1:0"},
        {"--admin_listen", "127.0.0.1:0"},
        {"--http_listen", "127.0.0.1:0"},
        {"--health_listen", "127.0.0.1:0"},
        {"--data_dir", dir_ + "/controller"},
        // The shipped settings and fleet, as the ConfigMap mounts them.
        {"--config", k8s + "controller.yaml"},
        {"--fleet", k8s + "fleet.yaml"},
        {"--tls_cert", pki_->Path("server", "pem")},
        {"--tls_key", pki_->Path("server", "key")},
        {"--client_ca", pki_->ca()},
        {"--admin_tokens", dir_ + "/tokens.yaml"},
        // Passed as the manifest has it ("" = unchanged).
        {"--agent_id_pattern", ""},
    };
    std::vector<std::string> args;
    const std::vector<std::string> manifest = ManifestControllerArgs();
    EXPECT_FALSE(manifest.empty()) << kManifest;
    for (const std::string& a : manifest) {
      const std::string flag = a.substr(0, a.find('='));
      auto it = mapped.find(flag);
      EXPECT_TRUE(it != mapped.end())
          << kManifest << " passes " << a
          << ", which this test does not map: add it here";
      if (it == mapped.end()) continue;
      args.push_back(it->second.empty() ? a : flag + "=" + it->second);
    }
    return args;
  }

  // The controller with `args`; also reads its health= and admin= addresses.
  void StartController(const std::vector<std::string>& args) {
    ControllerProcessTest::StartController(args);
    if (HasFatalFailure()) return;
    health_ = FieldOf(line_, "health");
    admin_ = FieldOf(line_, "admin");
  }

  // Runs canaryctl with `args` and extra environment `env` ("K=V").
  Ran Canaryctl(const std::vector<std::string>& args,
                const std::vector<std::string>& env = {}) {
    static int n = 0;
    const std::string out = absl::StrCat(dir_, "/canaryctl.", ++n);
    std::string cmd =
        "exec env -u FLEETCANARY_TOKEN -u FLEETCANARY_CONTROLLER "
        "-u FLEETCANARY_CERT -u FLEETCANARY_KEY -u FLEETCANARY_CA "
        "-u FLEETCANARY_INSECURE";
    for (const std::string& e : env) absl::StrAppend(&cmd, " '", e, "'");
    absl::StrAppend(&cmd, " '", BinaryPath("cli/canaryctl"), "'");
    for (const std::string& a : args) absl::StrAppend(&cmd, " '", a, "'");
    absl::StrAppend(&cmd, " > '", out, ".out' 2> '", out, ".err'");
    auto p = Process::Spawn("/bin/sh", {"-c", cmd}, out + ".log");
    Ran ran;
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return ran;
    ran.code = (*p)->Wait(absl::Seconds(60)).value_or(-1);
    ran.out = ReadFile(out + ".out");
    ran.err = ReadFile(out + ".err");
    return ran;
  }

  std::string health_, admin_;
};

TEST_F(OperabilityTest, CanaryctlReachesControllerStartedWithProductionFlags) {
  StartController(ProductionArgs());
  ASSERT_FALSE(admin_.empty()) << line_;
  ASSERT_FALSE(health_.empty()) << line_;
  EXPECT_TRUE(absl::StrContains(line_, "tls=mtls")) << line_;

  // The admin listener: TLS verified against the CA, a bearer token, no
  // client certificate.
  const std::vector<std::string> tls = {"--controller=" + admin_,
                                        "--ca=" + pki_->ca(),
                                        "--server-name=localhost"};
  std::vector<std::string> args = {"schedules", "list"};
  args.insert(args.end(), tls.begin(), tls.end());
  Ran ok = Canaryctl(args, {absl::StrCat("FLEETCANARY_TOKEN=", kToken)});
  EXPECT_EQ(ok.code, 0) << ok.err << ReadFile(dir_ + "/controller.log");
  EXPECT_TRUE(absl::StrContains(ok.out, "canary-ladder")) << ok.out;

  // No token: refused as unauthenticated (exit 4), not as unreachable.
  Ran no_token = Canaryctl(args);
  EXPECT_EQ(no_token.code, 4) << no_token.err;

  // The agents' port asks for a client certificate; canaryctl says so.
  Ran mtls_port = Canaryctl({"schedules", "list", "--controller=" + grpc_,
                             "--ca=" + pki_->ca(), "--server-name=localhost"},
                            {absl::StrCat("FLEETCANARY_TOKEN=", kToken)});
  EXPECT_EQ(mtls_port.code, 3) << mtls_port.err;
  EXPECT_TRUE(absl::StrContains(
      mtls_port.err,
      "the controller asked for a client certificate: pass --cert/--key"))
      << mtls_port.err;

  // Wrong CA for the controller: canaryctl says it cannot verify it.
  auto other = TestPki::Create(dir_ + "/other-pki", "some-other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  Ran wrong_ca = Canaryctl({"schedules", "list", "--controller=" + admin_,
                            "--ca=" + other->ca(), "--server-name=localhost"},
                           {absl::StrCat("FLEETCANARY_TOKEN=", kToken)});
  EXPECT_EQ(wrong_ca.code, 3) << wrong_ca.err;
  EXPECT_TRUE(absl::StrContains(
      wrong_ca.err, "canaryctl cannot verify the controller's certificate"))
      << wrong_ca.err;

  // Probes of the manifest: gRPC health on the health listener, /healthz.
  EXPECT_EQ(HealthStatus(health_), 1);
  EXPECT_EQ(Get(http_, "/healthz").first, 200);
  EXPECT_EQ(Get(http_, "/readyz").first, 200);
}

TEST_F(OperabilityTest, CanaryctlSpeaksMutualTls) {
  // The admin API on the mTLS port: the manifest's flags without
  // --admin_listen.
  std::vector<std::string> args;
  for (const std::string& a : ProductionArgs()) {
    if (!absl::StartsWith(a, "--admin_listen=")) args.push_back(a);
  }
  StartController(args);
  EXPECT_TRUE(admin_.empty()) << line_;
  const std::string token = absl::StrCat("FLEETCANARY_TOKEN=", kToken);

  Ran flags = Canaryctl(
      {"schedules", "list", "--controller=" + grpc_, "--ca=" + pki_->ca(),
       "--server-name=localhost", "--cert=" + pki_->Path("operator", "pem"),
       "--key=" + pki_->Path("operator", "key")},
      {token});
  EXPECT_EQ(flags.code, 0) << flags.err;

  Ran env = Canaryctl(
      {"schedules", "list", "--controller=" + grpc_, "--server-name=localhost"},
      {token, "FLEETCANARY_CA=" + pki_->ca(),
       "FLEETCANARY_CERT=" + pki_->Path("operator", "pem"),
       "FLEETCANARY_KEY=" + pki_->Path("operator", "key")});
  EXPECT_EQ(env.code, 0) << env.err;

  Ran none = Canaryctl({"schedules", "list", "--controller=" + grpc_,
                        "--ca=" + pki_->ca(), "--server-name=localhost"},
                       {token});
  EXPECT_EQ(none.code, 3) << none.err;
  EXPECT_TRUE(absl::StrContains(
      none.err,
      "the controller asked for a client certificate: pass --cert/--key"))
      << none.err;

  // A certificate from a CA the controller does not trust.
  auto other = TestPki::Create(dir_ + "/other-pki", "some-other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(other->Leaf("stranger", "DNS:stranger").ok());
  Ran stranger = Canaryctl(
      {"schedules", "list", "--controller=" + grpc_, "--ca=" + pki_->ca(),
       "--server-name=localhost", "--cert=" + other->Path("stranger", "pem"),
       "--key=" + other->Path("stranger", "key")},
      {token});
  EXPECT_EQ(stranger.code, 3) << stranger.err;
  EXPECT_TRUE(
      absl::StrContains(stranger.err, "refused canaryctl's client certificate"))
      << stranger.err;

  // --cert without --key is a usage error naming the flag.
  Ran half = Canaryctl({"schedules", "list", "--controller=" + grpc_,
                        "--cert=" + pki_->Path("operator", "pem")},
                       {token});
  EXPECT_NE(half.code, 0);
  EXPECT_TRUE(absl::StrContains(half.err, "--cert: given without --key"))
      << half.err;
}

TEST_F(OperabilityTest, ControllerUnreadyWhileStoreRefusesWrites) {
  std::vector<std::string> args = ProductionArgs();
  args.push_back("--store_check_interval=100ms");
  StartController(args);
  ASSERT_TRUE(
      WaitUntil([&] { return HealthStatus(health_) == 1; }, absl::Seconds(60)));
  EXPECT_EQ(Get(http_, "/readyz").first, 200);

  // Another connection holds the write lock.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/controller/controller.db").c_str(), &db),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_TRUE(
      WaitUntil([&] { return HealthStatus(health_) == 2; }, absl::Seconds(60)))
      << ReadFile(dir_ + "/controller.log");
  const auto [code, body] = Get(http_, "/readyz");
  EXPECT_EQ(code, 503);
  EXPECT_TRUE(absl::StrContains(body, "store:")) << body;
  // Liveness does not follow the store (a restart would not help).
  EXPECT_EQ(Get(http_, "/healthz").first, 200);
  EXPECT_GE(MetricValue(HttpGet(http_, "/metrics"),
                        "fleetcanary_store_check_failures_total")
                .value_or(0),
            1);
  EXPECT_TRUE(absl::StrContains(ReadFile(dir_ + "/controller.log"),
                                "store_unavailable"));

  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_TRUE(
      WaitUntil([&] { return HealthStatus(health_) == 1; }, absl::Seconds(60)));
  EXPECT_TRUE(WaitUntil([&] { return Get(http_, "/readyz").first == 200; },
                        absl::Seconds(60)));
}

TEST_F(OperabilityTest, AgentReadinessFollowsItsSession) {
  StartController(
      {"--insecure", "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
       "--data_dir=" + dir_ + "/controller", "--heartbeat_interval=1s"});
  auto start_agent = [&](const std::string& id, const std::string& controller) {
    auto p = Process::Spawn(
        BinaryPath("agent/fleetcanary-agent"),
        {"--agent_id=" + id, "--region=us-east-1", "--controller=" + controller,
         "--data_dir=" + dir_ + "/" + id, "--http_listen=127.0.0.1:0",
         "--heartbeat_interval=1s", "--reconnect_min=50ms",
         "--reconnect_max=300ms", "--insecure"},
        dir_ + "/" + id + ".log");
    EXPECT_TRUE(p.ok()) << p.status();
    std::string http;
    if (p.ok()) {
      auto line = (*p)->WaitForLine("listening ", absl::Seconds(60));
      EXPECT_TRUE(line.ok()) << line.status();
      if (line.ok()) http = FieldOf(*line, "http");
    }
    return std::make_pair(p.ok() ? std::move(*p) : nullptr, http);
  };

  // No controller at all: alive, not ready.
  auto lonely_started = start_agent("agent-lonely", "127.0.0.1:1");
  ASSERT_NE(lonely_started.first, nullptr);
  const std::string lonely_http = lonely_started.second;
  EXPECT_EQ(Get(lonely_http, "/healthz").first, 200);
  const auto [code, body] = Get(lonely_http, "/readyz");
  EXPECT_EQ(code, 503);
  EXPECT_TRUE(absl::StrContains(body, "no session")) << body;

  // With the controller: ready once welcomed and assigned.
  auto agent_started = start_agent("agent-a", grpc_);
  ASSERT_NE(agent_started.first, nullptr);
  const std::string http = agent_started.second;
  EXPECT_TRUE(WaitUntil([&] { return Get(http, "/readyz").first == 200; },
                        absl::Seconds(60)))
      << Get(http, "/readyz").second << ReadFile(dir_ + "/agent-a.log");

  // The controller goes away: not ready, still alive.
  controller_->Signal(SIGKILL);
  controller_->Wait(absl::Seconds(10));
  EXPECT_TRUE(WaitUntil([&] { return Get(http, "/readyz").first == 503; },
                        absl::Seconds(60)));
  EXPECT_EQ(Get(http, "/healthz").first, 200);
}

}  // namespace
}  // namespace fleetcanary
