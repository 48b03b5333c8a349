#include "common/config/loader.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_split.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/scenario.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

constexpr char kGoodFleet[] = R"(targets:
  - name: canary
    regions:
      - region: us-east-1
        urls:
          - mode: buffered
            url: http://127.0.0.1:8080/
          - mode: RESPONSE_STREAM
            url: http://127.0.0.1:8081/
            auth: aws_iam
            cloudwatch: {function_name: fc-canary, alias: stream}
schedules:
  - id: ladder
    target: canary
    modes: [buffered, response_stream]
    sizes: [2, 1Ki, 64Ki, 1Mi]
    rate_per_second: 2.5
    chunk_gap: 10ms
    limits:
      timeout: 1m30s
      stall_limit: 5s
      max_body_bytes: 8Mi
)";

TEST(ConfigLoaderTest, ParsesGoodFileWithUnitsAndShortEnums) {
  v1::FleetConfig fleet;
  ASSERT_TRUE(ParseYamlToMessage(kGoodFleet, "fleet.yaml", &fleet).ok());
  ASSERT_EQ(fleet.targets_size(), 1);
  const auto& urls = fleet.targets(0).regions(0).urls();
  EXPECT_EQ(urls[0].mode(), v1::BUFFERED);
  EXPECT_EQ(urls[1].mode(), v1::RESPONSE_STREAM);
  EXPECT_EQ(urls[1].auth(), v1::AWS_IAM);
  EXPECT_EQ(urls[1].cloudwatch().alias(), "stream");
  const v1::Schedule& s = fleet.schedules(0);
  EXPECT_THAT(s.sizes(), ::testing::ElementsAre(2, 1024, 65536, 1048576));
  EXPECT_DOUBLE_EQ(s.rate_per_second(), 2.5);
  EXPECT_EQ(s.chunk_gap().nanos(), 10000000);
  EXPECT_EQ(s.limits().timeout().seconds(), 90);
  EXPECT_EQ(s.limits().max_body_bytes(), 8u << 20);
}

TEST(ConfigLoaderTest, MisspelledFieldNamesFileLineAndPath) {
  const char* yaml = R"(schedules:
  - id: a
    targte: canary
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "fleet.yaml:3:5: schedules[0].targte: unknown field for Schedule; "
            "did you mean \"target\"?");
}

TEST(ConfigLoaderTest, FarOffFieldNamesGetNoSuggestion) {
  v1::FleetConfig fleet;
  absl::Status s =
      ParseYamlToMessage("schedules:\n  - xyzzy: 1\n", "f.yaml", &fleet);
  EXPECT_EQ(s.message(),
            "f.yaml:2:5: schedules[0].xyzzy: unknown field for Schedule");
  s = ParseYamlToMessage("schedules:\n  - ratePerSecnd: 1\n", "f.yaml", &fleet);
  EXPECT_THAT(s.message(), HasSubstr("did you mean \"rate_per_second\"?"));
}

TEST(ConfigLoaderTest, EveryErrorOfAFileIsReportedAtOnce) {
  const char* yaml = R"(schedules:
  - id: a
    targte: canary
    sizes: [2, 1Kx, 3]
    rate_per_second: fast
    modes: [sideways, buffered]
  - id: b
    chunk_gap: soon
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::vector<std::string> lines = absl::StrSplit(s.message(), '\n');
  EXPECT_THAT(
      lines,
      ::testing::ElementsAre(
          HasSubstr("fleet.yaml:3:5: schedules[0].targte: unknown field"),
          HasSubstr("fleet.yaml:4:16: schedules[0].sizes[1]: invalid byte"),
          HasSubstr("fleet.yaml:5:22: schedules[0].rate_per_second: \"fast\""),
          HasSubstr("fleet.yaml:6:13: schedules[0].modes[0]: unknown value"),
          HasSubstr("fleet.yaml:8:16: schedules[1].chunk_gap: invalid")))
      << s.message();
}

TEST(ConfigLoaderTest, EveryRuleViolationIsReportedAtOnce) {
  const char* yaml = R"(schedules:
  - id: a
    target: canary
    sizes: [2]
    rate_per_second: 5000
  - target: canary
    sizes: [2]
    rate_per_second: 1
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.message(),
            "fleet.yaml:5:22: schedules[0].rate_per_second: 5000 is above the "
            "maximum 1000\n"
            "fleet.yaml:6:5: schedules[1].id: required");
}

TEST(ConfigLoaderTest, StreamIsAnAliasOfResponseStream) {
  v1::FleetConfig fleet;
  absl::Status ok = ParseYamlToMessage(
      "schedules:\n  - id: a\n    target: t\n    sizes: [2]\n"
      "    rate_per_second: 1\n    modes: [stream, buffered]\n"
      "targets:\n  - name: t\n    regions:\n      - region: r\n"
      "        urls: [{mode: STREAM, url: \"http://x/\"}]\n",
      "f.yaml", &fleet);
  ASSERT_TRUE(ok.ok()) << ok;
  EXPECT_THAT(fleet.schedules(0).modes(),
              ::testing::ElementsAre(v1::RESPONSE_STREAM, v1::BUFFERED));
  EXPECT_EQ(fleet.targets(0).regions(0).urls(0).mode(), v1::RESPONSE_STREAM);
  absl::Status s =
      ParseYamlToMessage("schedules:\n  - modes: [streem]\n", "f.yaml", &fleet);
  EXPECT_THAT(s.message(),
              HasSubstr("expected one of: buffered, response_stream (or "
                        "stream)"));
}

