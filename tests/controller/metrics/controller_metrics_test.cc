#include "controller/metrics/controller_metrics.h"

#include <curl/curl.h>
#include <prometheus/text_serializer.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/metrics/metrics_export.h"
#include "controller/metrics/prometheus_view.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

std::string Fetch(const std::string& url) {
  CURL* curl = curl_easy_init();
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* out) {
        static_cast<std::string*>(out)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  EXPECT_EQ(curl_easy_perform(curl), CURLE_OK);
  curl_easy_cleanup(curl);
  return body;
}

v1::Outcome Outcome(v1::OutcomeClass cls) {
  v1::Outcome o;
  o.set_outcome_class(cls);
  o.mutable_timings()->mutable_headers_received()->set_nanos(30000000);
  o.mutable_timings()->mutable_total()->set_nanos(150000000);
  o.set_received_bytes(2);
  return o;
}

TEST(ControllerMetricsTest, ServesFamiliesWithBoundedLabels) {
  ControllerMetrics metrics;
  StreamTotal restored{
      {"us-east-1", "canary", v1::RESPONSE_STREAM, 1024, false}, {}};
  restored.stats.Add(Outcome(v1::OK));
  restored.stats.Add(Outcome(v1::OK));
  metrics.Restore({restored}, {{kIngestBatches, 7}},
                  {{"a1", "us-east-1", 10, 4, absl::InfinitePast()}});
  StreamStats delta;
  delta.Add(Outcome(v1::OK));
  delta.Add(Outcome(v1::HTTP_5XX));
  metrics.AddStream(restored.key, delta);
  metrics.AddCounter(kIngestBatches, 1);
  metrics.AddCounter(kIngestBatches, -5);  // Ignored: counters never go back.
  metrics.AddCounter(
      PlatformCounterName("Errors", "us-east-1", "canary", v1::RESPONSE_STREAM),
      3);
  metrics.SetAgentDropped("a1", "us-east-1", 2);  // Lower: kept at 4.
  metrics.SetAgentCountsProvider([] {
    return std::vector<AgentCount>{{"us-east-1", v1::LIVE, 2}};
  });
  metrics.SetRegionsWithoutAgentsProvider(
      [] { return std::vector<std::string>{"eu-west-1"}; });
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.set_state(v1::SUSPECT);
  v.mutable_key()->set_region("us-east-1");
  metrics.SetVerdict(v);
  metrics.SessionOpened();

  auto server = MetricsHttpServer::Create("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Register(metrics.collectable());
  ASSERT_GT((*server)->port(), 0);
  const std::string text = Fetch("http://" + (*server)->address() + "/metrics");
  auto has = [&](const std::string& line) {
    return text.find(line) != std::string::npos;
  };
  EXPECT_TRUE(
      has("fleetcanary_probes_total{region=\"us-east-1\",target="
          "\"canary\",mode=\"stream\",size_class=\"1KiB\",outcome="
          "\"OK\"} 3"))
      << text;
  EXPECT_TRUE(has("outcome=\"HTTP_5XX\"} 1"));
  EXPECT_TRUE(
      has("fleetcanary_probe_ttfb_seconds_count{region=\"us-east-1\","
          "target=\"canary\",mode=\"stream\",size_class=\"1KiB\"} 4"));
  EXPECT_TRUE(has("fleetcanary_ingest_batches_total 8"));
  EXPECT_TRUE(
      has("fleetcanary_platform_errors_total{region=\"us-east-1\","
          "target=\"canary\",mode=\"stream\"} 3"));
  EXPECT_TRUE(has("fleetcanary_outbox_dropped_total{region=\"us-east-1\"} 4"));
  EXPECT_TRUE(has("fleetcanary_agents{region=\"us-east-1\",state=\"LIVE\"} 2"));
  EXPECT_TRUE(
      has("fleetcanary_regions_without_agents{region=\"eu-west-1\"} 1"));
  EXPECT_TRUE(has("state=\"SUSPECT\"} 1"));
  EXPECT_TRUE(has("state=\"HEALTHY\"} 0"));
  EXPECT_TRUE(has("fleetcanary_sessions_active 1"));
  EXPECT_TRUE(has("# TYPE fleetcanary_phantom_errors_total counter"));
}

std::string Scrape(ControllerMetrics& metrics) {
  auto server = MetricsHttpServer::Create("127.0.0.1:0");
  EXPECT_TRUE(server.ok()) << server.status();
  (*server)->Register(metrics.collectable());
  return Fetch("http://" + (*server)->address() + "/metrics");
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

TEST(ControllerMetricsTest, ConfiguredStreamsExistAtZeroBeforeAnyProbe) {
  ControllerMetrics metrics;
  metrics.SetConfiguredStreamsProvider([] {
    return std::vector<ConfiguredStreams>{
        {"us-east-1", "canary", v1::RESPONSE_STREAM, {2, 1024}}};
  });
  const std::string text = Scrape(metrics);
  const std::string stream =
      "region=\"us-east-1\",target=\"canary\",mode=\"stream\"";
  for (const char* outcome : {"OK", "HTTP_5XX", "TRUNCATED", "AGENT_ERROR"}) {
    for (const char* size : {"2B", "1KiB"}) {
      EXPECT_TRUE(Has(text, "fleetcanary_probes_total{" + stream +
                                ",size_class=\"" + size + "\",outcome=\"" +
                                outcome + "\"} 0"))
          << outcome << " " << size << "\n"
          << text;
    }
  }
  EXPECT_FALSE(Has(text, "OUTCOME_CLASS_UNSPECIFIED"));
  EXPECT_TRUE(Has(text, "fleetcanary_probe_ttfb_seconds_count{" + stream +
                            ",size_class=\"2B\"} 0"));
  EXPECT_TRUE(Has(text, "fleetcanary_probe_received_bytes_total{" + stream +
                            ",size_class=\"1KiB\"} 0"));
  for (const char* family :
       {"fleetcanary_phantom_errors_total", "fleetcanary_platform_errors_total",
        "fleetcanary_platform_invocations_total",
        "fleetcanary_platform_url_5xx_total"}) {
    EXPECT_TRUE(Has(text, std::string(family) + "{" + stream + "} 0"))
        << family;
  }
  // Exactly the cardinality formula: 13 classes per configured stream.
  size_t probes = 0;
  for (size_t at = 0;
       (at = text.find("\nfleetcanary_probes_total{", at)) != std::string::npos;
       ++at) {
    ++probes;
  }
  EXPECT_EQ(probes, 2u * 13u);
}

TEST(ControllerMetricsTest, StreamsNoLongerConfiguredExpireAndComeBack) {
  ControllerMetrics metrics;
  StreamKey old_size{"us-east-1", "canary", v1::BUFFERED, 4096, false};
  StreamStats delta;
  delta.Add(Outcome(v1::OK));
  metrics.AddStream(old_size, delta);
  metrics.AddCounter(PhantomCounterName("eu-west-1", "gone", v1::BUFFERED), 5);
  std::vector<ConfiguredStreams> configured = {
      {"us-east-1", "canary", v1::BUFFERED, {2}}};
  metrics.SetConfiguredStreamsProvider([&] { return configured; });
  std::string text = Scrape(metrics);
  EXPECT_FALSE(Has(text, "size_class=\"4KiB\"")) << text;
  EXPECT_FALSE(Has(text, "target=\"gone\"")) << text;
  EXPECT_TRUE(Has(text, "size_class=\"2B\",outcome=\"OK\"} 0"));
  configured[0].sizes.push_back(4096);
  text = Scrape(metrics);
  EXPECT_TRUE(Has(text, "size_class=\"4KiB\",outcome=\"OK\"} 1")) << text;
  // Counting continued while it was not exported.
  EXPECT_EQ(metrics.stream(old_size).counts[v1::OK], 1u);
}

TEST(ControllerMetricsTest, AdhocSizesOutsideTheLadderAreOther) {
  EXPECT_EQ(AdhocSizeClass(1024, {2, 1024}), "1KiB");
  EXPECT_EQ(AdhocSizeClass(1234, {2, 1024}), "other");
  EXPECT_EQ(AdhocSizeClass(2, {}), "other");
  ControllerMetrics metrics;
  metrics.SetConfiguredStreamsProvider([] {
    return std::vector<ConfiguredStreams>{
        {"us-east-1", "canary", v1::BUFFERED, {2, 1024}}};
  });
  StreamStats one;
  one.Add(Outcome(v1::OK));
  for (uint64_t size : {1234, 777, 1024}) {
    metrics.AddStream({"us-east-1", "canary", v1::BUFFERED, size, true}, one);
  }
  const std::string text = Scrape(metrics);
  EXPECT_TRUE(Has(text,
                  "fleetcanary_adhoc_probes_total{region=\"us-east-1\","
                  "target=\"canary\",mode=\"buffered\",size_class=\"other\","
                  "outcome=\"OK\"} 2"))
      << text;
  EXPECT_TRUE(Has(text, "size_class=\"1KiB\",outcome=\"OK\"} 1"));
  EXPECT_FALSE(Has(text, "1234")) << text;
}

TEST(ControllerMetricsTest, VerdictsAcrossSizesSayAllNotEmpty) {
  ControllerMetrics metrics;
  v1::Verdict v;
  v.set_kind(v1::SIZE_TREND);
  v.set_state(v1::HEALTHY);
  v.mutable_key()->set_region("us-east-1");
  v.mutable_key()->set_target("canary");
  v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  metrics.SetVerdict(v);
  metrics.SetErrorRateUpperBound(v.key(), 0.01);
  const std::string text = Scrape(metrics);
  EXPECT_TRUE(Has(text, "size_class=\"all\",state=\"HEALTHY\"} 1")) << text;
  EXPECT_TRUE(Has(text,
                  "fleetcanary_error_rate_upper_bound{region=\"us-east-1\","
                  "target=\"canary\",mode=\"stream\",size_class=\"all\"}"))
      << text;
  EXPECT_FALSE(Has(text, "size_class=\"\"")) << text;
}

// A state touching every family and every filtering rule: configured and
// unconfigured streams, ad-hoc sizes in and out of the ladder, platform and
// phantom counters of configured and deleted targets, per-size and all-size
// verdicts, and the fleet gauges.
void Populate(ControllerMetrics& metrics) {
  StreamStats two_ok;
  two_ok.Add(Outcome(v1::OK));
  two_ok.Add(Outcome(v1::OK));
  StreamTotal restored{
      {"us-east-1", "canary", v1::RESPONSE_STREAM, 1024, false}, two_ok};
  metrics.Restore(
      {restored},
      {{kIngestBatches, 7},
       {"mystery_total", 9},
       {PhantomCounterName("us-east-1", "canary", v1::RESPONSE_STREAM), 2}},
      {{"a1", "us-east-1", 10, 4, absl::InfinitePast()},
       {"a3", "eu-west-1", 3, 2, absl::InfinitePast()}});
  StreamStats mixed;
  mixed.Add(Outcome(v1::OK));
  mixed.Add(Outcome(v1::HTTP_5XX));
  mixed.Add(Outcome(v1::TRUNCATED));
  metrics.AddStream(restored.key, mixed);
  metrics.AddStream({"us-east-1", "canary", v1::BUFFERED, 4096, false}, mixed);
  metrics.AddStream({"us-east-1", "canary", v1::BUFFERED, 2, true}, mixed);
  metrics.AddStream({"us-east-1", "canary", v1::BUFFERED, 777, true}, two_ok);
  metrics.AddStream({"us-east-1", "canary", v1::BUFFERED, 1234, true}, mixed);
  metrics.AddStream({"eu-west-1", "other", v1::RESPONSE_STREAM, 5, true},
                    two_ok);
  metrics.AddCounter(kIngestBatches, 1);
  metrics.AddCounter("retention_runs_total", 1);
  metrics.AddCounter(
      PlatformCounterName("Errors", "us-east-1", "canary", v1::RESPONSE_STREAM),
      3);
  metrics.AddCounter(PlatformCounterName("Invocations", "us-east-1", "canary",
                                         v1::RESPONSE_STREAM),
                     10);
  metrics.AddCounter(
      PlatformCounterName("Url5xxCount", "eu-west-1", "canary", v1::BUFFERED),
      1);
  metrics.AddCounter(
      PlatformCounterName("Throttles", "us-east-1", "canary", v1::BUFFERED), 4);
  metrics.AddCounter(
      PlatformCounterName("Errors", "us-east-1", "gone", v1::BUFFERED), 6);
  metrics.AddCounter(PhantomCounterName("us-east-1", "gone", v1::BUFFERED), 5);
  metrics.SetAgentDropped("a2", "us-east-1", 1);
  metrics.SetAgentDropped("a3", "eu-west-1", 1);  // Lower: kept at 2.
  v1::Verdict v;
  v.set_kind(v1::STREAM_HEALTH);
  v.set_state(v1::SUSPECT);
  v.mutable_key()->set_region("us-east-1");
  v.mutable_key()->set_target("canary");
  v.mutable_key()->set_mode(v1::RESPONSE_STREAM);
  v.mutable_key()->set_size_class("1KiB");
  metrics.SetVerdict(v);
  v.set_kind(v1::SIZE_TREND);
  v.set_state(v1::REGRESSION);
  v.mutable_key()->clear_size_class();
  metrics.SetVerdict(v);
  metrics.SetErrorRateUpperBound(v.key(), 0.01);
  v.set_kind(v1::PHANTOM_ERRORS);
  v.set_state(v1::HEALTHY);
  v.mutable_key()->set_target("gone");
  metrics.SetVerdict(v);
  metrics.SetErrorRateUpperBound(v.key(), 0.5);
  metrics.SetAgentCountsProvider([] {
    return std::vector<AgentCount>{{"us-east-1", v1::LIVE, 2},
                                   {"eu-west-1", v1::LOST, 1}};
  });
  metrics.SetRegionsWithoutAgentsProvider(
      [] { return std::vector<std::string>{"ap-south-1"}; });
  metrics.SessionOpened();
  metrics.SessionOpened();
  metrics.SessionClosed();
  metrics.SetStoreUp(false);
  metrics.SetLeader(true);
  metrics.SetIngestLoadProvider([] {
    IngestLoad load;
    load.pending_outcomes = 120000;
    load.limit = 100000;
    load.saturated = true;
    load.saturations_total = 3;
    load.sessions_paused = 7;
    load.session_pauses_total = 41;
    return load;
  });
}

std::string Exposition(ControllerMetrics& metrics) {
  return prometheus::TextSerializer().Serialize(
      metrics.collectable()->Collect());
}

std::string Golden(const std::string& name) {
  std::ifstream in(std::string(FLEETCANARY_SOURCE_DIR) +
                   "/tests/controller/metrics/testdata/" + name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The whole exposition, byte for byte: names, help, labels, values and order
// are what dashboards, alerts and the e2e checks read.
TEST(ControllerMetricsTest, ExpositionIsPinnedWithoutConfiguredStreams) {
  ControllerMetrics metrics;
  Populate(metrics);
  EXPECT_EQ(Exposition(metrics), Golden("exposition_all_streams.txt"));
}

TEST(ControllerMetricsTest, ExpositionIsPinnedWithConfiguredStreams) {
  ControllerMetrics metrics;
  Populate(metrics);
  metrics.SetConfiguredStreamsProvider([] {
    return std::vector<ConfiguredStreams>{
        {"us-east-1", "canary", v1::RESPONSE_STREAM, {2, 1024}},
        {"us-east-1", "canary", v1::BUFFERED, {2}},
        {"eu-west-1", "canary", v1::BUFFERED, {2}}};
  });
  EXPECT_EQ(Exposition(metrics), Golden("exposition_configured.txt"));
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
