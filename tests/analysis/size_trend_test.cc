// The SIZE_TREND detector on its own (analysis/detectors/size_trend.h): the
// window test, the verdicts the engine's per-window decisions drive, and its
// saved state.
#include "analysis/detectors/size_trend.h"

#include <optional>
#include <string>
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

class SizeTrendTest : public ::testing::Test {
 protected:
  SizeTrendTest() {
    ctx_.cfg = *ResolveDetectionConfig({});  // One-hour windows.
    ctx_.out = &out_;
  }

  // Fills one window, failures growing with size when `trend`, and closes
  // it with the engine's decision `significant`.
  void Window(TrendFamily* f, bool trend, bool significant) {
    f->Add(1024, 1000, trend ? 0 : 5);
    f->Add(65536, 1000, 5);
    f->Add(1048576, 1000, trend ? 40 : 5);
    const std::optional<TrendTest> test = f->Test();
    t_ += absl::Hours(1);
    f->CloseWindow(&ctx_, t_, absl::Hours(1), test,
                   test ? test->p_increasing : 1.0, significant);
  }

  std::vector<v1::VerdictState> States() const {
    std::vector<v1::VerdictState> s;
    for (const v1::Verdict& v : out_) s.push_back(v.state());
    return s;
  }

  const Key key_{"us-east-1", "canary", v1::RESPONSE_STREAM, ""};
  Context ctx_;
  std::vector<v1::Verdict> out_;
  absl::Time t_ = kT0;
};

TEST_F(SizeTrendTest, TheWindowTestNeedsTwoSizesAndAFailure) {
  TrendFamily f(key_);
  f.Add(1024, 100, 3);
  EXPECT_FALSE(f.Test().has_value());
  f.Add(2048, 100, 0);
  EXPECT_TRUE(f.Test().has_value());
  TrendFamily clean(key_);
  clean.Add(1024, 100, 0);
  clean.Add(2048, 100, 0);
  EXPECT_FALSE(clean.Test().has_value());
}

TEST_F(SizeTrendTest, IncreasingFailuresAreSignificant) {
  TrendFamily f(key_);
  f.Add(1024, 1000, 0);
  f.Add(65536, 1000, 5);
  f.Add(1048576, 1000, 40);
  const std::optional<TrendTest> test = f.Test();
  ASSERT_TRUE(test.has_value());
  EXPECT_LT(test->p_increasing, 1e-6);
}

TEST_F(SizeTrendTest, TwoSignificantWindowsAreARegression) {
  TrendFamily f(key_);
  Window(&f, true, true);
  EXPECT_EQ(States(), std::vector<v1::VerdictState>{v1::SUSPECT});
  Window(&f, true, true);
  EXPECT_EQ(f.life().state(), v1::REGRESSION);
  const v1::Evidence& ev = f.life().verdict().evidence();
  EXPECT_EQ(ev.trials(), 3000u);
  EXPECT_EQ(ev.failures(), 45u);
  EXPECT_NE(ev.summary().find("Cochran-Armitage"), std::string::npos);
  // The first window without a trend starts the fix test; a trend again
  // returns to REGRESSION.
  Window(&f, false, false);
  EXPECT_EQ(f.life().state(), v1::RECOVERING);
  EXPECT_TRUE(f.life().verdict().evidence().has_confirmation_start());
  Window(&f, true, true);
  EXPECT_EQ(States(),
            (std::vector<v1::VerdictState>{v1::SUSPECT, v1::REGRESSION,
                                           v1::RECOVERING, v1::REGRESSION}));
  EXPECT_FALSE(f.pending());
}

TEST_F(SizeTrendTest, ASuspectWithoutASecondWindowIsHealthyAgain) {
  TrendFamily f(key_);
  Window(&f, true, true);
  Window(&f, false, false);
  EXPECT_EQ(States(),
            (std::vector<v1::VerdictState>{v1::SUSPECT, v1::HEALTHY}));
}

TEST_F(SizeTrendTest, SavedStateContinuesTheSame) {
  TrendFamily f(key_);
  Window(&f, true, true);
  f.Add(1024, 10, 1);  // An open window is saved too.
  v1::TrendFamilyState saved;
  f.Save(&saved);
  absl::StatusOr<TrendFamily> restored = TrendFamily::Load(saved, "trend[0]");
  ASSERT_TRUE(restored.ok()) << restored.status();
  v1::TrendFamilyState again;
  restored->Save(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(saved, again));
}

TEST_F(SizeTrendTest, LoadRejectsARepeatedSize) {
  TrendFamily f(key_);
  f.Add(1024, 10, 1);
  v1::TrendFamilyState saved;
  f.Save(&saved);
  *saved.add_window() = saved.window(0);
  absl::StatusOr<TrendFamily> restored = TrendFamily::Load(saved, "trend[0]");
  ASSERT_EQ(restored.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(restored.status().message().find("trend[0].window[1]"),
            absl::string_view::npos)
      << restored.status();
}

}  // namespace
}  // namespace fleetcanary::analysis::detectors
