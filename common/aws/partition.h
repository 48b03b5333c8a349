// AWS partitions (aws, aws-cn, aws-us-gov) and the endpoints fleetcanary
// talks to in each: CloudWatch ("monitoring"), STS, and the Function URL host
// suffix. A region belongs to a partition by its prefix: "cn-" is aws-cn,
// "us-gov-" is aws-us-gov, everything else is aws.
//
// Thread-safety: pure functions.
#ifndef FLEETCANARY_COMMON_AWS_PARTITION_H_
#define FLEETCANARY_COMMON_AWS_PARTITION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fleetcanary {
namespace aws {

struct Partition {
  std::string name;        // "aws", "aws-cn", "aws-us-gov".
  std::string dns_suffix;  // "amazonaws.com", "amazonaws.com.cn".
  // Function URL hosts are "<url-id>.lambda-url.<region>.<suffix>"; "on.aws"
  // in every partition (aws-cn included, as its Lambda documentation gives
  // the format), unlike dns_suffix.
  std::string function_url_suffix;
};

// The partition of `region` (never fails: unknown prefixes are "aws").
Partition PartitionForRegion(absl::string_view region);

// "https://monitoring.<region>.<dns_suffix>".
std::string CloudWatchEndpoint(absl::string_view region);
// "https://sts.<region>.<dns_suffix>" (regional STS, what SDKs use by
// default since 2022); "https://sts.amazonaws.com" when `region` is empty.
std::string StsEndpoint(absl::string_view region);
// Checks an IAM role ARN: "arn:<partition>:iam::<12-digit account>:role/
// <path/>name", partition aws, aws-cn or aws-us-gov, name of 1-64 of
// [A-Za-z0-9+=,.@_-], whole path at most 512 characters. INVALID_ARGUMENT
// saying what is wrong (callers prefix the field name).
absl::Status ValidateRoleArn(absl::string_view arn);

// Host patterns (target guard syntax, `*` = one label) of Function URLs in
// every partition.
inline constexpr const char* kFunctionUrlHostPatterns[] = {
    "*.lambda-url.*.on.aws"};
// Host patterns of CloudWatch endpoints in every partition, including the
// FIPS ones and interface VPC endpoints
// ("vpce-<id>-<suffix>.monitoring.<region>.vpce.amazonaws.com").
inline constexpr const char* kCloudWatchHostPatterns[] = {
    "monitoring.*.amazonaws.com", "monitoring.*.amazonaws.com.cn",
    "monitoring-fips.*.amazonaws.com", "*.monitoring.*.vpce.amazonaws.com",
    "*.monitoring.*.vpce.amazonaws.com.cn"};

}  // namespace aws
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_AWS_PARTITION_H_
