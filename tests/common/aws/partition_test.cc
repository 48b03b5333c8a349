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
  EXPECT_EQ(PartitionForRegion("cn-north-1").function_url_suffix,
            "on.amazonwebservices.com.cn");
}

}  // namespace
}  // namespace aws
}  // namespace fleetcanary
