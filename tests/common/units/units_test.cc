#include "common/units/units.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

TEST(ParseBytesTest, AcceptsPlainAndUnits) {
  EXPECT_EQ(*ParseBytes("2"), 2u);
  EXPECT_EQ(*ParseBytes("1Ki"), 1024u);
  EXPECT_EQ(*ParseBytes("64Ki"), 65536u);
  EXPECT_EQ(*ParseBytes("64KiB"), 65536u);
  EXPECT_EQ(*ParseBytes("1Mi"), 1048576u);
  EXPECT_EQ(*ParseBytes("1K"), 1000u);
  EXPECT_EQ(*ParseBytes("6MB"), 6000000u);
  EXPECT_EQ(*ParseBytes("1.5Ki"), 1536u);
  EXPECT_EQ(*ParseBytes(" 7B "), 7u);
  EXPECT_EQ(*ParseBytes("0"), 0u);
}

TEST(ParseBytesTest, RefusesGarbageWithClearError) {
  for (const char* bad :
       {"", "Ki", "-1", "1Kx", "abc", "1.3", "0.1B", "99999999999Ti", "1e3"}) {
    absl::StatusOr<uint64_t> r = ParseBytes(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("invalid byte size"));
  }
}

TEST(ParseBytesTest, ListOfSizes) {
  EXPECT_THAT(*ParseBytesList("2,1Ki,64Ki,1Mi"),
              ::testing::ElementsAre(2, 1024, 65536, 1048576));
  EXPECT_FALSE(ParseBytesList("2,,x").ok());
  EXPECT_FALSE(ParseBytesList("").ok());
}

TEST(FormatBytesTest, StableLabels) {
  EXPECT_EQ(FormatBytes(2), "2B");
  EXPECT_EQ(FormatBytes(1024), "1KiB");
  EXPECT_EQ(FormatBytes(65536), "64KiB");
  EXPECT_EQ(FormatBytes(1048576), "1MiB");
  EXPECT_EQ(FormatBytes(1000), "1000B");
  EXPECT_EQ(FormatBytes(0), "0B");
}

TEST(ParseDurationTest, AcceptsCommonForms) {
  EXPECT_EQ(*ParseDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDuration("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseDuration("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("2h"), absl::Hours(2));
  EXPECT_EQ(*ParseDuration("1d"), absl::Hours(24));
  EXPECT_EQ(*ParseDuration("1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
}

TEST(ParseDurationTest, RefusesBadInput) {
  for (const char* bad : {"", "abc", "-5s", "10", "inf", "5 parsecs"}) {
    absl::StatusOr<absl::Duration> r = ParseDuration(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("invalid duration"));
  }
}

}  // namespace
}  // namespace fleetcanary
