#include "controller/fleet/placement.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

// One target in two regions with both modes' URLs; one schedule over
// `sizes` sizes on `agents_per_region` agents.
struct Config {
  std::map<std::string, v1::Target> targets;
  std::map<std::string, v1::Schedule> schedules;
};

Config MakeConfig(int sizes, uint32_t agents_per_region) {
  Config c;
  v1::Target& t = c.targets["canary"];
  t.set_name("canary");
  for (const char* r : {"us-east-1", "eu-west-1"}) {
    v1::RegionEndpoints* re = t.add_regions();
    re->set_region(r);
    for (auto mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      v1::FunctionUrl* u = re->add_urls();
      u->set_mode(mode);
      u->set_url(absl::StrCat("http://127.0.0.1:1/", r, "/", mode, "/"));
    }
  }
  v1::Schedule& s = c.schedules["s0"];
  s.set_id("s0");
  s.set_target("canary");
  for (int i = 0; i < sizes; ++i) s.add_sizes(uint64_t{1} << (i + 10));
  s.set_rate_per_second(2);
  s.set_agents_per_region(agents_per_region);
  return c;
}

TEST(PlacementTest, EveryPairOnKAgentsWithBothModesInterleaved) {
  const Config c = MakeConfig(4, 2);
  const std::map<std::string, std::vector<std::string>> live = {
      {"us-east-1", {"a1", "a2", "a3"}}};
  const auto sets =
      PlaceAssignments(c.targets, c.schedules, live, 1.25, absl::Seconds(60));
  // size -> agents running it, per mode.
  std::map<uint64_t, std::map<int, int>> runs;
  for (const auto& [agent, set] : sets) {
    EXPECT_EQ(set.version(), 0u);
    std::map<uint64_t, std::map<int, absl::Duration>> offsets;
    for (const v1::Assignment& a : set.assignments()) {
      EXPECT_EQ(a.region(), "us-east-1");  // eu-west-1 has no live agent.
      ++runs[a.size_bytes()][a.mode()];
      offsets[a.size_bytes()][a.mode()] = absl::Seconds(a.offset().seconds()) +
                                          absl::Nanoseconds(a.offset().nanos());
    }
    // Both modes of a size on the same agent, half an interval apart
    // (interval = k / rate = 1 s).
    for (const auto& [size, by_mode] : offsets) {
      ASSERT_EQ(by_mode.size(), 2u) << agent << " size " << size;
      absl::Duration d =
          by_mode.at(v1::RESPONSE_STREAM) - by_mode.at(v1::BUFFERED);
      if (d < absl::ZeroDuration()) d += absl::Seconds(1);
      EXPECT_EQ(d, absl::Milliseconds(500)) << agent << " size " << size;
    }
  }
  ASSERT_EQ(runs.size(), 4u);
  for (const auto& [size, by_mode] : runs) {
    EXPECT_EQ(by_mode.at(v1::BUFFERED), 2) << size;
    EXPECT_EQ(by_mode.at(v1::RESPONSE_STREAM), 2) << size;
  }
}

TEST(PlacementTest, SameInputSamePlacement) {
  const Config c = MakeConfig(6, 1);
  const std::map<std::string, std::vector<std::string>> live = {
      {"us-east-1", {"a1", "a2"}}, {"eu-west-1", {"b1"}}};
  const auto first =
      PlaceAssignments(c.targets, c.schedules, live, 1.25, absl::Seconds(60));
  const auto second =
      PlaceAssignments(c.targets, c.schedules, live, 1.25, absl::Seconds(60));
  ASSERT_EQ(first.size(), second.size());
  for (const auto& [agent, set] : first) {
    EXPECT_EQ(set.SerializeAsString(), second.at(agent).SerializeAsString())
        << agent;
  }
  EXPECT_EQ(first.at("b1").assignments_size(), 12);  // 6 sizes x 2 modes.
}

TEST(PlacementTest, ScheduleRegionsFilter) {
  Config c = MakeConfig(1, 1);
  EXPECT_TRUE(ScheduleCoversRegion(c.schedules["s0"], "eu-west-1"));
  c.schedules["s0"].add_regions("us-east-1");
  EXPECT_TRUE(ScheduleCoversRegion(c.schedules["s0"], "us-east-1"));
  EXPECT_FALSE(ScheduleCoversRegion(c.schedules["s0"], "eu-west-1"));
  const auto sets = PlaceAssignments(
      c.targets, c.schedules, {{"us-east-1", {"a1"}}, {"eu-west-1", {"b1"}}},
      1.25, absl::Seconds(60));
  EXPECT_EQ(sets.count("b1"), 0u);
  EXPECT_EQ(sets.at("a1").assignments_size(), 2);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
