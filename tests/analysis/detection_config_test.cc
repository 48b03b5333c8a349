// Config resolution (analysis/detection_config.h) and the outcome-class
// predicates the detectors count with (analysis/verdict_engine.h).
#include "analysis/detection_config.h"

#include <limits>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

TEST(ResolveDetectionConfig, FillsEveryDocumentedDefault) {
  absl::StatusOr<v1::DetectionConfig> c = ResolveDetectionConfig({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->false_alarms_per_month(), 1);
  EXPECT_EQ(c->p0_floor(), 1e-4);
  EXPECT_EQ(c->p1_ratio(), 10);
  EXPECT_EQ(c->mode_rr1(), 3);
  EXPECT_EQ(c->alpha(), 0.01);
  EXPECT_EQ(c->p0_prior(), 5e-4);
  EXPECT_EQ(c->p0_prior_weight(), 3000);
  EXPECT_EQ(c->fix_alpha(), 0.05);
  EXPECT_EQ(c->trend_alpha(), 0.01);
  EXPECT_EQ(c->trend_fdr_q(), 0.05);
  EXPECT_EQ(c->suspect_fraction(), 0.5);
  EXPECT_EQ(c->hard_down_consecutive(), 3u);
  EXPECT_EQ(c->hard_down_agents(), 2u);
  EXPECT_EQ(c->trend_window().seconds(), 3600);
  EXPECT_EQ(c->comparison_bucket().seconds(), 60);
  // Optional fields stay unset.
  EXPECT_EQ(c->fix_p_bad(), 0);
  EXPECT_EQ(c->fix_p_good(), 0);
  EXPECT_EQ(c->probes_per_stream_per_month(), 0);
}

TEST(ResolveDetectionConfig, KeepsSetFields) {
  v1::DetectionConfig in;
  in.set_alpha(0.02);
  in.set_hard_down_agents(5);
  in.mutable_trend_window()->set_nanos(500);
  in.mutable_comparison_bucket()->set_seconds(30);
  absl::StatusOr<v1::DetectionConfig> c = ResolveDetectionConfig(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->alpha(), 0.02);
  EXPECT_EQ(c->hard_down_agents(), 5u);
  EXPECT_EQ(c->trend_window().seconds(), 0);
  EXPECT_EQ(c->trend_window().nanos(), 500);
  EXPECT_EQ(c->comparison_bucket().seconds(), 30);
}

TEST(ResolveDetectionConfig, NamesTheFieldOutOfRange) {
  struct Case {
    std::string field;
    void (*set)(v1::DetectionConfig*);
  };
  const Case cases[] = {
      {"false_alarms_per_month",
       [](v1::DetectionConfig* c) { c->set_false_alarms_per_month(-1); }},
      {"p0_floor", [](v1::DetectionConfig* c) { c->set_p0_floor(0.6); }},
      {"p1_ratio", [](v1::DetectionConfig* c) { c->set_p1_ratio(1.001); }},
      {"mode_rr1", [](v1::DetectionConfig* c) { c->set_mode_rr1(2e3); }},
      {"alpha", [](v1::DetectionConfig* c) { c->set_alpha(0.7); }},
      {"fix_p_bad", [](v1::DetectionConfig* c) { c->set_fix_p_bad(-0.1); }},
      {"fix_p_good", [](v1::DetectionConfig* c) { c->set_fix_p_good(0.9); }},
      {"p0_prior", [](v1::DetectionConfig* c) { c->set_p0_prior(-1); }},
      {"p0_prior_weight",
       [](v1::DetectionConfig* c) { c->set_p0_prior_weight(2e9); }},
      {"fix_alpha", [](v1::DetectionConfig* c) { c->set_fix_alpha(0.51); }},
      {"trend_alpha", [](v1::DetectionConfig* c) { c->set_trend_alpha(1); }},
      {"trend_fdr_q", [](v1::DetectionConfig* c) { c->set_trend_fdr_q(-2); }},
      {"suspect_fraction",
       [](v1::DetectionConfig* c) { c->set_suspect_fraction(1); }},
      {"probes_per_stream_per_month",
       [](v1::DetectionConfig* c) { c->set_probes_per_stream_per_month(-1); }},
  };
  for (const Case& tc : cases) {
    v1::DetectionConfig in;
    tc.set(&in);
    absl::StatusOr<v1::DetectionConfig> c = ResolveDetectionConfig(in);
    ASSERT_FALSE(c.ok()) << tc.field;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find("detection." + tc.field + ":"),
              absl::string_view::npos)
        << c.status();
  }
}

