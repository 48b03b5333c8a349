#include "common/aws/partition.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace aws {
namespace {

TEST(Partition, ByRegionPrefix) {
  EXPECT_EQ(PartitionForRegion("us-east-1").name, "aws");
  EXPECT_EQ(PartitionForRegion("cn-north-1").name, "aws-cn");
  EXPECT_EQ(PartitionForRegion("us-gov-west-1").name, "aws-us-gov");
  EXPECT_EQ(CloudWatchEndpoint("eu-west-1"),
            "https://monitoring.eu-west-1.amazonaws.com");
  EXPECT_EQ(CloudWatchEndpoint("cn-northwest-1"),
            "https://monitoring.cn-northwest-1.amazonaws.com.cn");
  EXPECT_EQ(CloudWatchEndpoint("us-gov-east-1"),
            "https://monitoring.us-gov-east-1.amazonaws.com");
  EXPECT_EQ(StsEndpoint("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(StsEndpoint(""), "https://sts.amazonaws.com");
  // Function URLs are lambda-url.<region>.on.aws in China too, although the
  // service endpoints there end in amazonaws.com.cn.
  EXPECT_EQ(PartitionForRegion("cn-north-1").function_url_suffix, "on.aws");
  EXPECT_EQ(PartitionForRegion("us-gov-west-1").function_url_suffix, "on.aws");
}

TEST(Partition, RoleArns) {
  for (const char* good :
       {"arn:aws:iam::123456789012:role/canary",
        "arn:aws-cn:iam::123456789012:role/path/to/canary-reader",
        "arn:aws-us-gov:iam::000000000001:role/a+b=c,d.e@f_g-h"}) {
    EXPECT_TRUE(ValidateRoleArn(good).ok()) << good;
  }
  for (const char* bad :
       {"", "canary", "arn:aws:iam::123456789012:user/canary",
        "arn:aws:iam::12345678901:role/canary",
        "arn:aws:iam::1234567890123:role/canary",
        "arn:aws:iam::12345678901x:role/canary",
        "arn:aws:iam:us-east-1:123456789012:role/canary",
        "arn:aws:sts::123456789012:role/canary",
        "arn:aws-eu:iam::123456789012:role/canary",
        "arn:aws:iam::123456789012:role/", "arn:aws:iam::123456789012:role/a/",
        "arn:aws:iam::123456789012:role/has space",
        "arn:aws:iam::123456789012:role/"
        "a2345678901234567890123456789012345678901234567890123456789012345"}) {
    const absl::Status s = ValidateRoleArn(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("is not an IAM role ARN"), std::string::npos)
        << s;
  }
}

}  // namespace
}  // namespace aws
}  // namespace fleetcanary
