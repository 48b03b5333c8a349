#include "common/aws/partition.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace fleetcanary {
namespace aws {

Partition PartitionForRegion(absl::string_view region) {
  if (absl::StartsWith(region, "cn-")) {
    // Function URLs are <id>.lambda-url.<region>.on.aws in the China
    // regions too (the aws-cn Lambda documentation); only the service
    // endpoints use amazonaws.com.cn.
    return {"aws-cn", "amazonaws.com.cn", "on.aws"};
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

absl::Status ValidateRoleArn(absl::string_view arn) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", arn.substr(0, 128), "\" is not an IAM role ARN (",
                     why, "; expected arn:aws:iam::123456789012:role/name)"));
  };
  const std::vector<absl::string_view> parts =
      absl::StrSplit(arn, absl::MaxSplits(':', 5));
  if (parts.size() != 6 || parts[0] != "arn") return bad("not arn:...");
  if (parts[1] != "aws" && parts[1] != "aws-cn" && parts[1] != "aws-us-gov") {
    return bad("partition must be aws, aws-cn or aws-us-gov");
  }
  if (parts[2] != "iam") return bad("service must be iam");
  if (!parts[3].empty()) return bad("IAM ARNs have no region");
  if (parts[4].size() != 12) return bad("account must be 12 digits");
  for (char c : parts[4]) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return bad("account must be 12 digits");
    }
  }
  absl::string_view resource = parts[5];
  if (!absl::ConsumePrefix(&resource, "role/")) {
    return bad("resource must be role/<name>");
  }
  if (resource.size() > 512) return bad("role path longer than 512");
  const size_t slash = resource.rfind('/');
  const absl::string_view name =
      slash == absl::string_view::npos ? resource : resource.substr(slash + 1);
  if (name.empty() || name.size() > 64) return bad("role name of 1-64 chars");
  for (char c : resource) {
    const bool ok =
        absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
        absl::string_view("+=,.@_-/").find(c) != absl::string_view::npos;
    if (!ok) return bad("role name has a character IAM does not allow");
  }
  return absl::OkStatus();
}

}  // namespace aws
}  // namespace fleetcanary
