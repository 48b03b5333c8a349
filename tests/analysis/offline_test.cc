// AnalyzeJsonLines: the offline path of the verdict engine.
#include "analysis/offline.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string OutcomeLine(absl::Time t, const std::string& agent,
                        const std::string& mode, const std::string& cls,
                        uint64_t bytes = 2) {
  return absl::StrFormat(
      R"({"outcome":{"agentId":"%s","region":"us-east-1","target":"canary",)"
      R"("mode":"%s","requestedBytes":"%d","startTime":"%s",)"
      R"("outcomeClass":"%s"}})",
      agent, mode, bytes, Rfc3339(t), cls);
}

std::string SampleLine(absl::Time start, const std::string& mode,
                       const std::string& metric, double value) {
  return absl::StrFormat(
      R"({"platform_sample":{"region":"us-east-1","target":"canary",)"
      R"("mode":"%s","metric":"%s","stat":"Sum","periodStart":"%s",)"
      R"("period":"60s","value":%g}})",
      mode, metric, Rfc3339(start), value);
}

absl::StatusOr<v1::AnalysisReport> Analyze(const std::string& text,
                                           AnalyzeOptions options = {}) {
  options.detection.set_probes_per_stream_per_month(2.592e6);
  std::istringstream in(text);
  return AnalyzeJsonLines(in, options);
}

// The 2024 incident in miniature: streaming probes all succeed for clients,
// while the platform reports Errors for 1 % of invocations; then a hotfix.
// One probe every 10 s.
TEST(OfflineTest, PhantomErrorsDetectedAndFixConfirmed) {
  std::mt19937_64 rng(11);
  std::binomial_distribution<int> phantom(6, 0.01);
  std::string text;
  const absl::Time fix = kT0 + absl::Hours(30);
  for (int minute = 0; minute < 60 * 48; ++minute) {
    const absl::Time start = kT0 + absl::Minutes(minute);
    for (int s = 0; s < 60; s += 10) {
      absl::StrAppend(
          &text,
          OutcomeLine(start + absl::Seconds(s), "a1", "RESPONSE_STREAM", "OK"),
          "\n");
    }
    const int errors =
        start >= kT0 + absl::Hours(12) && start < fix ? phantom(rng) : 0;
    absl::StrAppend(
        &text, SampleLine(start, "RESPONSE_STREAM", "Errors", errors), "\n",
        SampleLine(start, "RESPONSE_STREAM", "Invocations", 6), "\n");
  }
  AnalyzeOptions options;
  options.declared_fix_time = fix;
  // Floor 1e-3: p_bad = 2e-3, so the 6,480 clean invocations after the fix
  // are enough to confirm it.
  options.detection.set_p0_floor(1e-3);
  absl::StatusOr<v1::AnalysisReport> report = Analyze(text, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcomes(), 6u * 60 * 48);
  EXPECT_EQ(report->platform_samples(), 2u * 60 * 48);
  EXPECT_EQ(report->declared_fix_time().seconds(), absl::ToUnixSeconds(fix));
  std::vector<v1::VerdictState> phantom_states;
  for (const auto& v : report->transitions()) {
    if (v.kind() == v1::PHANTOM_ERRORS) phantom_states.push_back(v.state());
    // Clients saw nothing: no client-side verdict leaves HEALTHY.
    EXPECT_NE(v.kind(), v1::STREAM_HEALTH);
  }
  ASSERT_FALSE(phantom_states.empty());
  EXPECT_NE(
      std::find(phantom_states.begin(), phantom_states.end(), v1::REGRESSION),
      phantom_states.end());
  EXPECT_NE(std::find(phantom_states.begin(), phantom_states.end(),
                      v1::FIX_CONFIRMED),
            phantom_states.end());
  // Current verdicts: one per kind and key, ordered by kind.
  ASSERT_GT(report->verdicts_size(), 0);
  for (int i = 1; i < report->verdicts_size(); ++i) {
    EXPECT_LE(report->verdicts(i - 1).kind(), report->verdicts(i).kind());
  }
}

