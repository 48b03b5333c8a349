// The incident report's numbers against hand-computed ones from a small
// synthetic store, the offline (outcomes file) path against the store path,
// and the renderers.
#include "analysis/report/report_builder.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <sstream>

#include "analysis/report/report_render.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace fleetcanary::report {
namespace {

using controller::StreamMinute;
using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);  // 2024-02-01.

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}
absl::Time At(int minute, int second = 0) {
  return kT0 + absl::Minutes(minute) + absl::Seconds(second);
}

v1::Outcome MakeOutcome(v1::InvokeMode mode, v1::OutcomeClass cls,
                        absl::Time start, int n) {
  v1::Outcome o;
  o.set_region("us-east-1");
  o.set_target("canary");
  o.set_mode(mode);
  o.set_requested_bytes(1024);
  o.set_outcome_class(cls);
  o.set_agent_id("a1");
  *o.mutable_start_time() = Ts(start);
  if (cls != v1::AGENT_ERROR) {
    // TTFB 30 ms: inside the (25 ms, 50 ms] bucket.
    *o.mutable_timings()->mutable_headers_received() =
        TimeUtil::MillisecondsToDuration(30);
  }
  if (cls != v1::OK) {
    o.set_platform_request_id(absl::StrCat("req-", mode, "-", n));
  }
  return o;
}

// The synthetic incident: RESPONSE_STREAM 1KiB truncates 2 of 10 probes a
// minute in minutes 8..14; BUFFERED 1KiB fails once in minute 3, where the
// platform counts 3 errors (2 phantom).
std::vector<v1::Outcome> Outcomes() {
  std::vector<v1::Outcome> out;
  int n = 0;
  for (int m = 0; m < 20; ++m) {
    for (int i = 0; i < 10; ++i) {
      const absl::Time t = At(m, i);
      out.push_back(MakeOutcome(
          v1::BUFFERED, m == 3 && i == 0 ? v1::HTTP_5XX : v1::OK, t, n++));
      const bool truncated = m >= 8 && m < 15 && i < 2;
      out.push_back(MakeOutcome(v1::RESPONSE_STREAM,
                                truncated ? v1::TRUNCATED : v1::OK, t, n++));
    }
    if (m == 16) {
      out.push_back(
          MakeOutcome(v1::RESPONSE_STREAM, v1::AGENT_ERROR, At(m, 30), n++));
    }
  }
  return out;
}

v1::PlatformMetricSample Sample(v1::InvokeMode mode, const std::string& metric,
                                double value, int minute) {
  v1::PlatformMetricSample s;
  s.set_region("us-east-1");
  s.set_target("canary");
  s.set_mode(mode);
  s.set_metric(metric);
  s.set_stat("Sum");
  s.set_value(value);
  *s.mutable_period_start() = Ts(At(minute));
  *s.mutable_period() = TimeUtil::SecondsToDuration(60);
  return s;
}

std::vector<v1::PlatformMetricSample> Samples() {
  return {Sample(v1::BUFFERED, "Errors", 3, 3),
          Sample(v1::BUFFERED, "Invocations", 10, 3),
          Sample(v1::RESPONSE_STREAM, "Errors", 2, 9),
          Sample(v1::RESPONSE_STREAM, "Invocations", 10, 9)};
}

v1::Verdict Transition(v1::VerdictState state, int minute) {
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.mutable_key()->set_region("us-east-1");
  v.mutable_key()->set_target("canary");
  v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  v.mutable_key()->set_size_class("1KiB");
  v.set_state(state);
  *v.mutable_since() = Ts(At(minute));
  *v.mutable_updated() = Ts(At(minute));
  return v;
}

