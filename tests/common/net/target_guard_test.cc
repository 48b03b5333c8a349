#include "common/net/target_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<TargetGuard> Guard(TargetGuardOptions options = {}) {
  absl::StatusOr<std::unique_ptr<TargetGuard>> g =
      TargetGuard::Create(std::move(options));
  EXPECT_TRUE(g.ok()) << g.status();
  return std::move(*g);
}

TEST(TargetGuardTest, DefaultAllowsOnlyFunctionUrlHosts) {
  auto guard = Guard();
  EXPECT_TRUE(
      guard->CheckUrl("https://abc123.lambda-url.us-east-1.on.aws/").ok());
  EXPECT_TRUE(
      guard->CheckUrl("https://ABC.LAMBDA-URL.eu-west-1.on.aws:443/x?y").ok());
  // China and GovCloud Function URLs have the same form.
  EXPECT_TRUE(
      guard->CheckUrl("https://abc.lambda-url.cn-north-1.on.aws/").ok());
  EXPECT_TRUE(
      guard->CheckUrl("https://abc.lambda-url.us-gov-west-1.on.aws/").ok());
  for (const char* bad :
       {"https://example.com/", "https://a.b.lambda-url.us-east-1.on.aws/",
        "https://abc.lambda-url.cn-north-1.on.amazonwebservices.com.cn/",
        "https://abc.lambda-url.cn-north-1.on.aws.x/",
        "https://lambda-url.us-east-1.on.aws/", "http://169.254.169.254/",
        "https://abc.lambda-url.us-east-1.on.aws.evil.com/"}) {
    absl::Status s = guard->CheckUrl(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << bad;
    EXPECT_THAT(s.message(), HasSubstr("not in the target allowlist"));
  }
}

// VPC interface endpoints and the other partitions' CloudWatch hosts, as the
// agent allows them for metrics reads (common/aws/partition.h).
TEST(TargetGuardTest, CloudWatchPatternsAcrossPartitionsAndVpcEndpoints) {
  TargetGuardOptions o;
  o.host_patterns = {"monitoring.*.amazonaws.com",
                     "monitoring.*.amazonaws.com.cn",
                     "*.monitoring.*.vpce.amazonaws.com"};
  auto guard = Guard(o);
  for (const char* ok :
       {"https://monitoring.us-east-1.amazonaws.com/",
        "https://monitoring.cn-north-1.amazonaws.com.cn/",
        "https://vpce-0abc-xyz.monitoring.eu-west-1.vpce.amazonaws.com/"}) {
    EXPECT_TRUE(guard->CheckUrl(ok).ok()) << ok;
  }
  EXPECT_FALSE(
      guard->CheckUrl("https://monitoring.us-east-1.amazonaws.com.evil/").ok());
}

TEST(TargetGuardTest, RefusesMalformedUrls) {
  auto guard = Guard();
  EXPECT_EQ(guard->CheckUrl("ftp://x/").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      guard->CheckUrl("https://user@abc.lambda-url.us-east-1.on.aws/").code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(guard->CheckUrl("https:///x").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TargetGuardTest, RefusesInternalAddressesByDefault) {
  auto guard = Guard();
  for (const char* ip :
       {"169.254.169.254", "10.1.2.3", "172.16.0.1", "172.31.255.255",
        "192.168.1.1", "127.0.0.1", "127.9.9.9", "::1", "fe80::1",
        "fd12:3456::1", "100.64.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1",
        "::ffff:169.254.169.254", "224.0.0.1", "fd00:ec2::254"}) {
    absl::Status s = guard->CheckAddressText(ip);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << ip;
  }
  EXPECT_THAT(guard->CheckAddressText("169.254.169.254").message(),
              HasSubstr("169.254.169.254 is link-local (cloud metadata)"));
  EXPECT_THAT(guard->CheckAddressText("::ffff:10.0.0.1").message(),
              HasSubstr("10.0.0.1 is private"));
  for (const char* ip : {"3.5.140.2", "52.94.236.248", "2600:1f18::1",
                         "172.32.0.1", "192.169.0.1"}) {
    EXPECT_TRUE(guard->CheckAddressText(ip).ok()) << ip;
  }
}

TEST(TargetGuardTest, ExplicitAllowances) {
  TargetGuardOptions options;
  options.allow_loopback = true;
  options.allowed_hosts = {"127.0.0.1", "Canary.Internal"};
  options.allowed_networks = {"10.20.0.0/16"};
  auto guard = Guard(options);
  EXPECT_TRUE(guard->CheckUrl("http://127.0.0.1:8080/").ok());
  EXPECT_TRUE(guard->CheckUrl("http://canary.internal/").ok());
  EXPECT_TRUE(guard->CheckAddressText("127.0.0.1").ok());
  EXPECT_TRUE(guard->CheckAddressText("::1").ok());
  EXPECT_TRUE(guard->CheckAddressText("10.20.3.4").ok());
  EXPECT_FALSE(guard->CheckAddressText("10.21.3.4").ok());
  // Loopback allowed does not open the metadata endpoint.
  EXPECT_FALSE(guard->CheckAddressText("169.254.169.254").ok());
}

TEST(TargetGuardTest, ChecksSockaddrs) {
  auto guard = Guard();
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  inet_pton(AF_INET, "169.254.169.254", &v4.sin_addr);
  EXPECT_FALSE(
      guard->CheckAddress(reinterpret_cast<sockaddr*>(&v4), sizeof(v4)).ok());
  inet_pton(AF_INET, "3.5.140.2", &v4.sin_addr);
  EXPECT_TRUE(
      guard->CheckAddress(reinterpret_cast<sockaddr*>(&v4), sizeof(v4)).ok());
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::1", &v6.sin6_addr);
  EXPECT_FALSE(
      guard->CheckAddress(reinterpret_cast<sockaddr*>(&v6), sizeof(v6)).ok());
  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  EXPECT_FALSE(guard->CheckAddress(&unix_addr, sizeof(unix_addr)).ok());
}

TEST(TargetGuardTest, BadOptionsAreRefused) {
  TargetGuardOptions options;
  options.allowed_networks = {"10.0.0.0/33"};
  EXPECT_EQ(TargetGuard::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.allowed_networks = {"not-an-ip/8"};
  EXPECT_THAT(TargetGuard::Create(options).status().message(),
              HasSubstr("allowed_networks"));
}

TEST(TargetGuardTest, AllowAllIsForDirectUseOnly) {
  auto guard = TargetGuard::AllowAll();
  EXPECT_TRUE(guard->CheckUrl("http://127.0.0.1/").ok());
  EXPECT_TRUE(guard->CheckAddressText("169.254.169.254").ok());
}

}  // namespace
}  // namespace fleetcanary
