// mTLS end to end on loopback: a real gRPC server with TLS credentials from
// files made by openssl in the test, clients with and without certificates.
#include "common/grpc/security.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

// Makes a CA and leaf certificates with the openssl command line tool.
class Pki {
 public:
  explicit Pki(std::string dir) : dir_(std::move(dir)) {
    Run(
        absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
                     "-subj /CN=fleetcanary-test-ca -keyout ",
                     dir_, "/ca.key -out ", dir_, "/ca.pem"));
  }

  // Leaf signed by the CA with the given SAN extension value
  // (e.g. "DNS:localhost,URI:spiffe://...").
  void Leaf(const std::string& name, const std::string& san) {
    std::string ext = absl::StrCat(dir_, "/", name, ".ext");
    std::ofstream(ext) << "subjectAltName=" << san << "\n";
    Run(absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=", name,
                     " -keyout ", Path(name, "key"), " -out ",
                     Path(name, "csr")));
    Run(absl::StrCat("openssl x509 -req -days 2 -in ", Path(name, "csr"),
                     " -CA ", dir_, "/ca.pem -CAkey ", dir_,
                     "/ca.key -CAcreateserial -extfile ", ext, " -out ",
                     Path(name, "pem")));
  }

  std::string Path(const std::string& name, const std::string& ext) const {
    return absl::StrCat(dir_, "/", name, ".", ext);
  }
  std::string ca() const { return dir_ + "/ca.pem"; }

 private:
  static void Run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
  std::string dir_;
};

// Answers every call with the caller's agent identity, or the refusal.
class WhoAmIService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reactor(grpc::GenericCallbackServerContext* context) {
        absl::StatusOr<AgentIdentity> id =
            AgentIdentityFromAuthContext(*context->auth_context());
        std::string text = id.ok() ? absl::StrCat(id->region, "/", id->agent_id)
                                   : std::string(id.status().message());
        grpc::Slice slice(text);
        reply_ = grpc::ByteBuffer(&slice, 1);
        StartRead(&request_);
      }
      void OnReadDone(bool) override {
        StartWriteAndFinish(&reply_, {}, grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer request_;
      grpc::ByteBuffer reply_;
    };
    return new Reactor(context);
  }
};

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs each case as its own process.
    dir_ = new std::string(testing::TempDir() + "/pki-" +
                           std::to_string(::getpid()));
    std::system(("rm -rf " + *dir_ + " && mkdir -p " + *dir_).c_str());
    pki_ = new Pki(*dir_);
    pki_->Leaf("server", "DNS:localhost,IP:127.0.0.1");
    pki_->Leaf("agent-a", "URI:spiffe://fleetcanary/agent/us-east-1/agent-a");
    pki_->Leaf("plain", "DNS:someone.example");
  }

  void StartServer() {
    TlsOptions options;
    options.cert_file = pki_->Path("server", "pem");
    options.key_file = pki_->Path("server", "key");
    options.ca_file = pki_->ca();
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
        MakeServerCredentials(options);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port);
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  // Calls the server with a client certificate `name` ("" for none).
  grpc::Status Call(const std::string& name, std::string* reply) {
    TlsOptions options;
    options.ca_file = pki_->ca();
    options.server_name_override = "localhost";
    if (!name.empty()) {
      options.cert_file = pki_->Path(name, "pem");
      options.key_file = pki_->Path(name, "key");
    }
    grpc::ChannelArguments args;
    auto creds = MakeChannelCredentials(options, &args);
    EXPECT_TRUE(creds.ok()) << creds.status();
    auto channel = grpc::CreateCustomChannel(address_, *creds, args);
    grpc::GenericStub stub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    grpc::Slice hi("hi");
    grpc::ByteBuffer request(&hi, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, "/test.WhoAmI/Call", grpc::StubOptions(), &request,
                   &response, [&](grpc::Status s) {
                     status = s;
                     done.Notify();
                   });
    done.WaitForNotification();
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      reply->clear();
      for (const auto& s : slices) {
        reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return status;
  }

  static std::string* dir_;
  static Pki* pki_;
  WhoAmIService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

std::string* SecurityTest::dir_ = nullptr;
Pki* SecurityTest::pki_ = nullptr;

TEST_F(SecurityTest, AgentIdentityComesFromClientCertificate) {
  StartServer();
  std::string reply;
  grpc::Status s = Call("agent-a", &reply);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(reply, "us-east-1/agent-a");
}

TEST_F(SecurityTest, ClientWithoutCertificateIsRefusedAtHandshake) {
  StartServer();
  std::string reply;
  grpc::Status s = Call("", &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, CertificateWithoutAgentSanHasNoIdentity) {
  StartServer();
  std::string reply;
  ASSERT_TRUE(Call("plain", &reply).ok());
  EXPECT_THAT(reply, HasSubstr("no SAN of the form"));
  EXPECT_THAT(reply, HasSubstr("someone.example"));
}

TEST(AgentClaimTest, RegionAndIdMustMatchCertificate) {
  AgentIdentity id{"us-east-1", "agent-a"};
  EXPECT_TRUE(CheckAgentClaim(id, "agent-a", "us-east-1", {}).ok());
  absl::Status s = CheckAgentClaim(id, "agent-a", "eu-west-1", {});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("claims region \"eu-west-1\""));
  EXPECT_EQ(CheckAgentClaim(id, "agent-b", "us-east-1", {}).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckAgentClaim(id, "agent-a", "us-east-1", {"eu-west-1"}).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(AgentSpiffeId("us-east-1", "a"),
            "spiffe://fleetcanary/agent/us-east-1/a");
}

TEST(CredentialsTest, MissingFilesAreNamed) {
  TlsOptions options;
  EXPECT_THAT(MakeServerCredentials(options).status().message(),
              HasSubstr("tls_cert and tls_key are required"));
  options.cert_file = "/nonexistent/cert.pem";
  options.key_file = "/nonexistent/key.pem";
  EXPECT_THAT(MakeServerCredentials(options).status().message(),
              HasSubstr("tls_cert: cannot read \"/nonexistent/cert.pem\""));
  options.insecure = true;
  EXPECT_TRUE(MakeServerCredentials(options).ok());
}

}  // namespace
}  // namespace fleetcanary
