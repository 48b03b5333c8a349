// YAML bombs and deep nesting are refused while parsing, with an error that
// names the limit, in bounded memory: the peak RSS of this process (getrusage)
// grows by less than 64 MB, and the expanded-node counter stops the parse at
// its limit instead of a timer.
#include "common/config/yaml_limits.h"

#include <sys/resource.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/config/loader.h"
#include "fleetcanary/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

long PeakRssKb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// "Billion laughs": each level repeats the previous one 9 times, so `levels`
// levels expand to 9^levels nodes from a few hundred bytes.
std::string Bomb(int levels) {
  std::string y = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < levels; ++i) {
    absl::StrAppend(&y, "a", i, ": &a", i, " [");
    for (int k = 0; k < 9; ++k) {
      absl::StrAppend(&y, k ? ", " : "", "*a", i - 1);
    }
    absl::StrAppend(&y, "]\n");
  }
  return y;
}

TEST(YamlLimitsTest, AliasBombIsRefusedNamingTheLimitInBoundedMemory) {
  const std::string bomb = Bomb(12);  // 9^12 = 282 billion nodes.
  ASSERT_LT(bomb.size(), 4096u);
  const long before = PeakRssKb();
  v1::FleetConfig fleet;
  const absl::Status s = ParseYamlToMessage(bomb, "bomb.yaml", &fleet);
  const long after = PeakRssKb();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bomb.yaml:"));
  EXPECT_THAT(s.message(), HasSubstr("max_expanded_nodes"));
  EXPECT_LT(after - before, 64 * 1024) << "peak RSS grew by KB";
}

TEST(YamlLimitsTest, CountsExpandedNodesExactly) {
  YamlLimits limits;
  // Bomb(3): 9 + (1+9*9) ... the exact count matters less than the edge:
  // the same document passes with a limit at its size and fails one below.
  const std::string y = "a: &a [x, x]\nb: [*a, *a]\n";
  // Nodes: map 1, "a" 1, seq 1 + 2, "b" 1, seq 1 + 2*3 = 13.
  limits.max_expanded_nodes = 13;
  EXPECT_TRUE(CheckYamlLimits(y, "y", limits).ok());
  limits.max_expanded_nodes = 12;
  EXPECT_THAT(CheckYamlLimits(y, "y", limits).message(),
              HasSubstr("max_expanded_nodes"));
}

TEST(YamlLimitsTest, DeepNestingSaysWhichLimit) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  v1::FleetConfig fleet;
  const absl::Status s = ParseYamlToMessage(deep, "deep.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("deep.yaml:1:"));
  EXPECT_THAT(s.message(), HasSubstr("nesting deeper than 64 levels"));
  EXPECT_THAT(s.message(), HasSubstr("max_depth"));
}

TEST(YamlLimitsTest, TooManyAliasesAndTooManyBytes) {
  YamlLimits limits;
  limits.max_aliases = 3;
  EXPECT_THAT(
      CheckYamlLimits("a: &a 1\nb: [*a, *a, *a, *a]\n", "y", limits).message(),
      HasSubstr("max_aliases"));
  limits.max_bytes = 10;
  EXPECT_THAT(CheckYamlLimits("a: 12345678901", "y", limits).message(),
              HasSubstr("max_bytes"));
}

TEST(YamlLimitsTest, OrdinaryFilesPass) {
  const std::string y =
      "defaults: &d {rate_per_second: 1}\nother: [*d, *d]\nlist: [1, 2, 3]\n";
  EXPECT_TRUE(CheckYamlLimits(y, "ok.yaml").ok());
}

}  // namespace
}  // namespace fleetcanary