// What the verdict engine would say, written by hand so the report's
// periods are known exactly.
v1::AnalysisReport Analysis() {
  v1::AnalysisReport a;
  *a.add_transitions() = Transition(v1::SUSPECT, 9);
  v1::Verdict r = Transition(v1::REGRESSION, 10);
  v1::Evidence* e = r.mutable_evidence();
  e->set_statistic_name("cusum");
  e->set_null_rate(0.001);
  e->set_summary("CUSUM crossed");
  *e->mutable_change_time() = Ts(At(8));
  *e->mutable_change_interval()->mutable_lower() = Ts(At(7));
  *e->mutable_change_interval()->mutable_upper() = Ts(At(9));
  e->mutable_change_interval()->set_confidence(0.95);
  *a.add_transitions() = r;
  *a.add_transitions() = Transition(v1::RECOVERING, 20);
  v1::Verdict f = Transition(v1::FIX_CONFIRMED, 25);
  e = f.mutable_evidence();
  *e->mutable_change_time() = Ts(At(15));
  *e->mutable_change_interval()->mutable_lower() = Ts(At(14));
  *e->mutable_change_interval()->mutable_upper() = Ts(At(16));
  *e->mutable_confirmation_start() = Ts(At(20));
  e->set_trials(500);
  e->set_likelihood_ratio(40);
  e->set_proven_upper_bound(0.006);
  *a.add_transitions() = f;
  *a.add_verdicts() = f;
  // Another target's verdict never shows.
  v1::Verdict other = Transition(v1::REGRESSION, 5);
  other.mutable_key()->set_target("other");
  *a.add_transitions() = other;
  return a;
}

// The data as the Report RPC gets it: minutes and failures through a store.
ReportData StoreData() {
  std::unique_ptr<controller::Store> store = controller::CreateMemoryStore();
  controller::WriteBatch batch;
  std::map<std::pair<controller::StreamKey, int64_t>, controller::StreamStats>
      minutes;
  for (const v1::Outcome& o : Outcomes()) {
    controller::StreamKey key{o.region(), o.target(), o.mode(),
                              o.requested_bytes(), false};
    minutes[{key, controller::MinuteOf(
                      absl::FromUnixSeconds(o.start_time().seconds()))}]
        .Add(o);
    if (o.outcome_class() != v1::OK) batch.failures.push_back(o);
  }
  for (auto& [k, s] : minutes) batch.minutes.push_back({k.first, k.second, s});
  batch.platform_samples = Samples();
  EXPECT_TRUE(store->Commit(batch, nullptr).ok());
  ReportData data;
  data.minutes = *store->QueryStreamMinutes(0, INT64_MAX / 2);
  data.outcomes = *store->QueryFailures(absl::InfinitePast(), 1000);
  data.platform_samples = *store->QueryPlatformSamples(absl::InfinitePast(),
                                                       absl::InfiniteFuture());
  data.analysis = Analysis();
  v1::Target t;
  t.set_name("canary");
  v1::RegionEndpoints* re = t.add_regions();
  re->set_region("us-east-1");
  re->add_urls()->set_url("https://b.example/");
  re->mutable_urls(0)->set_mode(v1::BUFFERED);
  re->add_urls()->set_url("https://s.example/");
  re->mutable_urls(1)->set_mode(v1::RESPONSE_STREAM);
  data.targets.push_back(t);
  return data;
}

ReportOptions Options() {
  ReportOptions o;
  o.target = "canary";
  o.from = At(0);
  o.to = At(20);
  o.generated_at = At(30);
  o.source = "test";
  o.max_samples = 5;
  return o;
}

const v1::ReportCounts& Period(const v1::ReportCell& c, v1::ReportPeriod p) {
  for (const v1::ReportCounts& x : c.periods()) {
    if (x.period() == p) return x;
  }
  ADD_FAILURE() << "no period " << p;
  return c.periods(0);
}

const v1::ReportCell& Cell(const v1::IncidentReport& r, v1::InvokeMode mode) {
  for (const v1::ReportCell& c : r.cells()) {
    if (c.mode() == mode) return c;
  }
  ADD_FAILURE() << "no cell";
  return r.cells(0);
}

TEST(ReportBuilderTest, PeriodsFromVerdictChangeTimes) {
  absl::StatusOr<v1::IncidentReport> r =
      BuildIncidentReport(StoreData(), Options());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->onset(), Ts(At(8)));
  EXPECT_EQ(r->onset_interval().lower(), Ts(At(7)));
  EXPECT_EQ(r->fix_time(), Ts(At(15)));
  EXPECT_EQ(r->fix_interval().upper(), Ts(At(16)));
  ASSERT_EQ(r->findings_size(), 1);  // The other target's verdict is left out.
  const v1::ReportFinding& f = r->findings(0);
  EXPECT_EQ(f.first_seen(), Ts(At(9)));
  EXPECT_EQ(f.worst_state(), v1::REGRESSION);
  EXPECT_EQ(f.current_state(), v1::FIX_CONFIRMED);
  EXPECT_EQ(f.change_time(), Ts(At(8)));
  EXPECT_EQ(f.fix().probes(), 500u);
  EXPECT_DOUBLE_EQ(f.fix().proven_upper_bound(), 0.006);
  EXPECT_DOUBLE_EQ(f.fix().baseline_rate(), 0.001);
  EXPECT_DOUBLE_EQ(f.fix().confidence(), 0.95);  // 1 - default fix_alpha.
  EXPECT_EQ(f.fix().confirmation_start(), Ts(At(20)));
}

