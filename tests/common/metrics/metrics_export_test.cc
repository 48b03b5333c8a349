// The family builders, and the /metrics HTTP endpoint: bad addresses, extra
// pages, and scrapes that get through while idle and slow connections are
// open.
#include "common/metrics/metrics_export.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fleetcanary {
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

TEST(MetricsExportTest, OneSampleFamiliesInTheTextFormat) {
  EXPECT_EQ(ExpositionText(
                {CounterWithSample("a_total", "Counted.",
                                   {{"region", "r"}, {"mode", "stream"}}, 3),
                 GaugeWithSample("b", "Measured.", {}, 0.5)}),
            "# HELP a_total Counted.\n"
            "# TYPE a_total counter\n"
            "a_total{region=\"r\",mode=\"stream\"} 3\n"
            "# HELP b Measured.\n"
            "# TYPE b gauge\n"
            "b 0.5\n");
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
}  // namespace fleetcanary