// The same platform errors, but the Function URL answered each of them with
// a 5xx (Url5xxCount): they were visible to their callers (callers other
// than our agents, whose probes all succeeded), so they are not phantom, as
// in the live reconciler.
TEST(OfflineTest, ErrorsTheUrlAnsweredWith5xxAreNotPhantom) {
  std::mt19937_64 rng(11);
  std::binomial_distribution<int> visible(6, 0.01);
  std::string text;
  for (int minute = 0; minute < 60 * 48; ++minute) {
    const absl::Time start = kT0 + absl::Minutes(minute);
    for (int s = 0; s < 60; s += 10) {
      absl::StrAppend(
          &text,
          OutcomeLine(start + absl::Seconds(s), "a1", "RESPONSE_STREAM", "OK"),
          "\n");
    }
    const int errors = start >= kT0 + absl::Hours(12) ? visible(rng) : 0;
    absl::StrAppend(
        &text, SampleLine(start, "RESPONSE_STREAM", "Errors", errors), "\n",
        SampleLine(start, "RESPONSE_STREAM", "Invocations", 6 + errors), "\n",
        SampleLine(start, "RESPONSE_STREAM", "UrlRequestCount", 6 + errors),
        "\n", SampleLine(start, "RESPONSE_STREAM", "Url5xxCount", errors),
        "\n");
  }
  absl::StatusOr<v1::AnalysisReport> report = Analyze(text);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->platform_samples(), 4u * 60 * 48);
  for (const auto& v : report->transitions()) {
    EXPECT_FALSE(v.kind() == v1::PHANTOM_ERRORS &&
                 (v.state() == v1::SUSPECT || v.state() == v1::REGRESSION))
        << v.ShortDebugString();
  }
}

struct BadCase {
  const char* name;
  std::string line;
  const char* expect;  // Substring of the message.
};

TEST(OfflineTest, MalformedInputNamesTheLine) {
  const std::string good = OutcomeLine(kT0, "a1", "BUFFERED", "OK");
  const std::vector<BadCase> cases = {
      {"bad json", R"({"outcome": {"region": )", "line 2"},
      {"unknown mode", OutcomeLine(kT0, "a1", "SIDEWAYS", "OK"), "line 2"},
      {"unspecified mode",
       OutcomeLine(kT0, "a1", "INVOKE_MODE_UNSPECIFIED", "OK"), "mode"},
      {"negative count",
       absl::StrFormat(
           R"({"outcome":{"region":"r","target":"t","mode":"BUFFERED",)"
           R"("requestedBytes":-5,"startTime":"%s","outcomeClass":"OK"}})",
           Rfc3339(kT0)),
       "line 2"},
      {"negative platform value", SampleLine(kT0, "BUFFERED", "Errors", -1),
       "value"},
      {"time out of order",
       OutcomeLine(kT0 - absl::Seconds(1), "a1", "BUFFERED", "OK"),
       "before the previous"},
      {"no wrapper", R"({"region":"us-east-1"})", "line 2"},
      {"empty object", R"({})", "expected"},
      {"unknown class", OutcomeLine(kT0, "a1", "BUFFERED", "SORT_OF_OK"),
       "line 2"},
      {"missing time",
       R"({"outcome":{"region":"r","target":"t","mode":"BUFFERED","outcomeClass":"OK"}})",
       "start_time"},
      {"missing region",
       absl::StrFormat(
           R"({"outcome":{"target":"t","mode":"BUFFERED","startTime":"%s","outcomeClass":"OK"}})",
           Rfc3339(kT0)),
       "region"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<v1::AnalysisReport> r = Analyze(good + "\n" + c.line + "\n");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(r.status().message().find("line 2"), std::string::npos)
        << c.name << ": " << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos)
        << c.name << ": " << r.status().message();
  }
}

