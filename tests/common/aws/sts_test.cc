// STS response parsing with libxml2: success, error documents, malformed
// and hostile XML.
#include "common/aws/sts.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace aws {
namespace {

using ::testing::HasSubstr;

constexpr char kOk[] =
    R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>tok&amp;en</SessionToken>
      <SecretAccessKey>secret</SecretAccessKey>
      <Expiration>2024-01-31T12:00:00Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>)";

TEST(StsResponse, ParsesCredentials) {
  auto c = ParseStsResponse("AssumeRoleWithWebIdentity", 200, kOk);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->keys.access_key_id, "ASIAEXAMPLE");
  EXPECT_EQ(c->keys.secret_access_key, "secret");
  EXPECT_EQ(c->keys.session_token, "tok&en");
  EXPECT_EQ(c->expiration, absl::FromUnixSeconds(1706702400));
}

TEST(StsResponse, ErrorDocumentsMapToStatus) {
  const char* denied = R"(<ErrorResponse><Error><Type>Sender</Type>
    <Code>InvalidIdentityToken</Code><Message>bad token</Message></Error>
    <RequestId>1</RequestId></ErrorResponse>)";
  auto c = ParseStsResponse("AssumeRoleWithWebIdentity", 400, denied);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(c.status().message(), HasSubstr("InvalidIdentityToken"));
  EXPECT_THAT(c.status().message(), HasSubstr("bad token"));
  const char* throttled = R"(<ErrorResponse><Error><Code>Throttling</Code>
    <Message>slow down</Message></Error></ErrorResponse>)";
  EXPECT_EQ(ParseStsResponse("AssumeRole", 400, throttled).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ParseStsResponse("AssumeRole", 503, "<html>").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(StsResponse, MalformedIsDataLossNamingTheAction) {
  for (const char* body :
       {"", "not xml", "<AssumeRoleResponse>", "<Other/>",
        "<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>",
        "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>a"
        "</AccessKeyId></Credentials></AssumeRoleResult></AssumeRoleResponse>",
        "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>a"
        "</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t"
        "</SessionToken><Expiration>tomorrow</Expiration></Credentials>"
        "</AssumeRoleResult></AssumeRoleResponse>"}) {
    auto c = ParseStsResponse("AssumeRole", 200, body);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss) << body;
    EXPECT_THAT(c.status().message(), HasSubstr("STS AssumeRole")) << body;
  }
}

TEST(StsResponse, ExternalEntitiesAreNotExpanded) {
  const std::string xxe =
      R"(<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<AssumeRoleResponse><AssumeRoleResult><Credentials>
<AccessKeyId>&x;</AccessKeyId><SecretAccessKey>s</SecretAccessKey>
<SessionToken>t</SessionToken><Expiration>2024-01-31T12:00:00Z</Expiration>
</Credentials></AssumeRoleResult></AssumeRoleResponse>)";
  auto c = ParseStsResponse("AssumeRole", 200, xxe);
  if (c.ok()) {
    EXPECT_THAT(c->keys.access_key_id, ::testing::Not(HasSubstr("root:")));
  }
}

TEST(Iso8601, Parses) {
  EXPECT_EQ(*ParseIso8601("2024-01-31T12:00:00Z"),
            absl::FromUnixSeconds(1706702400));
  EXPECT_EQ(*ParseIso8601("2024-01-31T12:00:00.500Z"),
            absl::FromUnixSeconds(1706702400) + absl::Milliseconds(500));
  EXPECT_FALSE(ParseIso8601("31/01/2024").ok());
}

}  // namespace
}  // namespace aws
}  // namespace fleetcanary
