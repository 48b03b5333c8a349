#include "controller/web/status_page.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

google::protobuf::Timestamp Ts(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(t));
}

v1::Verdict MakeVerdict(v1::VerdictKind kind, v1::VerdictState state,
                        absl::Time since) {
  v1::Verdict v;
  v.set_kind(kind);
  v.set_state(state);
  v.mutable_key()->set_region("us-east-1");
  v.mutable_key()->set_target("canary");
  v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  *v.mutable_since() = Ts(since);
  return v;
}

TEST(StatusPageTest, RendersVerdictTableChartsAndTimeline) {
  const absl::Time t0 = absl::FromUnixSeconds(1706745600);
  StatusPageData data;
  data.now = t0 + absl::Minutes(10);
  v1::Verdict regression =
      MakeVerdict(v1::PHANTOM_ERRORS, v1::REGRESSION, t0 + absl::Minutes(3));
  regression.mutable_evidence()->set_platform_errors(12);
  regression.mutable_evidence()->set_platform_invocations(4000);
  regression.mutable_evidence()->set_summary("errors <only> the platform saw");
  data.verdicts = {MakeVerdict(v1::STREAM_HEALTH, v1::HEALTHY, t0), regression};
  data.transitions = {
      MakeVerdict(v1::PHANTOM_ERRORS, v1::HEALTHY, t0),
      MakeVerdict(v1::PHANTOM_ERRORS, v1::SUSPECT, t0 + absl::Minutes(2)),
      regression};
  data.rate_by_mode = {{"buffered", {{t0, 0.0}, {t0 + absl::Minutes(5), 0.0}}},
                       {"stream", {{t0, 0.0}, {t0 + absl::Minutes(5), 0.004}}}};
  data.probes_total = 8000;
  std::string html = RenderStatusPage(data);

  EXPECT_THAT(html, HasSubstr("<table id=\"verdicts\">"));
  EXPECT_THAT(html, HasSubstr("PHANTOM_ERRORS"));
  EXPECT_THAT(html, HasSubstr("REGRESSION"));
  EXPECT_THAT(html, HasSubstr("platform errors 12 / invocations 4000"));
  // User-controlled text is escaped.
  EXPECT_THAT(html, HasSubstr("errors &lt;only&gt; the platform saw"));
  EXPECT_THAT(html, Not(HasSubstr("<only>")));
  // The regression sorts before the healthy verdict.
  EXPECT_LT(html.find("REGRESSION"), html.find(">HEALTHY<"));
  EXPECT_THAT(html, HasSubstr("data-series=\"2\" data-points=\"4\""));
  EXPECT_THAT(html, HasSubstr("class=\"timeline\" data-rows=\"1\""));
  EXPECT_THAT(html, HasSubstr("<polyline class=\"series\""));
  EXPECT_THAT(html, HasSubstr("class=\"band\""));
}

TEST(StatusPageTest, EmptyFleetSaysSoInsteadOfDrawingNothing) {
  StatusPageData data;
  data.now = absl::FromUnixSeconds(0);
  std::string html = RenderStatusPage(data);
  EXPECT_THAT(html, HasSubstr("no verdicts yet"));
  EXPECT_THAT(html, HasSubstr("no probes yet"));
  EXPECT_THAT(html, HasSubstr("no verdict transitions yet"));
}

TEST(StatusPageTest, ChartScalesToLargestRate) {
  const absl::Time t0 = absl::FromUnixSeconds(100);
  std::string svg = RenderRateChartSvg(
      "x", {{"a", {{t0, 0.5}, {t0 + absl::Seconds(1), 0.25}}}}, 400, 200);
  // Top grid label is the maximum, 50 %.
  EXPECT_THAT(svg, HasSubstr(">50%</text>"));
  EXPECT_EQ(HtmlEscape("a&b\"'"), "a&amp;b&quot;&#39;");
}

}  // namespace
}  // namespace fleetcanary
