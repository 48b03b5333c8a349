#include "cli/ui/progress_bar.h"

#include <sstream>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace cli {
namespace {

TEST(ProgressBarTest, RendersFractionRateAndEta) {
  EXPECT_EQ(ProgressBar::Render(50, 100, 3, absl::Seconds(10), 10),
            "[=====>    ]  50/100  50%  3 failed  5.0/s  eta 10s");
  EXPECT_EQ(ProgressBar::Render(100, 100, 0, absl::Seconds(10), 10),
            "[==========] 100/100 100%  0 failed  10.0/s");
}

TEST(ProgressBarTest, RedrawsAtMostEveryIntervalAndClears) {
  SimulatedClock clock;
  std::ostringstream out;
  ProgressBar bar(&out, &clock, 10, /*enabled=*/true, absl::Milliseconds(100));
  bar.Update(1, 0);
  bar.Update(2, 0);  // Too soon: not drawn.
  clock.AdvanceTime(absl::Milliseconds(100));
  bar.Update(3, 1);
  bar.Update(10, 1);  // The last update is always drawn.
  const std::string s = out.str();
  EXPECT_NE(s.find(" 1/10"), std::string::npos);
  EXPECT_EQ(s.find(" 2/10"), std::string::npos);
  EXPECT_NE(s.find(" 3/10"), std::string::npos);
  EXPECT_NE(s.find("10/10"), std::string::npos);
  bar.Finish();
  EXPECT_EQ(out.str().back(), '\r');
}

TEST(ProgressBarTest, DisabledDrawsNothing) {
  SimulatedClock clock;
  std::ostringstream out;
  ProgressBar bar(&out, &clock, 10, /*enabled=*/false);
  bar.Update(5, 0);
  bar.Finish();
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace cli
}  // namespace fleetcanary
