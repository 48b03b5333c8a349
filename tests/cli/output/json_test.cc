// canaryctl's machine output: what scripts get from -o json.
#include "cli/output/json.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "cli/commands/verdict_format.h"
#include "common/config/loader.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace cli {
namespace {

using nlohmann::json;

TEST(FriendlyJsonTest, NumbersAreNumbersZerosArePresentNoiseIsGone) {
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.set_state(v1::HEALTHY);
  v.mutable_evidence()->set_trials(12345678901234ULL);
  v.mutable_evidence()->set_failures(0);
  v.mutable_evidence()->set_statistic(2.7e-17);        // Noise around 0.
  v.mutable_evidence()->set_p_value(0.1 + 0.2);        // 0.30000000000000004
  v.mutable_evidence()->set_rate(0.0012345678901234);  // Kept to 10 digits.
  const json doc = json::parse(FriendlyJson(v, /*pretty=*/false));
  EXPECT_TRUE(doc["evidence"]["trials"].is_number_unsigned()) << doc;
  EXPECT_EQ(doc["evidence"]["trials"].get<uint64_t>(), 12345678901234ULL);
  EXPECT_TRUE(doc["evidence"]["failures"].is_number()) << doc;  // A zero.
  EXPECT_EQ(doc["evidence"]["statistic"].get<double>(), 0.0);
  EXPECT_EQ(doc["evidence"]["p_value"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(doc["evidence"]["rate"].get<double>(), 0.001234567890);
  // Still the admin API's message: it reads back.
  v1::Verdict back;
  ASSERT_TRUE(JsonToMessage(FriendlyJson(v, true), &back).ok());
  EXPECT_EQ(back.evidence().trials(), 12345678901234ULL);
}

TEST(FriendlyJsonTest, PlaceholderTimesAreAbsent) {
  v1::Verdict v;
  v.mutable_since()->set_seconds(0);  // Set, but the epoch: "never".
  v.mutable_updated()->set_seconds(-9223372037);  // absl::InfinitePast clamp.
  v.mutable_evidence()->mutable_change_time()->set_seconds(1706745600);
  const std::string text = FriendlyJson(v, /*pretty=*/true);
  const json doc = json::parse(text);
  EXPECT_FALSE(doc.contains("since")) << text;
  EXPECT_FALSE(doc.contains("updated")) << text;
  EXPECT_EQ(doc["evidence"]["change_time"], "2024-02-01T00:00:00Z") << text;
  EXPECT_FALSE(absl::StrContains(text, "1970-")) << text;
  EXPECT_FALSE(absl::StrContains(text, "1677-")) << text;
}

TEST(FriendlyJsonTest, MapsAndListsAreNormalizedToo) {
  v1::RunProbeEvent::Done done;
  v1::ProbeSummary* s = done.add_summaries();
  (*s->mutable_by_class())["OK"] = 7;
  s->set_error_rate(0);
  const json doc = json::parse(FriendlyJson(done, false));
  EXPECT_EQ(doc["summaries"][0]["by_class"]["OK"], 7);
  EXPECT_EQ(doc["summaries"][0]["error_rate"], 0.0);
  EXPECT_EQ(doc["total_probes"], 0);
}

TEST(VerdictTableTest, SizesAreOrderedByValueNotText) {
  std::vector<v1::Verdict> verdicts;
  for (const char* size : {"64KiB", "1MiB", "2B", "", "1KiB"}) {
    v1::Verdict v;
    v.set_kind(v1::STREAM_HEALTH);
    v.set_state(v1::HEALTHY);
    v.mutable_key()->set_region("r");
    v.mutable_key()->set_size_class(size);
    verdicts.push_back(v);
  }
  const std::string table = VerdictTable(verdicts);
  const size_t all = table.find(" - ");
  const size_t b2 = table.find("2B");
  const size_t k1 = table.find("1KiB");
  const size_t k64 = table.find("64KiB");
  const size_t m1 = table.find("1MiB");
  EXPECT_LT(all, b2) << table;
  EXPECT_LT(b2, k1) << table;
  EXPECT_LT(k1, k64) << table;
  EXPECT_LT(k64, m1) << table;
}

}  // namespace
}  // namespace cli
}  // namespace fleetcanary