TEST(ReportBuilderTest, CountsRatesAndLatencyPerPeriod) {
  absl::StatusOr<v1::IncidentReport> r =
      BuildIncidentReport(StoreData(), Options());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->cells_size(), 2);
  const v1::ReportCell& s = Cell(*r, v1::RESPONSE_STREAM);
  EXPECT_EQ(s.state(), v1::FIX_CONFIRMED);
  const v1::ReportCounts& during = Period(s, v1::REPORT_PERIOD_DURING);
  EXPECT_EQ(during.probes(), 70u);  // Minutes 8..14.
  EXPECT_EQ(during.trials(), 70u);
  EXPECT_EQ(during.failures(), 14u);
  EXPECT_EQ(during.by_class().at("TRUNCATED"), 14u);
  EXPECT_DOUBLE_EQ(during.error_rate(), 0.2);
  // Wilson 95 % for 14/70, computed independently.
  EXPECT_NEAR(during.error_rate_interval().lower(), 0.12304739248362952, 1e-9);
  EXPECT_NEAR(during.error_rate_interval().upper(), 0.30816644496253065, 1e-9);
  const v1::ReportCounts& before = Period(s, v1::REPORT_PERIOD_BEFORE);
  EXPECT_EQ(before.probes(), 80u);
  EXPECT_EQ(before.failures(), 0u);
  EXPECT_EQ(before.error_rate_interval().lower(), 0);  // Exactly.
  // TTFB: 80 observations of 30 ms in (25, 50] ms; p50 interpolates to
  // 25 + 25 * 40/80 ms, p99 to 25 + 25 * 79.2/80 ms.
  EXPECT_EQ(before.ttfb_count(), 80u);
  EXPECT_EQ(TimeUtil::DurationToNanoseconds(before.ttfb_p50()), 37500000);
  EXPECT_EQ(TimeUtil::DurationToNanoseconds(before.ttfb_p99()), 49750000);
  const v1::ReportCounts& after = Period(s, v1::REPORT_PERIOD_AFTER);
  EXPECT_EQ(after.probes(), 51u);  // The AGENT_ERROR is a probe...
  EXPECT_EQ(after.trials(), 50u);  // ...but not a trial.
  const v1::ReportCounts& whole = Period(s, v1::REPORT_PERIOD_WHOLE);
  EXPECT_EQ(whole.probes(), 201u);
  EXPECT_EQ(whole.failures(), 14u);

  const v1::ReportCell& b = Cell(*r, v1::BUFFERED);
  const v1::ReportCounts& bb = Period(b, v1::REPORT_PERIOD_BEFORE);
  EXPECT_EQ(bb.probes(), 80u);
  EXPECT_EQ(bb.failures(), 1u);
  EXPECT_NEAR(bb.error_rate_interval().lower(), 0.0022099755204522745, 1e-9);
  EXPECT_NEAR(bb.error_rate_interval().upper(), 0.06746270077668665, 1e-9);
  EXPECT_EQ(r->probes(), 401u);
  EXPECT_EQ(r->failures(), 15u);
}

