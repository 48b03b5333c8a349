#include "agent/agent_app_metrics.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace agent {
namespace {

std::vector<std::string> Names(
    const std::vector<prometheus::MetricFamily>& families) {
  std::vector<std::string> names;
  for (const prometheus::MetricFamily& f : families) names.push_back(f.name);
  return names;
}

const prometheus::MetricFamily& Family(
    const std::vector<prometheus::MetricFamily>& families,
    const std::string& name) {
  for (const prometheus::MetricFamily& f : families) {
    if (f.name == name) return f;
  }
  ADD_FAILURE() << "no family " << name;
  static const prometheus::MetricFamily kNone;
  return kNone;
}

TEST(AgentMetricsViewTest, FamiliesInFixedOrder) {
  AgentMetricsSnapshot s;
  s.region = "eu-west-1";
  s.platform_loop = true;
  const std::vector<std::string> want = {
      "fleetcanary_agent_probes_started_total",
      "fleetcanary_agent_outcomes_appended_total",
      "fleetcanary_agent_outbox_append_errors_total",
      "fleetcanary_agent_slots_skipped_total",
      "fleetcanary_agent_in_flight",
      "fleetcanary_agent_assignments",
      "fleetcanary_agent_outbox_depth",
      "fleetcanary_agent_outbox_bytes",
      "fleetcanary_agent_outbox_dropped_total",
      "fleetcanary_agent_outbox_acked_sequence",
      "fleetcanary_agent_session_connected",
      "fleetcanary_agent_session_reconnects_total",
      "fleetcanary_agent_session_batches_sent_total",
      "fleetcanary_agent_session_outcomes_sent_total",
      "fleetcanary_agent_session_acks_total",
      "fleetcanary_agent_platform_samples_sent_total",
      "fleetcanary_agent_platform_samples_dropped_total",
      "fleetcanary_agent_platform_poll_errors_total",
      "fleetcanary_agent_platform_last_success_timestamp_seconds",
      "fleetcanary_agent_platform_metrics_enabled",
      "fleetcanary_agent_credentials_expiry_seconds",
      "fleetcanary_agent_credentials_refreshes_total",
      "fleetcanary_agent_credentials_refresh_failures_total",
  };
  EXPECT_EQ(Names(AgentMetricsView(s)), want);
}

TEST(AgentMetricsViewTest, PlatformLoopSeriesOnlyWhenItRuns) {
  AgentMetricsSnapshot s;
  const auto names = Names(AgentMetricsView(s));
  for (const std::string& n : names) {
    EXPECT_NE(n, "fleetcanary_agent_platform_poll_errors_total");
    EXPECT_NE(n, "fleetcanary_agent_platform_last_success_timestamp_seconds");
  }
}

TEST(AgentMetricsViewTest, LabelsAndValues) {
  AgentMetricsSnapshot s;
  s.region = "eu-west-1";
  s.in_flight = 3;
  s.platform_targets.push_back({"eu-west-1", "a", true});
  s.platform_targets.push_back({"eu-west-1", "b", false});
  s.chain.has_credentials = true;
  s.chain.expiration = absl::InfiniteFuture();
  s.chain.refreshes_total = 2;
  s.role_refreshes_total = 5;
  const auto families = AgentMetricsView(s);

  const auto& in_flight = Family(families, "fleetcanary_agent_in_flight");
  ASSERT_EQ(in_flight.metric.size(), 1u);
  ASSERT_EQ(in_flight.metric[0].label.size(), 1u);
  EXPECT_EQ(in_flight.metric[0].label[0].name, "region");
  EXPECT_EQ(in_flight.metric[0].label[0].value, "eu-west-1");
  EXPECT_EQ(in_flight.metric[0].gauge.value, 3);

  const auto& enabled =
      Family(families, "fleetcanary_agent_platform_metrics_enabled");
  ASSERT_EQ(enabled.metric.size(), 2u);
  EXPECT_EQ(enabled.metric[0].gauge.value, 1);
  EXPECT_EQ(enabled.metric[1].gauge.value, 0);

  EXPECT_EQ(Family(families, "fleetcanary_agent_credentials_expiry_seconds")
                .metric[0]
                .gauge.value,
            -1);
  EXPECT_EQ(Family(families, "fleetcanary_agent_credentials_refreshes_total")
                .metric[0]
                .counter.value,
            7);
}

TEST(AgentMetricsViewTest, ExpiryCountsDownFromNow) {
  AgentMetricsSnapshot s;
  s.now = absl::FromUnixSeconds(1000);
  s.chain.has_credentials = true;
  s.chain.expiration = absl::FromUnixSeconds(1090);
  const auto families = AgentMetricsView(s);
  EXPECT_EQ(Family(families, "fleetcanary_agent_credentials_expiry_seconds")
                .metric[0]
                .gauge.value,
            90);
  s.chain.has_credentials = false;
  const auto none = AgentMetricsView(s);
  EXPECT_EQ(Family(none, "fleetcanary_agent_credentials_expiry_seconds")
                .metric[0]
                .gauge.value,
            0);
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