TEST(ResolveDetectionConfig, RejectsNonFiniteValues) {
  v1::DetectionConfig in;
  in.set_alpha(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(ResolveDetectionConfig(in).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ResolveDetectionConfig, FixRatesMustBeOrdered) {
  v1::DetectionConfig in;
  in.set_fix_p_bad(0.01);
  in.set_fix_p_good(0.01);
  absl::StatusOr<v1::DetectionConfig> c = ResolveDetectionConfig(in);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "detection.fix_p_good must be below detection.fix_p_bad");
  in.set_fix_p_good(0.001);
  EXPECT_TRUE(ResolveDetectionConfig(in).ok());
}

TEST(ResolveDetectionConfig, RejectsNegativeDurations) {
  v1::DetectionConfig in;
  in.mutable_trend_window()->set_seconds(-5);
  EXPECT_EQ(ResolveDetectionConfig(in).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::DetectionConfig bucket;
  bucket.mutable_comparison_bucket()->set_seconds(-1);
  EXPECT_EQ(ResolveDetectionConfig(bucket).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerdictEngineConfig, CreateAndRestoreCheckTheConfigFirst) {
  v1::DetectionConfig bad;
  bad.set_alpha(0.9);
  for (const absl::Status& s :
       {VerdictEngine::Create(bad, -1).status(),
        VerdictEngine::Restore(bad, -1, v1::DetectorState()).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("detection.alpha"), absl::string_view::npos)
        << s;
  }
  for (const absl::Status& s :
       {VerdictEngine::Create({}, -1).status(),
        VerdictEngine::Restore({}, -1, v1::DetectorState()).status()}) {
    EXPECT_EQ(s.message(), "expected_streams must be >= 0");
  }
}

std::set<v1::OutcomeClass> Where(bool (*pred)(v1::OutcomeClass)) {
  std::set<v1::OutcomeClass> out;
  for (int c = 0; c < v1::OutcomeClass_ARRAYSIZE; ++c) {
    if (pred(static_cast<v1::OutcomeClass>(c))) {
      out.insert(static_cast<v1::OutcomeClass>(c));
    }
  }
  return out;
}

TEST(OutcomeClasses, MatchTheDocumentedSets) {
  const std::set<v1::OutcomeClass> platform = {v1::HTTP_5XX, v1::TRUNCATED,
                                               v1::RESET,    v1::STALLED,
                                               v1::TIMEOUT,  v1::INTEGRITY};
  std::set<v1::OutcomeClass> health = platform;
  health.insert({v1::CONNECT_ERROR, v1::TLS_ERROR, v1::DNS_ERROR});
  EXPECT_EQ(Where(IsPlatformVisibleFailure), platform);
  EXPECT_EQ(Where(IsStreamHealthFailure), health);
  std::set<v1::OutcomeClass> trials = health;
  trials.insert({v1::OK, v1::HTTP_4XX, v1::THROTTLED});
  EXPECT_EQ(Where(IsTrial), trials);
}

TEST(OutcomeClasses, ClassCountsSumTrialsAndFailures) {
  ClassCounts c;
  c.Add(v1::OK, 10);
  c.Add(v1::HTTP_4XX, 2);
  c.Add(v1::THROTTLED);
  c.Add(v1::RESET, 3);
  c.Add(v1::DNS_ERROR);
  c.Add(v1::AGENT_ERROR, 7);
  c.Add(v1::OUTCOME_CLASS_UNSPECIFIED, 4);
  EXPECT_EQ(c.Trials(), 17u);
  EXPECT_EQ(c.StreamHealthFailures(), 4u);
}

}  // namespace
}  // namespace fleetcanary::analysis