TEST(ReportBuilderTest, PlatformPhantomAndSamples) {
  absl::StatusOr<v1::IncidentReport> r =
      BuildIncidentReport(StoreData(), Options());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->platform_size(), 2);
  const v1::ReportPlatform& buffered =
      r->platform(0).mode() == v1::BUFFERED ? r->platform(0) : r->platform(1);
  const v1::ReportPlatformCounts& whole = buffered.periods(0);
  EXPECT_EQ(whole.period(), v1::REPORT_PERIOD_WHOLE);
  EXPECT_DOUBLE_EQ(whole.platform_errors(), 3);
  EXPECT_DOUBLE_EQ(whole.platform_invocations(), 10);
  EXPECT_EQ(whole.client_visible_failures(), 1u);
  EXPECT_DOUBLE_EQ(whole.phantom_errors(), 2);
  EXPECT_DOUBLE_EQ(whole.phantom_rate(), 0.2);
  ASSERT_EQ(r->phantom_periods_size(), 1);  // Stream: 2 errors, 2 seen.
  EXPECT_EQ(r->phantom_periods(0).period_start(), Ts(At(3)));

  // 15 stored failures; 5 samples: the phantom-period one first, then four
  // evenly spaced over the 14 during the incident.
  EXPECT_EQ(r->failures_stored(), 15u);
  ASSERT_EQ(r->failing_samples_size(), 5);
  EXPECT_TRUE(r->failing_samples(0).in_phantom_period());
  EXPECT_EQ(r->failing_samples(0).outcome_class(), v1::HTTP_5XX);
  for (int i = 1; i < 5; ++i) {
    EXPECT_EQ(r->failing_samples(i).period(), v1::REPORT_PERIOD_DURING);
    EXPECT_THAT(r->failing_samples(i).platform_request_id(),
                HasSubstr("req-2-"));
  }
  EXPECT_EQ(r->failing_samples(4).start_time(), Ts(At(13, 0)));  // 10th of 14.
  ASSERT_EQ(r->phantom_samples_size(), 1);

  ASSERT_EQ(r->reproduction().failing_sizes_size(), 1);
  EXPECT_EQ(r->reproduction().failing_sizes(0), 1024u);
  ASSERT_EQ(r->reproduction().commands_size(), 2);
  // 10 / 0.2 = 50 probes, raised to the floor of 100.
  EXPECT_EQ(r->reproduction().commands(1),
            "canaryctl probe --direct --region us-east-1 --url-buffered "
            "https://b.example/ --url-stream https://s.example/ --sizes 1KiB "
            "--count 100 --output json");
  EXPECT_THAT(r->methods(), HasSubstr("floored at 0.0001"));
}

TEST(ReportBuilderTest, SubMinutePlatformPeriodsAreReconciledPerMinute) {
  ReportData data = StoreData();
  data.platform_samples.clear();
  // Two 1-second periods in minute 9, one Error each: the minute's two
  // client truncations explain both (no phantom), counted once.
  for (int sec : {0, 1}) {
    v1::PlatformMetricSample s = Sample(v1::RESPONSE_STREAM, "Errors", 1, 9);
    *s.mutable_period_start() = Ts(At(9, sec));
    *s.mutable_period() = TimeUtil::SecondsToDuration(1);
    data.platform_samples.push_back(s);
  }
  absl::StatusOr<v1::IncidentReport> r = BuildIncidentReport(data, Options());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->platform_size(), 1);
  const v1::ReportPlatformCounts& whole = r->platform(0).periods(0);
  EXPECT_DOUBLE_EQ(whole.platform_errors(), 2);
  EXPECT_EQ(whole.client_visible_failures(), 2u);
  EXPECT_DOUBLE_EQ(whole.phantom_errors(), 0);
  EXPECT_EQ(r->phantom_periods_size(), 0);
}

TEST(ReportBuilderTest, OutcomesFileGivesTheSameReport) {
  std::stringstream file;
  for (const v1::Outcome& o : Outcomes()) {
    v1::AnalysisInputLine line;
    *line.mutable_outcome() = o;
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(line, &json).ok());
    file << json << "\n";
  }
  for (const v1::PlatformMetricSample& s : Samples()) {
    v1::AnalysisInputLine line;
    *line.mutable_platform_sample() = s;
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(line, &json).ok());
    file << json << "\n";
  }
  absl::StatusOr<ReportData> data =
      ReadReportData(file, v1::DetectionConfig(), absl::InfinitePast());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->outcomes.size(), Outcomes().size());
  // Same verdicts as the store path, so the periods match.
  ReportData store = StoreData();
  data->analysis = store.analysis;
  data->targets = store.targets;
  absl::StatusOr<v1::IncidentReport> offline =
      BuildIncidentReport(*data, Options());
  absl::StatusOr<v1::IncidentReport> online =
      BuildIncidentReport(store, Options());
  ASSERT_TRUE(offline.ok() && online.ok());
  google::protobuf::util::MessageDifferencer diff;
  std::string why;
  diff.ReportDifferencesToString(&why);
  // The file has the OK probes too, so only phantom samples may differ.
  offline->clear_phantom_samples();
  online->clear_phantom_samples();
  EXPECT_TRUE(diff.Compare(*offline, *online)) << why;
}

