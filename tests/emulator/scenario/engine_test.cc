#include "emulator/scenario/engine.h"

#include <fstream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "emulator/scenario/truth_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace emulator {
namespace {

using ::testing::HasSubstr;

v1::Scenario MustParse(absl::string_view yaml) {
  auto s = ParseScenarioYaml(yaml, "test.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : v1::Scenario();
}

TEST(FaultProbabilityTest, RisesWithSizeAndIsCapped) {
  v1::FaultProbability p;
  p.set_base(0.0005);
  p.set_per_log2_byte(0.0005);
  p.set_per_byte(1e-6);
  p.set_max_probability(0.25);
  EXPECT_NEAR(FaultProbabilityAt(p, 2), 0.001 + 2e-6, 1e-12);
  EXPECT_NEAR(FaultProbabilityAt(p, 1024), 0.0005 + 0.005 + 0.001024, 1e-12);
  EXPECT_DOUBLE_EQ(FaultProbabilityAt(p, 1 << 20), 0.25);
  EXPECT_NEAR(FaultProbabilityAt(p, 0), 0.0005 + 1e-6, 1e-12);  // n = max(0,1)
  v1::FaultProbability uncapped;
  uncapped.set_base(3);
  EXPECT_DOUBLE_EQ(FaultProbabilityAt(uncapped, 10), 1.0);
}

TEST(RuleTest, MatchesRegionModeAndSizeRange) {
  v1::Scenario s = MustParse(R"(
faults:
  - name: r
    regions: [us-east-1]
    modes: [RESPONSE_STREAM]
    min_bytes: 1Ki
    max_bytes: 64Ki
    probability: {base: 1}
    effect: phantom_error
)");
  const v1::FaultRule& r = s.faults(0);
  EXPECT_TRUE(RuleMatches(r, {"us-east-1", v1::RESPONSE_STREAM, 1024}));
  EXPECT_TRUE(RuleMatches(r, {"us-east-1", v1::RESPONSE_STREAM, 65536}));
  EXPECT_FALSE(RuleMatches(r, {"us-east-1", v1::RESPONSE_STREAM, 65537}));
  EXPECT_FALSE(RuleMatches(r, {"us-east-1", v1::RESPONSE_STREAM, 1023}));
  EXPECT_FALSE(RuleMatches(r, {"eu-west-1", v1::RESPONSE_STREAM, 2048}));
  EXPECT_FALSE(RuleMatches(r, {"us-east-1", v1::BUFFERED, 2048}));
}

TEST(RuleTest, RelativeAndAbsoluteWindows) {
  v1::Scenario s = MustParse(R"(
faults:
  - {name: rel, start: 10s, end: 20s, probability: {base: 1}, effect: reset}
  - name: abs
    start_time: "2024-01-31T00:00:00Z"
    end_time: "2024-02-04T00:00:00Z"
    probability: {base: 1}
    effect: reset
)");
  const absl::Time jan31 = absl::FromUnixSeconds(1706659200);
  auto at = [&](absl::Duration e, absl::Time now) {
    return ScenarioTime{e, now};
  };
  EXPECT_FALSE(RuleActive(s.faults(0), at(absl::Seconds(9.999), jan31)));
  EXPECT_TRUE(RuleActive(s.faults(0), at(absl::Seconds(10), jan31)));
  EXPECT_FALSE(RuleActive(s.faults(0), at(absl::Seconds(20), jan31)));
  EXPECT_FALSE(RuleActive(
      s.faults(1), at(absl::ZeroDuration(), jan31 - absl::Nanoseconds(1))));
  EXPECT_TRUE(RuleActive(s.faults(1), at(absl::ZeroDuration(), jan31)));
  EXPECT_FALSE(RuleActive(s.faults(1),
                          at(absl::ZeroDuration(), jan31 + absl::Hours(96))));
}

TEST(DecideFaultTest, SameSeedSameFaultsDifferentSeedDifferent) {
  v1::Scenario s = MustParse(R"(
faults:
  - {name: a, probability: {base: 0.2}, effect: truncate}
  - {name: b, probability: {base: 0.3}, effect: reset}
)");
  auto run = [&](uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::vector<int> out;
    for (int i = 0; i < 2000; ++i) {
      auto d = DecideFault(s, {"r", v1::BUFFERED, static_cast<uint64_t>(i)}, {},
                           gen);
      out.push_back(d.has_value() ? *d : -1);
    }
    return out;
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
  // Rates are what the rules say (first-match: b fires on 0.8*0.3).
  std::vector<int> v = run(3);
  const double a = std::count(v.begin(), v.end(), 0) / 2000.0;
  const double b = std::count(v.begin(), v.end(), 1) / 2000.0;
  EXPECT_NEAR(a, 0.2, 0.04);
  EXPECT_NEAR(b, 0.24, 0.04);
}

TEST(ScenarioEngineTest, TimeScaleAndEpochDriveWindowsOnTheInjectedClock) {
  SimulatedClock clock(absl::FromUnixSeconds(1800000000));
  v1::Scenario s = MustParse(R"(
seed: 5
time_scale: 2880
epoch: "2024-01-30T00:00:00Z"
faults:
  - name: defect
    modes: [RESPONSE_STREAM]
    start_time: "2024-01-31T00:00:00Z"
    end_time: "2024-02-04T00:00:00Z"
    probability: {base: 1}
    effect: phantom_error
)");
  auto engine = ScenarioEngine::Create(s, &clock);
  ASSERT_TRUE(engine.ok()) << engine.status();
  InvocationFacts stream{"us-east-1", v1::RESPONSE_STREAM, 2};
  InvocationFacts buffered{"us-east-1", v1::BUFFERED, 2};
  EXPECT_FALSE((*engine)->Decide(stream).rule.has_value());
  clock.AdvanceTime(absl::Seconds(29.9));  // Just under one scenario day.
  EXPECT_FALSE((*engine)->Decide(stream).rule.has_value());
  clock.AdvanceTime(absl::Seconds(0.1));
  FaultDecision d = (*engine)->Decide(stream);
  ASSERT_TRUE(d.rule.has_value());
  EXPECT_EQ(d.rule->name(), "defect");
  EXPECT_EQ(d.time.elapsed, absl::Hours(24));
  EXPECT_FALSE((*engine)->Decide(buffered).rule.has_value());
  clock.AdvanceTime(absl::Seconds(120));  // 2024-02-04T00:00Z: hotfix.
  EXPECT_FALSE((*engine)->Decide(stream).rule.has_value());
}

TEST(ScenarioEngineTest, ReplaceRestartsTimelineAndReseeds) {
  SimulatedClock clock;
  v1::Scenario s = MustParse(R"(
seed: 9
faults: [{name: half, probability: {base: 0.5}, effect: reset, start: 1s}]
)");
  auto engine = ScenarioEngine::Create(s, &clock);
  ASSERT_TRUE(engine.ok());
  clock.AdvanceTime(absl::Seconds(2));
  std::vector<bool> first;
  for (int i = 0; i < 64; ++i) {
    first.push_back((*engine)->Decide({"r", v1::BUFFERED, 1}).rule.has_value());
  }
  ASSERT_TRUE((*engine)->Replace(s).ok());
  EXPECT_FALSE((*engine)->Decide({"r", v1::BUFFERED, 1}).rule.has_value())
      << "window restarts at replacement";
  clock.AdvanceTime(absl::Seconds(2));
  ASSERT_TRUE((*engine)->Replace(s).ok());
  clock.AdvanceTime(absl::Seconds(1));
  std::vector<bool> second;
  for (int i = 0; i < 64; ++i) {
    second.push_back(
        (*engine)->Decide({"r", v1::BUFFERED, 1}).rule.has_value());
  }
  EXPECT_EQ(first, second);
  v1::Scenario bad = s;
  bad.mutable_faults(0)->set_effect(v1::FAULT_EFFECT_UNSPECIFIED);
  EXPECT_FALSE((*engine)->Replace(bad).ok());
  EXPECT_EQ((*engine)->scenario().faults(0).effect(), v1::FAULT_EFFECT_RESET);
}

struct BadCase {
  const char* yaml;
  const char* expect;  // Substring of the error.
};

TEST(ParseScenarioYamlTest, MalformedScenariosNameFileLineAndField) {
  const BadCase cases[] = {
      {"faults:\n  - name: x\n    probability: {base: 1}\n",
       "test.yaml:2:5: faults[0].effect: required"},
      {"faults:\n  - name: x\n    probability: {base: 1}\n    effect: "
       "http_status\n",
       "test.yaml:2:5: faults[0].status: required"},
      {"faults:\n  - name: x\n    effect: reset\n",
       "test.yaml:2:5: faults[0].probability"},
      {"faults:\n  - name: x\n    effect: reset\n    probability:\n      base: "
       "1\n    min_bytes: 2Ki\n    max_bytes: 1Ki\n",
       "test.yaml:7:16: faults[0].max_bytes: 1024 is below min_bytes 2048"},
      {"faults:\n  - name: x\n    effect: reset\n    probability: {base: 1}\n  "
       "  start: 10s\n    end: 5s\n",
       "test.yaml:6:10: faults[0].end: must be after start"},
      {"faults:\n  - name: x\n    effect: slow_body\n    probability: {base: "
       "1}\n",
       "faults[0].bytes_per_second: required"},
      {"faults:\n  - name: x\n    effect: explode\n    probability: {base: "
       "1}\n",
       "test.yaml:3:13"},
      {"faults:\n  - name: x\n    effect: reset\n    probability: {base: 2}\n",
       "test.yaml:4:"},
      {"faults:\n  - name: x\n    effect: reset\n    probabilty: {base: 1}\n",
       "test.yaml:4:"},
      {"faults:\n  - name: x\n    effect: reset\n    probability: {base: 1}\n  "
       "  modes: [SIDEWAYS]\n",
       "test.yaml:5:"},
      {"faults: [\n", "test.yaml"},
  };
  for (const BadCase& c : cases) {
    auto s = ParseScenarioYaml(c.yaml, "test.yaml");
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(c.expect))
        << c.yaml;
  }
}

TEST(ShippedScenariosTest, AllLoadAndTheIncidentHasTheDocumentedShape) {
  const std::string dir =
      std::string(FLEETCANARY_SOURCE_DIR) + "/emulator/scenarios/";
  for (const char* name : {"healthy.yaml", "feb2024-incident.yaml",
                           "truncation-storm.yaml", "regional-outage.yaml"}) {
    auto s = LoadScenarioFile(dir + name);
    EXPECT_TRUE(s.ok()) << name << ": " << s.status();
  }
  auto incident = LoadScenarioFile(dir + "feb2024-incident.yaml");
  ASSERT_TRUE(incident.ok());
  ASSERT_EQ(incident->faults_size(), 1);
  const v1::FaultRule& r = incident->faults(0);
  EXPECT_EQ(r.effect(), v1::FAULT_EFFECT_PHANTOM_ERROR);
  EXPECT_THAT(r.modes(), ::testing::ElementsAre(v1::RESPONSE_STREAM));
  EXPECT_EQ(r.regions_size(), 1);
  EXPECT_NEAR(FaultProbabilityAt(r.probability(), 2), 0.001, 1e-5);
  EXPECT_GT(FaultProbabilityAt(r.probability(), 65536),
            10 * FaultProbabilityAt(r.probability(), 2));
  // Defect + hotfix inside a 3-minute demo.
  const double scale = incident->time_scale();
  const double begin_s =
      (r.start_time().seconds() - incident->epoch().seconds()) / scale;
  const double end_s =
      (r.end_time().seconds() - incident->epoch().seconds()) / scale;
  EXPECT_GT(begin_s, 10);
  EXPECT_LT(end_s, 170);
  EXPECT_GT(end_s - begin_s, 60);
}

TEST(LoadScenarioFileTest, SemanticErrorInFileIsLocated) {
  const std::string path = ::testing::TempDir() + "/bad_scenario.yaml";
  std::ofstream(path) << "name: bad\nfaults:\n  - name: x\n    effect: "
                         "delay_first_byte\n    probability: {base: 1}\n";
  auto s = LoadScenarioFile(path);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr(path + ":3:5: faults[0].duration: required"));
  EXPECT_EQ(LoadScenarioFile(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TruthLogTest, SequencesPagingAndBound) {
  TruthLog log(3);
  for (int i = 0; i < 5; ++i) {
    v1::InjectedFault f;
    f.set_rule(absl::StrCat("r", i));
    log.Append(f);
  }
  EXPECT_EQ(log.dropped(), 2u);
  EXPECT_EQ(log.last_sequence(), 5u);
  auto all = log.Since(0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].sequence(), 3u);
  EXPECT_EQ(all[0].rule(), "r2");
  EXPECT_EQ(log.Since(4).size(), 1u);
  log.Clear();
  EXPECT_TRUE(log.Since(0).empty());
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary
