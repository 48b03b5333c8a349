// The MODE_DIFFERENCE detector on its own
// (analysis/detectors/mode_comparison.h): the split SPRT over paired
// buckets and its saved state.
#include "analysis/detectors/mode_comparison.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/detection_config.h"
#include "analysis/detectors/context.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis::detectors {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);  // 2024-02-01.

class ModeComparisonTest : public ::testing::Test {
 protected:
  ModeComparisonTest() {
    ctx_.cfg = *ResolveDetectionConfig({});  // alpha 0.01, RR1 3.
    ctx_.out = &out_;
  }

  // One bucket: `n` probes per mode, `x_s` / `x_b` failures.
  void Bucket(ModeComparison* c, uint64_t n, uint64_t x_s, uint64_t x_b) {
    c->Add(v1::RESPONSE_STREAM, n, x_s);
    c->Add(v1::BUFFERED, n, x_b);
    t_ += absl::Minutes(1);
    c->CloseBucket(&ctx_, t_);
  }

  std::vector<v1::VerdictState> States() const {
    std::vector<v1::VerdictState> s;
    for (const v1::Verdict& v : out_) s.push_back(v.state());
    return s;
  }

  const Key key_{"us-east-1", "canary", v1::INVOKE_MODE_UNSPECIFIED, "2B"};
  Context ctx_;
  std::vector<v1::Verdict> out_;
  absl::Time t_ = kT0;
};

TEST_F(ModeComparisonTest, StreamingOnlyFailuresAreSuspectThenARegression) {
  ModeComparison c(key_);
  // Each stream-only failure adds ln(0.75 / 0.5) to the LLR; ln A = ln 99.
  Bucket(&c, 100, 10, 0);  // LLR 4.05: past half of ln A.
  EXPECT_EQ(States(), std::vector<v1::VerdictState>{v1::SUSPECT});
  Bucket(&c, 100, 10, 0);  // LLR 8.1 >= ln A.
  ASSERT_EQ(States(),
            (std::vector<v1::VerdictState>{v1::SUSPECT, v1::REGRESSION}));
  const v1::Evidence& ev = out_.back().evidence();
  EXPECT_EQ(ev.statistic_name(), "split_sprt_llr");
  EXPECT_EQ(ev.trials(), 200u);
  EXPECT_EQ(ev.failures(), 20u);
  EXPECT_EQ(ev.control_failures(), 0u);
  EXPECT_NEAR(ev.threshold(), std::log(99.0), 1e-12);
}

TEST_F(ModeComparisonTest, EqualFailuresNeverMoveIt) {
  ModeComparison c(key_);
  for (int i = 0; i < 50; ++i) Bucket(&c, 100, 2, 2);
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(c.life().state(), v1::HEALTHY);
}

TEST_F(ModeComparisonTest, ABucketWithOneModeIsNotScored) {
  ModeComparison c(key_);
  c.Add(v1::RESPONSE_STREAM, 100, 50);
  EXPECT_TRUE(c.pending());
  c.CloseBucket(&ctx_, t_ + absl::Minutes(1));
  EXPECT_FALSE(c.pending());
  EXPECT_TRUE(out_.empty());
}

TEST_F(ModeComparisonTest, SavedStateContinuesTheSame) {
  ModeComparison c(key_);
  Bucket(&c, 100, 10, 0);
  c.Add(v1::RESPONSE_STREAM, 7, 1);  // An open bucket is saved too.
  v1::ModeComparisonState saved;
  c.Save(&saved);
  absl::StatusOr<ModeComparison> restored =
      ModeComparison::Load(saved, "mode_difference[0]");
  ASSERT_TRUE(restored.ok()) << restored.status();
  v1::ModeComparisonState again;
  restored->Save(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(saved, again));
}

TEST_F(ModeComparisonTest, LoadRejectsMoreFailuresThanTrials) {
  ModeComparison c(key_);
  v1::ModeComparisonState saved;
  c.Save(&saved);
  saved.set_segment_stream_failures(3);
  absl::StatusOr<ModeComparison> restored =
      ModeComparison::Load(saved, "mode_difference[0]");
  ASSERT_EQ(restored.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      restored.status().message().find("mode_difference[0].segment_stream"),
      absl::string_view::npos)
      << restored.status();
}

}  // namespace
}  // namespace fleetcanary::analysis::detectors