TEST(ReportBuilderTest, BadRequestsNameTheField) {
  ReportOptions o = Options();
  o.target = "";
  EXPECT_EQ(BuildIncidentReport(StoreData(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(BuildIncidentReport(StoreData(), o).status().message(),
              HasSubstr("target"));
  o = Options();
  o.to = o.from;
  EXPECT_THAT(BuildIncidentReport(StoreData(), o).status().message(),
              HasSubstr("from"));
  o = Options();
  o.target = "nope";
  EXPECT_EQ(BuildIncidentReport(StoreData(), o).status().code(),
            absl::StatusCode::kNotFound);
  o = Options();
  o.regions = {"eu-west-1"};
  EXPECT_EQ(BuildIncidentReport(StoreData(), o).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ReportBuilderTest, UnusableChangeTimeFallsBackToTheTransition) {
  ReportData data = StoreData();
  v1::Evidence* e = data.analysis.mutable_transitions(1)->mutable_evidence();
  e->mutable_change_time()->set_seconds(-9223372037);  // Overflowed.
  e->clear_change_interval();
  absl::StatusOr<v1::IncidentReport> r = BuildIncidentReport(data, Options());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->onset(), Ts(At(10)));  // The REGRESSION transition's since.
  EXPECT_FALSE(r->has_onset_interval());
}

TEST(ReportBuilderTest, NoRegressionMeansOnePeriod) {
  ReportData data = StoreData();
  data.analysis.Clear();
  absl::StatusOr<v1::IncidentReport> r = BuildIncidentReport(data, Options());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_onset());
  EXPECT_FALSE(r->has_fix_time());
  const v1::ReportCell& s = Cell(*r, v1::RESPONSE_STREAM);
  EXPECT_EQ(Period(s, v1::REPORT_PERIOD_BEFORE).probes(), 201u);
  EXPECT_EQ(Period(s, v1::REPORT_PERIOD_DURING).probes(), 0u);
}

TEST(HistogramQuantileTest, InterpolatesInsideTheBucket) {
  controller::LatencyHistogram h;
  EXPECT_EQ(HistogramQuantile(h, 0.5), 0);
  h.Observe(0.003);  // (0, 5 ms]
  h.Observe(0.2);    // (100, 250 ms]
  h.Observe(0.2);
  h.Observe(500);  // +Inf
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.25), 0.005);
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.5), 0.1 + 0.15 * 0.5);
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.99), 120);
}

TEST(ReportRenderTest, FormatsCarryTheSameNumbers) {
  absl::StatusOr<v1::IncidentReport> r =
      BuildIncidentReport(StoreData(), Options());
  ASSERT_TRUE(r.ok());
  // JSON round-trips to the same message.
  v1::IncidentReport back;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(RenderReportJson(*r), &back)
          .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, *r));

  const std::string md = RenderReportMarkdown(*r);
  EXPECT_THAT(md, HasSubstr("| us-east-1 | stream | 1KiB | during | 70 | 14 | "
                            "20 % [12.3 %, 30.8 %] | 37.5 ms |"));
  EXPECT_THAT(md, HasSubstr("2024-02-01 00:08:00 UTC"));
  EXPECT_THAT(md, HasSubstr("`req-1-"));
  EXPECT_THAT(md, HasSubstr("| < 0.6 % | 0.1 % |"));

  const std::string html = RenderReportHtml(*r);
  EXPECT_THAT(html, HasSubstr("<svg"));
  EXPECT_THAT(html, HasSubstr("@media print"));
  EXPECT_THAT(html, HasSubstr("id=\"cell-us-east-1-stream-1024\""));
  EXPECT_THAT(html, HasSubstr("20 % [12.3 %, 30.8 %]"));
  EXPECT_THAT(html, HasSubstr("onset interval"));
  EXPECT_THAT(html, HasSubstr("fix interval"));
  // Self-contained: no scripts, no external references.
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  EXPECT_THAT(html, Not(HasSubstr("url(")));
}

}  // namespace
}  // namespace fleetcanary::report