TEST(ConfigLoaderTest, WrongTypeNamesFileLineAndPath) {
  const char* yaml = R"(schedules:
  - id: a
    target: canary
    sizes: [2]
    rate_per_second: fast
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "fleet.yaml:5:22: schedules[0].rate_per_second: \"fast\" is not a "
            "number");
}

TEST(ConfigLoaderTest, WrongShapeIsRefused) {
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage("schedules: {id: a}\n", "f.yaml", &fleet);
  EXPECT_THAT(s.message(),
              HasSubstr("f.yaml:1:12: schedules: expected a list"));
  s = ParseYamlToMessage("schedules:\n  - sizes: [[1]]\n", "f.yaml", &fleet);
  EXPECT_THAT(s.message(),
              HasSubstr("schedules[0].sizes[0]: expected a single"));
}

TEST(ConfigLoaderTest, OutOfRangeValueNamesFileLineAndPath) {
  const char* yaml = R"(schedules:
  - id: a
    target: canary
    sizes: [2]
    rate_per_second: 5000
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "fleet.yaml:5:22: schedules[0].rate_per_second: 5000 is above the "
            "maximum 1000");
}

TEST(ConfigLoaderTest, BadUnitsAndEnumsAreExplained) {
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(
      "schedules:\n  - id: a\n    sizes: [2, 1Kx]\n", "f.yaml", &fleet);
  EXPECT_THAT(
      s.message(),
      HasSubstr("f.yaml:3:16: schedules[0].sizes[1]: invalid byte size"));
  s = ParseYamlToMessage("schedules:\n  - modes: [sideways]\n", "f.yaml",
                         &fleet);
  EXPECT_THAT(s.message(),
              HasSubstr("schedules[0].modes[0]: unknown value \"sideways\"; "
                        "expected one of: buffered, response_stream"));
  s = ParseYamlToMessage("schedules:\n  - chunk_gap: soon\n", "f.yaml", &fleet);
  EXPECT_THAT(
      s.message(),
      HasSubstr("f.yaml:2:16: schedules[0].chunk_gap: invalid duration"));
}

TEST(ConfigLoaderTest, MissingRequiredFieldPointsAtItsParent) {
  const char* yaml = R"(targets:
  - regions:
      - region: us-east-1
        urls: [{url: "http://x/"}]
)";
  v1::FleetConfig fleet;
  absl::Status s = ParseYamlToMessage(yaml, "fleet.yaml", &fleet);
  EXPECT_EQ(s.message(), "fleet.yaml:2:5: targets[0].name: required");
}

TEST(ConfigLoaderTest, InvalidYamlSyntaxHasLine) {
  v1::FleetConfig fleet;
  absl::Status s =
      ParseYamlToMessage("schedules:\n  - id: [unclosed\n", "bad.yaml", &fleet);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bad.yaml:"));
  EXPECT_THAT(s.message(), HasSubstr("invalid YAML"));
}

TEST(ConfigLoaderTest, ScenarioEffectsInShortForm) {
  const char* yaml = R"(name: demo
seed: 7
faults:
  - effect: phantom_error
    modes: [response_stream]
    start: 10s
    probability: {base: 0.001, per_log2_byte: 0.0005}
)";
  v1::Scenario scenario;
  ASSERT_TRUE(ParseYamlToMessage(yaml, "s.yaml", &scenario).ok());
  EXPECT_EQ(scenario.faults(0).effect(), v1::FAULT_EFFECT_PHANTOM_ERROR);
  EXPECT_EQ(scenario.faults(0).start().seconds(), 10);
  absl::Status s = ParseYamlToMessage("faults:\n  - probability: {base: 1.5}\n",
                                      "s.yaml", &scenario);
  EXPECT_EQ(s.message(),
            "s.yaml:2:25: faults[0].probability.base: 1.5 is above the "
            "maximum 1");
}

TEST(ConfigLoaderTest, LoadsFilesAndReportsMissingOnes) {
  std::string path = testing::TempDir() + "/fleet.yaml";
  {
    std::ofstream out(path);
    out << kGoodFleet;
  }
  absl::StatusOr<v1::FleetConfig> fleet = LoadYamlFile<v1::FleetConfig>(path);
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  EXPECT_EQ(fleet->schedules(0).id(), "ladder");
  std::remove(path.c_str());
  EXPECT_EQ(LoadYamlFile<v1::FleetConfig>(path).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ValidateMessageTest, NamesFieldPathWithoutLines) {
  v1::FleetConfig fleet;
  v1::Schedule* s = fleet.add_schedules();
  s->set_id("a");
  s->set_target("t");
  s->add_sizes(2);
  s->set_rate_per_second(-1);
  absl::Status status = ValidateMessage(fleet);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "schedules[0].rate_per_second: -1 is below the minimum 0.0001");
  s->set_rate_per_second(1);
  EXPECT_TRUE(ValidateMessage(fleet).ok());
  s->set_id(std::string(100, 'x'));
  EXPECT_EQ(ValidateMessage(fleet).message(),
            "schedules[0].id: longer than 63 bytes");
}

TEST(JsonTest, RoundTripAndUnknownFieldsRefused) {
  v1::Schedule s;
  s.set_id("a");
  s.add_sizes(1024);
  std::string json = MessageToJson(s);
  EXPECT_EQ(json, R"({"id":"a","sizes":["1024"]})");
  v1::Schedule back;
  ASSERT_TRUE(JsonToMessage(json, &back).ok());
  EXPECT_EQ(back.sizes(0), 1024u);
  EXPECT_EQ(JsonToMessage(R"({"nope":1})", &back).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fleetcanary
