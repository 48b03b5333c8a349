// AgentTargetGuard: the agent's probe allowlist comes from its own config
// (never allow-all): Lambda Function URLs by default, configured hosts,
// loopback and private ranges only when switched on.
#include "agent/agent_app.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace agent {
namespace {

TEST(AgentTargetGuardTest, DefaultAllowsFunctionUrlsOnly) {
  v1::AgentConfig c;
  auto guard = AgentTargetGuard(c);
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_TRUE(
      (*guard)->CheckUrl("https://abc.lambda-url.us-east-1.on.aws/").ok());
  EXPECT_EQ((*guard)->CheckUrl("http://127.0.0.1:8080/").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*guard)->CheckUrl("http://localhost/").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*guard)->CheckAddressText("127.0.0.1").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*guard)->CheckAddressText("10.1.2.3").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*guard)->CheckAddressText("169.254.169.254").code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AgentTargetGuardTest, LoopbackSwitchAllowsLoopbackHostsAndAddresses) {
  v1::AgentConfig c;
  c.set_target_allow_loopback(true);
  auto guard = AgentTargetGuard(c);
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_TRUE((*guard)->CheckUrl("http://127.0.0.1:8080/x").ok());
  EXPECT_TRUE((*guard)->CheckUrl("http://localhost:8080/x").ok());
  EXPECT_TRUE((*guard)->CheckAddressText("127.0.0.1").ok());
  // Still no private ranges or metadata.
  EXPECT_FALSE((*guard)->CheckAddressText("10.1.2.3").ok());
  EXPECT_FALSE((*guard)->CheckAddressText("169.254.169.254").ok());
  EXPECT_FALSE((*guard)->CheckUrl("http://example.com/").ok());
}

TEST(AgentTargetGuardTest, ConfiguredHostsAndPrivateSwitch) {
  v1::AgentConfig c;
  c.add_target_allow_hosts("canary.internal.example");
  c.set_target_allow_private(true);
  auto guard = AgentTargetGuard(c);
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_TRUE((*guard)->CheckUrl("https://canary.internal.example/").ok());
  EXPECT_FALSE((*guard)->CheckUrl("https://other.internal.example/").ok());
  EXPECT_TRUE((*guard)->CheckAddressText("10.1.2.3").ok());
  EXPECT_FALSE((*guard)->CheckAddressText("127.0.0.1").ok());
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
