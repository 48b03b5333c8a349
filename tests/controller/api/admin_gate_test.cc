#include "controller/api/admin_gate.h"

#include "common/config/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

using ::testing::HasSubstr;

constexpr char kViewer[] = "Bearer viewer-token-0123456789";
constexpr char kOperator[] = "Bearer operator-token-0123456789";

std::unique_ptr<AdminAuthorizer> MakeAuth() {
  v1::AdminTokens tokens;
  EXPECT_TRUE(ParseYamlToMessage("tokens:\n"
                                 "  - {name: grafana, role: viewer, token: "
                                 "viewer-token-0123456789}\n"
                                 "  - {name: oncall, role: operator, token: "
                                 "operator-token-0123456789}\n",
                                 "tokens.yaml", &tokens)
                  .ok());
  return std::move(AdminAuthorizer::Create(tokens).value());
}

TEST(AdminGateTest, AdminCallsNeedATokenWithTheRole) {
  auto auth = MakeAuth();
  const char* apply = "/fleetcanary.v1.CanaryAdmin/ApplySchedules";
  const char* list = "/fleetcanary.v1.CanaryAdmin/ListAgents";
  EXPECT_EQ(CheckAdminCall(auth.get(), apply, "").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckAdminCall(auth.get(), apply, "Bearer nope-nope-nope").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckAdminCall(auth.get(), apply, kViewer).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(CheckAdminCall(auth.get(), apply, kOperator).ok());
  EXPECT_TRUE(CheckAdminCall(auth.get(), list, kViewer).ok());
  EXPECT_EQ(auth->unauthenticated_total(), 2u);
}

TEST(AdminGateTest, ReflectionNeedsAViewerToken) {
  auto auth = MakeAuth();
  for (const char* path :
       {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"}) {
    EXPECT_EQ(CheckAdminCall(auth.get(), path, "").code(),
              absl::StatusCode::kUnauthenticated)
        << path;
    EXPECT_TRUE(CheckAdminCall(auth.get(), path, kViewer).ok()) << path;
  }
}

TEST(AdminGateTest, AgentSessionsAndHealthPass) {
  auto auth = MakeAuth();
  EXPECT_TRUE(
      CheckAdminCall(auth.get(), "/fleetcanary.v1.AgentSession/Connect", "")
          .ok());
  EXPECT_TRUE(
      CheckAdminCall(auth.get(), "/grpc.health.v1.Health/Check", "").ok());
  EXPECT_TRUE(CheckAdminCall(nullptr, "/grpc.health.v1.Health/Watch", "").ok());
}

TEST(AdminGateTest, ClosedAdminApiSaysHowToOpenIt) {
  absl::Status s =
      CheckAdminCall(nullptr, "/fleetcanary.v1.CanaryAdmin/ListAgents", "");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("--admin_tokens"));
  EXPECT_TRUE(CheckAdminCall(AdminAuthorizer::AllowAll().get(),
                             "/fleetcanary.v1.CanaryAdmin/RunProbe", "")
                  .ok());
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
