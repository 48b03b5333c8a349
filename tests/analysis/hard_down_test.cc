// The HARD_DOWN detector on its own (analysis/detectors/hard_down.h): the
// consecutive-failure rule's verdicts, the recovery once it ends, and its
// saved state.
#include "analysis/detectors/hard_down.h"

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

class HardDownTest : public ::testing::Test {
 protected:
  HardDownTest() {
    ctx_.cfg = *ResolveDetectionConfig({});  // 3 in a row on 2 agents.
    ctx_.out = &out_;
  }

  // `n` probes of `agent`, one a second.
  void Probe(HardDown* d, const std::string& agent, int n, bool failed) {
    for (int i = 0; i < n; ++i) {
      d->Observe(&ctx_, agent, t_, failed);
      t_ += absl::Seconds(1);
    }
  }

  std::vector<v1::VerdictState> States() const {
    std::vector<v1::VerdictState> s;
    for (const v1::Verdict& v : out_) s.push_back(v.state());
    return s;
  }

  const Key key_{"us-east-1", "canary", v1::BUFFERED, ""};
  Context ctx_;
  std::vector<v1::Verdict> out_;
  absl::Time t_ = kT0;
};

TEST_F(HardDownTest, OneAgentInARunIsSuspectTwoAreARegression) {
  HardDown d(key_, ctx_.cfg);
  Probe(&d, "a1", 2, true);
  EXPECT_TRUE(out_.empty());  // Two failures are not a run yet.
  Probe(&d, "a1", 1, true);
  EXPECT_EQ(States(), std::vector<v1::VerdictState>{v1::SUSPECT});
  Probe(&d, "a2", 3, true);
  ASSERT_EQ(States(),
            (std::vector<v1::VerdictState>{v1::SUSPECT, v1::REGRESSION}));
  const v1::Verdict& down = out_.back();
  EXPECT_EQ(down.kind(), v1::HARD_DOWN);
  EXPECT_EQ(down.key().mode(), v1::BUFFERED);
  EXPECT_TRUE(down.key().size_class().empty());
  EXPECT_EQ(down.evidence().statistic(), 2);
  EXPECT_EQ(down.evidence().change_time().seconds(),
            absl::ToUnixSeconds(t_ - absl::Seconds(1)));
}

TEST_F(HardDownTest, ASuspectRunThatEndsIsHealthyAgain) {
  HardDown d(key_, ctx_.cfg);
  Probe(&d, "a1", 3, true);
  Probe(&d, "a1", 1, false);
  EXPECT_EQ(States(),
            (std::vector<v1::VerdictState>{v1::SUSPECT, v1::HEALTHY}));
}

TEST_F(HardDownTest, TheRuleEndingStartsTheFixTest) {
  HardDown d(key_, ctx_.cfg);
  Probe(&d, "a1", 3, true);
  Probe(&d, "a2", 3, true);
  Probe(&d, "a1", 1, false);  // Rule ends: RECOVERING at once.
  ASSERT_EQ(d.life().state(), v1::RECOVERING);
  EXPECT_TRUE(d.life().verdict().evidence().has_confirmation_start());
  for (int i = 0; i < 100000 && d.life().state() == v1::RECOVERING; ++i) {
    Probe(&d, i % 2 ? "a1" : "a2", 1, false);
  }
  EXPECT_EQ(d.life().state(), v1::FIX_CONFIRMED);
  // Another rule firing opens a new episode.
  Probe(&d, "a1", 3, true);
  Probe(&d, "a2", 3, true);
  EXPECT_EQ(d.life().state(), v1::REGRESSION);
}

TEST_F(HardDownTest, SavedStateContinuesTheSame) {
  HardDown d(key_, ctx_.cfg);
  Probe(&d, "a1", 3, true);
  Probe(&d, "a2", 2, true);
  v1::HardDownState saved;
  d.Save(&saved);
  absl::StatusOr<HardDown> restored =
      HardDown::Load(saved, ctx_.cfg, "hard_down[0]");
  ASSERT_TRUE(restored.ok()) << restored.status();
  v1::HardDownState again;
  restored->Save(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(saved, again));
  // One more failure of a2 makes both copies go down.
  const absl::Time t = t_;
  Probe(&d, "a2", 1, true);
  t_ = t;
  Probe(&*restored, "a2", 1, true);
  EXPECT_EQ(d.life().state(), v1::REGRESSION);
  EXPECT_EQ(restored->life().state(), v1::REGRESSION);
}

TEST_F(HardDownTest, LoadRejectsARepeatedAgent) {
  HardDown d(key_, ctx_.cfg);
  Probe(&d, "a1", 1, true);
  v1::HardDownState saved;
  d.Save(&saved);
  *saved.add_runs() = saved.runs(0);
  absl::StatusOr<HardDown> restored =
      HardDown::Load(saved, ctx_.cfg, "hard_down[0]");
  ASSERT_EQ(restored.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(restored.status().message().find("hard_down[0].runs[1]"),
            absl::string_view::npos)
      << restored.status();
}

}  // namespace
}  // namespace fleetcanary::analysis::detectors
