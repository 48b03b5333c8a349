#include "common/aws/partition.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace aws {

Partition PartitionForRegion(absl::string_view region) {
  if (absl::StartsWith(region, "cn-")) {
    return {"aws-cn", "amazonaws.com.cn", "on.amazonwebservices.com.cn"};
  }
  if (absl::StartsWith(region, "us-gov-")) {
    return {"aws-us-gov", "amazonaws.com", "on.aws"};
  }
  return {"aws", "amazonaws.com", "on.aws"};
}

std::string CloudWatchEndpoint(absl::string_view region) {
  return absl::StrCat("https://monitoring.", region, ".",
                      PartitionForRegion(region).dns_suffix);
}

std::string StsEndpoint(absl::string_view region) {
  if (region.empty()) return "https://sts.amazonaws.com";
  return absl::StrCat("https://sts.", region, ".",
                      PartitionForRegion(region).dns_suffix);
}

}  // namespace aws
}  // namespace fleetcanary
