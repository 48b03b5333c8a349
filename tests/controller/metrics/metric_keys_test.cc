#include "controller/metrics/metric_keys.h"

#include <string>
#include <variant>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash_testing.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

TEST(MetricKeysTest, PlatformNamesDecodeToTheirKey) {
  const CounterKey key = ParseCounterName(
      PlatformCounterName("Url5xxCount", "us-east-1", "canary", v1::BUFFERED));
  ASSERT_TRUE(std::holds_alternative<PlatformCounter>(key));
  EXPECT_EQ(std::get<PlatformCounter>(key),
            (PlatformCounter{PlatformMetric::kUrl5xxCount,
                             {"us-east-1", "canary", v1::BUFFERED}}));
  EXPECT_EQ(std::get<PlatformCounter>(ParseCounterName(PlatformCounterName(
                "Invocations", "r", "t", v1::RESPONSE_STREAM))),
            (PlatformCounter{PlatformMetric::kInvocations,
                             {"r", "t", v1::RESPONSE_STREAM}}));
}

TEST(MetricKeysTest, PhantomNamesDecodeToTheirKey) {
  const CounterKey key = ParseCounterName(
      PhantomCounterName("eu-west-1", "gone", v1::RESPONSE_STREAM));
  ASSERT_TRUE(std::holds_alternative<PhantomCounter>(key));
  EXPECT_EQ(std::get<PhantomCounter>(key),
            (PhantomCounter{{"eu-west-1", "gone", v1::RESPONSE_STREAM}}));
}

TEST(MetricKeysTest, OtherNamesStayPlainNames) {
  for (const std::string& name :
       {std::string("ingest_batches_total"),
        // Platform metrics that are not exported.
        PlatformCounterName("Throttles", "r", "t", v1::BUFFERED),
        // Names that do not decode: a '|' inside a field, an unknown mode.
        PlatformCounterName("Errors", "r|x", "t", v1::BUFFERED),
        std::string("platform|Errors|r|t|weird"),
        PhantomCounterName("r", "t|x", v1::BUFFERED),
        std::string("phantom|r|t")}) {
    const CounterKey key = ParseCounterName(name);
    ASSERT_TRUE(std::holds_alternative<std::string>(key)) << name;
    EXPECT_EQ(std::get<std::string>(key), name);
  }
}

TEST(MetricKeysTest, KeysHashConsistentlyWithEquality) {
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      TargetMode{"r", "t", v1::BUFFERED},
      TargetMode{"r", "t", v1::RESPONSE_STREAM},
      TargetMode{"r", "u", v1::BUFFERED},
      TargetMode{"rt", "", v1::BUFFERED},
  }));
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      SizedStream{"r", "t", v1::BUFFERED, ""},
      SizedStream{"r", "t", v1::BUFFERED, "1KiB"},
      SizedStream{"r", "t", v1::RESPONSE_STREAM, "1KiB"},
  }));
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      VerdictSeries{v1::STREAM_HEALTH, {"r", "t", v1::BUFFERED, ""}},
      VerdictSeries{v1::SIZE_TREND, {"r", "t", v1::BUFFERED, ""}},
  }));
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      PlatformCounter{PlatformMetric::kErrors, {"r", "t", v1::BUFFERED}},
      PlatformCounter{PlatformMetric::kInvocations, {"r", "t", v1::BUFFERED}},
  }));
  absl::flat_hash_set<PhantomCounter> set = {
      PhantomCounter{{"r", "t", v1::BUFFERED}}};
  EXPECT_TRUE(set.contains(PhantomCounter{{"r", "t", v1::BUFFERED}}));
  EXPECT_FALSE(set.contains(PhantomCounter{{"r", "t", v1::RESPONSE_STREAM}}));
}

TEST(MetricKeysTest, VerdictKeysComeFromTheProtoKey) {
  v1::StreamKey key;
  key.set_region("r");
  key.set_target("t");
  key.set_mode(v1::RESPONSE_STREAM);
  EXPECT_EQ(SizedStreamOf(key),
            (SizedStream{"r", "t", v1::RESPONSE_STREAM, ""}));
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
