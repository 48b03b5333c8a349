#include "controller/metrics/controller_metrics.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "controller/metrics/metrics_export.h"
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

TEST(MetricsHttpServerTest, BadAddressIsAnError) {
  EXPECT_EQ(MetricsHttpServer::Create("nonsense").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsHttpServerTest, ServesExtraPagesBesideMetrics) {
  auto server = MetricsHttpServer::Create("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  int calls = 0;
  (*server)->AddPage("/status", [&calls] {
    ++calls;
    return HttpPage{"text/html; charset=utf-8", "<h1>fleet</h1>"};
  });
  EXPECT_EQ(Fetch("http://" + (*server)->address() + "/status"),
            "<h1>fleet</h1>");
  EXPECT_EQ(calls, 1);
  // /metrics still answers (empty registry).
  EXPECT_EQ(Fetch("http://" + (*server)->address() + "/metrics"), "");
}

// 1,000 idle connections (connected, nothing sent) and a few slow ones (a
// request line that never ends) do not stop a scrape: it is answered while
// they are all still open. Before, 4 worker threads each waited 10 s on one
// of them and Prometheus went blind.
TEST(MetricsHttpServerTest, IdleAndSlowConnectionsDoNotBlockAScrape) {
  // Both ends of 1,000 connections live in this process.
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2200) GTEST_SKIP() << "fd hard limit below 2200";
  auto server = MetricsHttpServer::Create("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->AddPage("/status", [] { return HttpPage{"text/plain", "fine"}; });
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> fds;
  for (int i = 0; i < 1000; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (i % 100 == 0) {
      const char partial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
      ASSERT_GT(send(fd, partial, sizeof(partial) - 1, 0), 0);
    }
    fds.push_back(fd);
  }
  // Fetch() gives up after 5 s (its curl timeout); the server's own
  // per-connection read timeout is 5 s too, so a scrape that had to wait
  // for an idle connection to time out would not arrive in time.
  EXPECT_EQ(Fetch("http://" + (*server)->address() + "/status"), "fine");
  EXPECT_EQ(Fetch("http://" + (*server)->address() + "/metrics"), "");
  for (int fd : fds) close(fd);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