// Re-read, duplicated, out-of-order and missing platform datapoints give the
// same verdicts as clean input: one value per period, the latest (largest)
// reading, never a sum.
TEST(OfflineTest, MessyPlatformInputGivesTheCleanVerdicts) {
  std::mt19937_64 rng(12);
  std::binomial_distribution<int> phantom(6, 0.05);
  std::vector<std::string> outcomes, clean, messy;
  for (int minute = 0; minute < 600; ++minute) {
    const absl::Time start = kT0 + absl::Minutes(minute);
    for (int s = 0; s < 60; s += 10) {
      outcomes.push_back(
          OutcomeLine(start + absl::Seconds(s), "a1", "RESPONSE_STREAM", "OK"));
    }
    const int errors = minute >= 200 && minute < 400 ? phantom(rng) : 0;
    const std::string e =
        SampleLine(start, "RESPONSE_STREAM", "Errors", errors);
    const std::string i =
        SampleLine(start, "RESPONSE_STREAM", "Invocations", 6);
    clean.push_back(e);
    clean.push_back(i);
    // Messy: a partial first reading, then the final one (re-read), read
    // again by a second agent (duplicate); periods in reverse order.
    messy.push_back(
        SampleLine(start, "RESPONSE_STREAM", "Errors", errors > 0 ? 1 : 0));
    messy.push_back(SampleLine(start, "RESPONSE_STREAM", "Invocations", 3));
    messy.push_back(e);
    messy.push_back(i);
    messy.push_back(e);
    messy.push_back(i);
  }
  std::reverse(messy.begin(), messy.end());
  // A period whose Invocations never arrived is missing in both.
  clean.push_back(
      SampleLine(kT0 + absl::Minutes(600), "RESPONSE_STREAM", "Errors", 3));
  messy.push_back(
      SampleLine(kT0 + absl::Minutes(600), "RESPONSE_STREAM", "Errors", 3));
  auto join = [&](const std::vector<std::string>& samples) {
    std::string text;
    for (const std::string& l : outcomes) absl::StrAppend(&text, l, "\n");
    for (const std::string& l : samples) absl::StrAppend(&text, l, "\n");
    return text;
  };
  AnalyzeOptions options;
  options.detection.set_p0_floor(1e-3);
  absl::StatusOr<v1::AnalysisReport> a = Analyze(join(clean), options);
  absl::StatusOr<v1::AnalysisReport> b = Analyze(join(messy), options);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  bool regression = false;
  for (const auto& v : a->transitions()) {
    if (v.kind() == v1::PHANTOM_ERRORS && v.state() == v1::REGRESSION) {
      regression = true;
    }
  }
  EXPECT_TRUE(regression);
  ASSERT_EQ(a->transitions_size(), b->transitions_size());
  for (int k = 0; k < a->transitions_size(); ++k) {
    EXPECT_EQ(a->transitions(k).SerializeAsString(),
              b->transitions(k).SerializeAsString())
        << k;
  }
  ASSERT_EQ(a->verdicts_size(), b->verdicts_size());
  for (int k = 0; k < a->verdicts_size(); ++k) {
    EXPECT_EQ(a->verdicts(k).SerializeAsString(),
              b->verdicts(k).SerializeAsString());
  }
}

TEST(OfflineTest, ConflictingPeriodLengthNamesTheLine) {
  v1::AnalysisInputLine l;
  v1::PlatformMetricSample* s = l.mutable_platform_sample();
  s->set_region("us-east-1");
  s->set_target("canary");
  s->set_mode(v1::BUFFERED);
  s->set_metric("Errors");
  s->set_stat("Sum");
  s->mutable_period_start()->set_seconds(absl::ToUnixSeconds(kT0));
  s->mutable_period()->set_seconds(60);
  std::string a, b;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(l, &a).ok());
  s->mutable_period()->set_seconds(30);
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(l, &b).ok());
  absl::StatusOr<v1::AnalysisReport> r = Analyze(a + "\n" + b + "\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos);
  EXPECT_NE(r.status().message().find("platform_sample.period"),
            std::string::npos);
}

TEST(OfflineTest, LongLines) {
  absl::StatusOr<v1::AnalysisReport> r;

  AnalyzeOptions small;
  small.max_line_bytes = 64;
  r = Analyze(OutcomeLine(kT0, "a1", "BUFFERED", "OK") + "\n", small);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 1"), std::string::npos);
  EXPECT_NE(r.status().message().find("longer than"), std::string::npos);
}

TEST(OfflineTest, EmptyInputAndAgentErrors) {
  absl::StatusOr<v1::AnalysisReport> r = Analyze("\n\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcomes(), 0u);
  EXPECT_EQ(r->verdicts_size(), 0);
  // AGENT_ERROR outcomes are read and counted as outcomes, never as failures.
  std::string text;
  for (int i = 0; i < 50; ++i) {
    absl::StrAppend(&text,
                    OutcomeLine(kT0 + absl::Seconds(i), i % 2 ? "a1" : "a2",
                                "BUFFERED", "AGENT_ERROR"),
                    "\n");
  }
  r = Analyze(text);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcomes(), 50u);
  EXPECT_EQ(r->transitions_size(), 0);
}

}  // namespace
}  // namespace fleetcanary::analysis
