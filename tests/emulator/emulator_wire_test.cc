// The emulator on real sockets: the canary function contract, Function URL
// behaviour and every fault effect, checked on the wire (status, headers,
// chunking, byte counts, FIN vs RST, timing).
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/payload/payload.h"
#include "common/time/clock.h"
#include "emulator/emulator.h"
#include "emulator/scenario/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/http_test_client.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace emulator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::unique_ptr<Emulator> Start(EmulatorOptions options,
                                Clock* clock = Clock::Real()) {
  auto emu = Emulator::Create(options, clock);
  EXPECT_TRUE(emu.ok()) << emu.status();
  return emu.ok() ? *std::move(emu) : nullptr;
}

v1::Scenario Scenario(absl::string_view yaml) {
  auto s = ParseScenarioYaml(yaml, "test");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : v1::Scenario();
}

std::string Get(absl::string_view path, absl::string_view extra_headers = "") {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                      extra_headers, "Connection: close\r\n\r\n");
}

// Reads from the blocking socket `fd` into `data` until `done()` holds.
// False if the peer closed or reset first, or still not done after `bound`
// (a safety limit against a broken server, never an expectation of speed).
bool ReadUntil(int fd, std::string* data, const std::function<bool()>& done,
               absl::Duration bound = absl::Seconds(60)) {
  Clock* clock = Clock::Real();
  const absl::Duration deadline = clock->MonotonicNow() + bound;
  char buf[4096];
  while (!done()) {
    const absl::Duration left = deadline - clock->MonotonicNow();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready =
        poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    data->append(buf, static_cast<size_t>(n));
  }
  return true;
}

// Sends all of `request` on the blocking socket `fd`.
bool SendAll(int fd, absl::string_view request) {
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// When the byte at `offset` of `raw.data` arrived (infinite: never).
absl::Duration ArrivalOf(const testing::RawResult& raw, size_t offset) {
  size_t end = 0;
  for (const testing::Arrival& a : raw.arrivals) {
    end += a.bytes;
    if (offset < end) return a.at;
  }
  return absl::InfiniteDuration();
}

class WireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EmulatorOptions options;
    options.config.add_regions()->set_name("us-east-1");
    options.config.add_regions()->set_name("eu-west-1");
    emu_ = Start(options);
    ASSERT_NE(emu_, nullptr);
    buffered_ = emu_->url("us-east-1", v1::BUFFERED);
    stream_ = emu_->url("us-east-1", v1::RESPONSE_STREAM);
  }
  void SetScenario(absl::string_view yaml) {
    ASSERT_TRUE(emu_->SetScenario(Scenario(yaml)).ok());
  }
  std::unique_ptr<Emulator> emu_;
  std::string buffered_;
  std::string stream_;
};

TEST_F(WireTest, EndpointsAreDescribedOneLinePerUrl) {
  std::vector<std::string> lines = emu_->DescribeEndpoints();
  // 4 Function URLs, 2 CloudWatch, control, STS, IMDS, container.
  ASSERT_EQ(lines.size(), 4u + 2u + 1u + 3u);
  const std::regex url_line(
      "url region=(us-east-1|eu-west-1) mode=(BUFFERED|RESPONSE_STREAM) "
      "alias=(buffered|stream) auth=NONE function=fleetcanary-canary "
      "url=http://127\\.0\\.0\\.1:[0-9]+/");
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::regex_match(lines[i], url_line)) << lines[i];
  }
  EXPECT_THAT(lines[4], HasSubstr("cloudwatch region=us-east-1 url=http://"));
  EXPECT_THAT(lines[6], HasSubstr("control url=http://127.0.0.1:"));
  EXPECT_THAT(lines[7], HasSubstr("sts url=http://127.0.0.1:"));
  EXPECT_THAT(lines[8], HasSubstr("imds url=http://127.0.0.1:"));
  EXPECT_THAT(lines[9], HasSubstr("container url=http://127.0.0.1:"));
  EXPECT_EQ(emu_->urls().size(), 4u);
}

TEST_F(WireTest, BothModesServeTheConformanceVectorsByteForByte) {
  std::ifstream in(std::string(FLEETCANARY_SOURCE_DIR) +
                   "/tests/testdata/payload_conformance.json");
  ASSERT_TRUE(in.good());
  nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_GE(doc["vectors"].size(), 10u);
  for (const auto& v : doc["vectors"]) {
    const std::string seed = v["seed"].get<std::string>();
    const uint64_t size = v["size"].get<uint64_t>();
    for (const std::string& base : {buffered_, stream_}) {
      testing::CurlResult r = testing::CurlFetch(
          absl::StrCat(base, "canary?bytes=", size, "&chunk=4096&seed=", seed),
          testing::WithHeaders({"x-canary-probe-id: vec-1"}));
      ASSERT_EQ(r.curl_code, 0) << r.error;
      EXPECT_EQ(r.status, 200);
      ASSERT_EQ(r.body.size(), size);
      EXPECT_EQ(Sha256Hex(r.body), v["sha256"].get<std::string>())
          << base << " seed=" << seed << " size=" << size;
      const size_t k = std::min<size_t>(16, size);
      EXPECT_EQ(absl::BytesToHexString(r.body.substr(0, k)),
                v["first16_hex"].get<std::string>());
      EXPECT_EQ(absl::BytesToHexString(r.body.substr(size - k)),
                v["last16_hex"].get<std::string>());
      EXPECT_EQ(r.Header("x-canary-bytes"), absl::StrCat(size));
      EXPECT_EQ(r.Header("x-canary-seed"), seed);
      EXPECT_EQ(r.Header("x-canary-probe-id"), "vec-1");
    }
  }
}

TEST_F(WireTest, BufferedResponseHeadersAreThoseOfAFunctionUrl) {
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(buffered_),
      Get("/canary?bytes=1000&seed=3", "x-canary-probe-id: probe-42\r\n"));
  ASSERT_TRUE(raw.eof);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.chunked);
  EXPECT_EQ(r.Header("content-length"), "1000");
  EXPECT_EQ(r.Header("x-amzn-remapped-content-length"), "1000");
  EXPECT_EQ(r.Header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.Header("x-canary-probe-id"), "probe-42");
  EXPECT_TRUE(std::regex_match(r.Header("x-amzn-requestid"),
                               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}"
                                          "-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << r.Header("x-amzn-requestid");
  EXPECT_TRUE(std::regex_match(
      r.Header("x-amzn-trace-id"),
      std::regex(
          "Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0")))
      << r.Header("x-amzn-trace-id");
  EXPECT_FALSE(r.Header("date").empty());
  EXPECT_EQ(r.body, MakePayload(3, 1000));
}

TEST_F(WireTest, StreamWritesChunksOfCBytesWithGapsOfGMilliseconds) {
  testing::RawOptions options;
  options.timeout = absl::Seconds(60);  // Safety bound only.
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(stream_),
      Get("/canary?bytes=10000&chunk=3000&gap_ms=60&seed=9"), options);
  ASSERT_TRUE(raw.eof);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  ASSERT_TRUE(r.complete);
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.Header("content-length"), "");
  EXPECT_EQ(r.Header("x-amzn-remapped-content-length"), "10000");
  EXPECT_THAT(r.chunk_sizes, ElementsAre(3000, 3000, 3000, 1000));
  EXPECT_TRUE(r.final_chunk);
  EXPECT_EQ(r.body, MakePayload(9, 10000));
  // Four writes separated by three gaps: chunk k (from 0) cannot arrive
  // before k gaps have passed. Checked per byte offset, not per recv(): a
  // client that reads late receives several writes in one recv(), which
  // only makes them later.
  ASSERT_EQ(r.chunk_sizes.size(), 4u);
  size_t offset = raw.data.find("\r\n\r\n") + 4;  // Chunk 0's size line.
  for (size_t k = 0; k < r.chunk_sizes.size(); ++k) {
    EXPECT_GE(ArrivalOf(raw, offset), absl::Milliseconds(60 * k))
        << "chunk " << k;
    offset = raw.data.find("\r\n", offset) + 2 + r.chunk_sizes[k] + 2;
  }
  // The last write cannot arrive before three gaps have passed.
  ASSERT_FALSE(raw.arrivals.empty());
  EXPECT_GE(raw.arrivals.back().at, absl::Milliseconds(3 * 60));
}

TEST_F(WireTest, KeepAliveReusesTheConnectionInBothModes) {
  for (const std::string& base : {buffered_, stream_}) {
    testing::CurlSession session;
    testing::CurlResult first =
        session.Fetch(base + "canary?bytes=100&chunk=10");
    testing::CurlResult second =
        session.Fetch(base + "canary?bytes=200&chunk=10");
    ASSERT_EQ(first.status, 200);
    ASSERT_EQ(second.status, 200);
    EXPECT_EQ(first.new_connections, 1);
    EXPECT_EQ(second.new_connections, 0) << base;
    EXPECT_EQ(second.body, MakePayload(0, 200));
  }
}

TEST_F(WireTest, EveryPathReachesTheFunctionWhichAnswers404) {
  for (const char* path : {"nope", "", "canary/extra?bytes=1"}) {
    testing::CurlResult r = testing::CurlFetch(buffered_ + path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.Header("content-type"), "application/json");
    EXPECT_EQ(r.Header("cache-control"), "no-store");
    EXPECT_EQ(r.Header("x-amzn-errortype"), "");
    EXPECT_FALSE(r.Header("x-amzn-requestid").empty());
    EXPECT_EQ(r.body,
              "{\"error\":\"no such path; use GET "
              "/canary?bytes=N&chunk=C&gap_ms=G&seed=S\"}");
  }
  // The control port knows nothing of /canary.
  EXPECT_EQ(testing::CurlFetch(emu_->control_url() + "canary?bytes=1").status,
            404);
}

TEST_F(WireTest, BadParametersAreTheFunctionsOwn400) {
  testing::CurlResult r = testing::CurlFetch(buffered_ + "canary?bytes=abc");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            "{\"error\":\"query parameter \\\"bytes\\\" must be a decimal "
            "integer, got \\\"abc\\\"\"}");
  EXPECT_EQ(testing::CurlFetch(stream_ + "canary?seed=1").status, 400);
  // The reference function's limits: 4 MiB buffered.
  EXPECT_EQ(testing::CurlFetch(buffered_ + "canary?bytes=4194305").status, 400);
  EXPECT_EQ(testing::CurlFetch(buffered_ + "canary?bytes=4194304").status, 200);
}

TEST(CanaryLimitsTest, BufferedSixMegabyteCapIs502) {
  // A function allowed more than the platform's 6 MB (CANARY_MAX_BYTES).
  EmulatorOptions options;
  options.config.add_regions()->set_name("us-east-1");
  options.config.mutable_canary_limits()->set_max_bytes(8 << 20);
  auto emu = Start(options);
  ASSERT_NE(emu, nullptr);
  const std::string buffered_ = emu->url("us-east-1", v1::BUFFERED);
  const std::string stream_ = emu->url("us-east-1", v1::RESPONSE_STREAM);
  testing::CurlResult at_cap = testing::CurlFetch(
      absl::StrCat(buffered_, "canary?bytes=6291556&seed=1"));
  EXPECT_EQ(at_cap.status, 200);
  EXPECT_EQ(at_cap.body.size(), 6291556u);
  testing::CurlResult over = testing::CurlFetch(
      absl::StrCat(buffered_, "canary?bytes=6291557&seed=1"));
  EXPECT_EQ(over.status, 502);
  EXPECT_EQ(over.body, "Internal Server Error");
  // Streaming has no such cap.
  testing::CurlResult stream =
      testing::CurlFetch(absl::StrCat(stream_, "canary?bytes=6291557&seed=1"));
  EXPECT_EQ(stream.status, 200);
  EXPECT_EQ(stream.body.size(), 6291557u);
}

// What DrainResponse saw.
struct Drained {
  std::string head;    // The first bytes received (the response head).
  std::string tail;    // The last bytes received.
  uint64_t bytes = 0;  // Every byte received, head and framing included.
  bool eof = false;    // The server closed cleanly.
};

// GETs `target` from 127.0.0.1:`port` with Connection: close and reads the
// response until the server closes, keeping only its first and last bytes
// (the body may be larger than the test wants to hold); gives up after
// `bound`.
Drained DrainResponse(int port, absl::string_view target,
                      absl::Duration bound) {
  Drained out;
  const int fd = testing::ConnectLoopback(port);
  if (fd < 0 || !SendAll(fd, Get(target))) {
    if (fd >= 0) close(fd);
    return out;
  }
  Clock* clock = Clock::Real();
  const absl::Duration deadline = clock->MonotonicNow() + bound;
  std::vector<char> buf(256 * 1024);
  while (true) {
    const absl::Duration left = deadline - clock->MonotonicNow();
    if (left <= absl::ZeroDuration()) break;
    pollfd p{fd, POLLIN, 0};
    const int ready =
        poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n == 0) out.eof = true;
    if (n <= 0) break;
    const size_t got = static_cast<size_t>(n);
    if (out.head.size() < 4096) {
      out.head.append(buf.data(), std::min(got, 4096 - out.head.size()));
    }
    const size_t keep = std::min<size_t>(got, 64);
    out.tail.append(buf.data() + got - keep, keep);
    if (out.tail.size() > 64) out.tail.erase(0, out.tail.size() - 64);
    out.bytes += static_cast<uint64_t>(n);
  }
  close(fd);
  return out;
}

TEST(ShapingTest, StreamsAreShapedAfterSixMebibytesUnlessSwitchedOff) {
  constexpr uint64_t kUnshaped = 6 * 1024 * 1024;    // Then shaped...
  constexpr uint64_t kShapedRate = 2 * 1024 * 1024;  // ...to 2 MiB/s...
  constexpr uint64_t kShapedWrite = 64 * 1024;       // ...in writes of 64 KiB.
  // Shaping on: each shaped write but the last is followed by its pause at
  // 2 MiB/s, so 1 MiB past 6 MiB cannot take less than 15 x 31.25 ms.
  {
    constexpr uint64_t kShaped = 1024 * 1024;
    EmulatorOptions options;
    options.config.set_shape_streaming(true);
    auto emu = Start(options);
    ASSERT_NE(emu, nullptr);
    testing::CurlResult r = testing::CurlFetch(
        absl::StrCat(emu->url("us-east-1", v1::RESPONSE_STREAM),
                     "canary?bytes=", kUnshaped + kShaped),
        testing::WithTimeout(absl::Seconds(60)));
    ASSERT_EQ(r.curl_code, 0) << r.error;
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.size(), kUnshaped + kShaped);
    EXPECT_GE(r.total, absl::Microseconds(1000000 * (kShaped - kShapedWrite) /
                                          kShapedRate));  // 468.75 ms.
  }
  // Shaping off: a stream 128 MiB past 6 MiB, which shaped could not end
  // before (128 MiB - 64 KiB) / 2 MiB/s ~ 64 s, ends within the 60 s bound
  // (which is a safety limit: unshaped over loopback it takes about a
  // second; nothing here compares two measured durations).
  {
    constexpr uint64_t kPastSix = 128 * 1024 * 1024;
    constexpr uint64_t kSize = kUnshaped + kPastSix;
    static_assert((kPastSix - kShapedWrite) / kShapedRate > 60,
                  "shaped, the stream could end within the bound");
    EmulatorOptions options;
    options.config.set_shape_streaming(false);
    options.config.mutable_canary_limits()->set_max_bytes(kSize);
    auto emu = Start(options);
    ASSERT_NE(emu, nullptr);
    Drained d = DrainResponse(
        testing::PortOf(emu->url("us-east-1", v1::RESPONSE_STREAM)),
        absl::StrCat("/canary?bytes=", kSize), absl::Seconds(60));
    EXPECT_TRUE(absl::StartsWith(d.head, "HTTP/1.1 200 ")) << d.head;
    // The whole body and its last chunk arrived, then the server closed.
    EXPECT_TRUE(d.eof) << d.bytes << " bytes received within 60 s";
    EXPECT_GT(d.bytes, kSize);
    EXPECT_TRUE(absl::EndsWith(d.tail, "\r\n0\r\n\r\n"));
  }
}

// Sum of `metric` for fleetcanary-canary:`alias` over all visible minutes.
double MetricSum(Emulator& emu, const std::string& metric,
                 const std::string& alias) {
  nlohmann::json query = {
      {"Id", "q"},
      {"MetricStat",
       {{"Metric",
         {{"Namespace", "AWS/Lambda"},
          {"MetricName", metric},
          {"Dimensions",
           {{{"Name", "FunctionName"}, {"Value", "fleetcanary-canary"}},
            {{"Name", "Resource"},
             {"Value", "fleetcanary-canary:" + alias}}}}}},
        {"Period", 60},
        {"Stat", "Sum"}}}};
  nlohmann::json request = {{"StartTime", 0},
                            {"EndTime", 4000000000},
                            {"MetricDataQueries", {query}}};
  testing::CurlOptions options = testing::WithMethod("POST", request.dump());
  options.headers = {
      "X-Amz-Target: GraniteServiceVersion20100801.GetMetricData",
      "Content-Type: application/x-amz-json-1.0"};
  testing::CurlResult r =
      testing::CurlFetch(emu.cloudwatch_url("us-east-1"), options);
  EXPECT_EQ(r.status, 200) << r.body;
  double sum = 0;
  const nlohmann::json response = nlohmann::json::parse(r.body);
  for (const auto& v : response["MetricDataResults"][0]["Values"]) {
    sum += v.get<double>();
  }
  return sum;
}

TEST(ThrottlingTest, ReservedConcurrencyGives429WithoutInvocation) {
  SimulatedClock clock(absl::FromUnixSeconds(1706659200));
  EmulatorOptions options;
  v1::EmulatorRegion* region = options.config.add_regions();
  region->set_name("us-east-1");
  region->set_reserved_concurrency(1);
  auto emu = Start(options, &clock);
  ASSERT_NE(emu, nullptr);
  const std::string stream = emu->url("us-east-1", v1::RESPONSE_STREAM);
  // One invocation holds the only slot for as long as the test wants: its
  // stream stalls after 10 bytes with no end of its own (the server's real
  // timer would end it only after 10 minutes), until the test closes the
  // connection. Only streams of 100 bytes or more stall.
  ASSERT_TRUE(emu->SetScenario(Scenario("faults: [{name: hold, modes: "
                                        "[RESPONSE_STREAM], min_bytes: 100, "
                                        "probability: {base: 1}, effect: "
                                        "stall, after_bytes: 10}]"))
                  .ok());
  const int fd = testing::ConnectLoopback(testing::PortOf(stream));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Get("/canary?bytes=100")));
  // Its first bytes have arrived, so the handler has taken the slot (it
  // does before anything is written).
  std::string slow_response;
  const bool slow_started = ReadUntil(fd, &slow_response, [&] {
    return testing::ParseResponse(slow_response).body.size() >= 10;
  });
  testing::CurlResult throttled =
      testing::CurlFetch(emu->url("us-east-1", v1::BUFFERED) + "canary?bytes=1",
                         testing::WithTimeout(absl::Seconds(60)));
  // The client gives up on the stalled invocation, which ends it.
  close(fd);
  ASSERT_TRUE(slow_started) << slow_response;
  EXPECT_EQ(testing::ParseResponse(slow_response).status, 200);
  EXPECT_EQ(testing::ParseResponse(slow_response).body, MakePayload(0, 10));
  EXPECT_EQ(throttled.status, 429);
  EXPECT_EQ(throttled.Header("x-amzn-errortype"), "TooManyRequestsException");
  EXPECT_EQ(throttled.body, "{\"Message\":\"Rate Exceeded.\"}");
  // The server notices the close asynchronously; an invocation gives its
  // slot back before its connection is released, so once no connection is
  // open the slot is free (waiting on this, not on retried requests, which
  // would count throttles of their own).
  EXPECT_TRUE(testing::WaitUntil([&] {
    return emu->server_stats().open_connections == 0;
  })) << emu->server_stats().open_connections
      << " connections still open";
  // Slot free again.
  EXPECT_EQ(testing::CurlFetch(stream + "canary?bytes=1",
                               testing::WithTimeout(absl::Seconds(60)))
                .status,
            200);
  // The platform counted one throttle and no invocation for it.
  clock.AdvanceTime(absl::Minutes(2));
  EXPECT_EQ(MetricSum(*emu, "Throttles", "buffered"), 1);
  EXPECT_EQ(MetricSum(*emu, "Invocations", "buffered"), 0);
  EXPECT_EQ(MetricSum(*emu, "UrlRequestCount", "buffered"), 1);
  EXPECT_EQ(MetricSum(*emu, "Url4xxCount", "buffered"), 1);
  EXPECT_EQ(MetricSum(*emu, "Invocations", "stream"), 2);
  EXPECT_EQ(MetricSum(*emu, "Throttles", "stream"), 0);
}

TEST(AccountingTest, TheFunctionsOwnRefusalsAreInvocationsAndUrl4xx) {
  SimulatedClock clock(absl::FromUnixSeconds(1706659200));
  EmulatorOptions options;
  options.config.add_regions()->set_name("us-east-1");
  auto emu = Start(options, &clock);
  ASSERT_NE(emu, nullptr);
  const std::string url = emu->url("us-east-1", v1::BUFFERED);
  EXPECT_EQ(testing::CurlFetch(url + "nope").status, 404);
  EXPECT_EQ(testing::CurlFetch(url + "canary?bytes=x").status, 400);
  EXPECT_EQ(testing::CurlFetch(url + "canary?bytes=1",
                               testing::WithMethod("POST", ""))
                .status,
            405);
  EXPECT_EQ(testing::CurlFetch(url + "canary?bytes=1").status, 200);
  clock.AdvanceTime(absl::Minutes(2));
  // As on AWS: every request reached the function; none is an error.
  EXPECT_EQ(MetricSum(*emu, "UrlRequestCount", "buffered"), 4);
  EXPECT_EQ(MetricSum(*emu, "Invocations", "buffered"), 4);
  EXPECT_EQ(MetricSum(*emu, "Url4xxCount", "buffered"), 3);
  EXPECT_EQ(MetricSum(*emu, "Url5xxCount", "buffered"), 0);
  EXPECT_EQ(MetricSum(*emu, "Errors", "buffered"), 0);
}

// ---------------------------------------------------------------------------
// Fault effects.

std::string StripVolatile(absl::string_view raw) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(raw, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "date:") ||
        absl::StartsWithIgnoreCase(line, "x-amzn-requestid:") ||
        absl::StartsWithIgnoreCase(line, "x-amzn-trace-id:")) {
      continue;
    }
    absl::StrAppend(&out, line, "\r\n");
  }
  return out;
}

TEST_F(WireTest, PhantomErrorNeverChangesAByteTheClientReceives) {
  for (const std::string& base : {buffered_, stream_}) {
    const std::string req = Get("/canary?bytes=5000&chunk=1000&seed=77",
                                "x-canary-probe-id: same\r\n");
    SetScenario("faults: []");
    testing::RawResult clean = testing::RawExchange(testing::PortOf(base), req);
    SetScenario(
        "seed: 1\nfaults: [{name: ph, probability: {base: 1}, effect: "
        "phantom_error}]");
    testing::RawResult phantom =
        testing::RawExchange(testing::PortOf(base), req);
    ASSERT_TRUE(clean.eof && phantom.eof);
    EXPECT_EQ(StripVolatile(clean.data), StripVolatile(phantom.data));
    EXPECT_EQ(clean.data.size(), phantom.data.size());
    testing::ParsedResponse p = testing::ParseResponse(phantom.data);
    EXPECT_EQ(p.status, 200);
    EXPECT_EQ(p.body, MakePayload(77, 5000));
    std::vector<v1::InjectedFault> truth = emu_->truth();
    ASSERT_FALSE(truth.empty());
    EXPECT_EQ(truth.back().effect(), v1::FAULT_EFFECT_PHANTOM_ERROR);
    EXPECT_EQ(truth.back().probe_id(), "same");
    EXPECT_EQ(truth.back().request_id(), p.Header("x-amzn-requestid"));
    EXPECT_TRUE(truth.back().platform_error());
  }
}

TEST_F(WireTest, HttpStatusFault) {
  SetScenario(
      "faults: [{name: s, probability: {base: 1}, effect: http_status, "
      "status: 503}]");
  testing::CurlResult r =
      testing::CurlFetch(stream_ + "canary?bytes=100",
                         testing::WithHeaders({"x-canary-probe-id: hs"}));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "Internal Server Error");
  EXPECT_EQ(r.Header("x-canary-bytes"), "");
  EXPECT_EQ(r.Header("x-canary-probe-id"), "hs");
  EXPECT_EQ(r.Header("transfer-encoding"), "");
  ASSERT_EQ(emu_->truth().size(), 1u);
  EXPECT_EQ(emu_->truth()[0].status(), 503);
  EXPECT_EQ(emu_->truth()[0].alias(), "stream");
  EXPECT_EQ(emu_->truth()[0].region(), "us-east-1");
  EXPECT_EQ(emu_->truth()[0].bytes(), 100u);
}

TEST_F(WireTest, TruncateBufferedClosesCleanlyAfterKBytes) {
  SetScenario(
      "faults: [{name: t, probability: {base: 1}, effect: truncate, "
      "after_bytes: 100}]");
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(buffered_), Get("/canary?bytes=1000&seed=2"));
  EXPECT_TRUE(raw.eof);
  EXPECT_FALSE(raw.reset);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-length"), "1000");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.body, MakePayload(2, 100));
}

TEST_F(WireTest, TruncateStreamWithoutFinalChunk) {
  SetScenario(
      "faults: [{name: t, probability: {base: 1}, effect: truncate, "
      "after_bytes: 2500}]");
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(stream_), Get("/canary?bytes=10000&chunk=1000&seed=2"));
  EXPECT_TRUE(raw.eof);
  EXPECT_FALSE(raw.reset);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  EXPECT_THAT(r.chunk_sizes, ElementsAre(1000, 1000, 500));
  EXPECT_FALSE(r.final_chunk);
  EXPECT_EQ(r.body, MakePayload(2, 2500));
  // Nothing but whole chunks: the stream just stops.
  EXPECT_TRUE(absl::EndsWith(raw.data, "\r\n"));
}

TEST_F(WireTest, TruncateStreamWithFinalChunkEndsTheMessageCleanly) {
  SetScenario(
      "faults: [{name: t, probability: {base: 1}, effect: truncate, "
      "after_bytes: 2500, final_chunk: true}]");
  testing::RawOptions options;
  options.stop_after_response = true;
  options.timeout = absl::Seconds(60);  // Safety bound only.
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(stream_),
      "GET /canary?bytes=10000&chunk=1000 HTTP/1.1\r\nHost: x\r\n\r\n",
      options);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  EXPECT_TRUE(r.complete);
  EXPECT_TRUE(r.final_chunk);
  EXPECT_THAT(r.chunk_sizes, ElementsAre(1000, 1000, 500));
  EXPECT_EQ(r.Header("x-canary-bytes"), "10000");
  EXPECT_FALSE(raw.reset);
  EXPECT_FALSE(raw.eof) << "a complete message keeps the connection";
}

TEST_F(WireTest, ResetSendsATcpRstAfterKBytes) {
  SetScenario(
      "faults: [{name: r, probability: {base: 1}, effect: reset, after_bytes: "
      "300}]");
  for (const std::string& base : {buffered_, stream_}) {
    testing::RawResult raw = testing::RawExchange(
        testing::PortOf(base), Get("/canary?bytes=100000&chunk=100&seed=4"));
    EXPECT_TRUE(raw.reset) << base;
    EXPECT_FALSE(raw.eof);
    testing::ParsedResponse r = testing::ParseResponse(raw.data);
    EXPECT_LE(r.body.size(), 300u);
    EXPECT_EQ(r.body, MakePayload(4, r.body.size()));
  }
}

TEST_F(WireTest, StallPausesForTheDurationThenCompletes) {
  SetScenario(
      "faults: [{name: st, probability: {base: 1}, effect: stall, "
      "after_bytes: 2000, duration: 400ms}]");
  testing::RawResult raw = testing::RawExchange(
      testing::PortOf(stream_), Get("/canary?bytes=4000&chunk=1000&seed=5"));
  ASSERT_TRUE(raw.eof);
  testing::ParsedResponse r = testing::ParseResponse(raw.data);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, MakePayload(5, 4000));
  // The bytes after the stall cannot arrive before the stall has passed.
  ASSERT_FALSE(raw.arrivals.empty());
  EXPECT_GE(raw.arrivals.back().at, absl::Milliseconds(400));
}

TEST_F(WireTest, StallForeverHoldsUntilTheClientGivesUp) {
  SetScenario(
      "faults: [{name: st, probability: {base: 1}, effect: stall, "
      "after_bytes: 10}]");
  const int fd = testing::ConnectLoopback(testing::PortOf(buffered_));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Get("/canary?bytes=100&seed=5")));
  // The 10 bytes before the stall arrive, however long that takes...
  std::string data;
  EXPECT_TRUE(ReadUntil(fd, &data, [&] {
    return testing::ParseResponse(data).body.size() >= 10;
  })) << data;
  // ...then nothing: the stall has no end of its own, so the connection
  // stays open and silent while the client waits (500 ms here; a slow
  // machine can only make the server later, never earlier).
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 500), 0) << "the stall ended by itself";
  close(fd);
  EXPECT_EQ(testing::ParseResponse(data).status, 200);
  EXPECT_EQ(testing::ParseResponse(data).body, MakePayload(5, 10));
  // The client closed: the emulator releases the connection.
  EXPECT_TRUE(testing::WaitUntil([&] {
    return emu_->server_stats().open_connections == 0;
  })) << emu_->server_stats().open_connections
      << " connections still open";
}

TEST_F(WireTest, DelayFirstByte) {
  SetScenario(
      "faults: [{name: d, probability: {base: 1}, effect: delay_first_byte, "
      "duration: 300ms}]");
  testing::RawResult raw =
      testing::RawExchange(testing::PortOf(buffered_), Get("/canary?bytes=10"));
  ASSERT_FALSE(raw.arrivals.empty());
  EXPECT_GE(raw.arrivals[0].at, absl::Milliseconds(295));
  EXPECT_EQ(testing::ParseResponse(raw.data).body, MakePayload(0, 10));
}

TEST_F(WireTest, SlowBody) {
  SetScenario(
      "faults: [{name: s, probability: {base: 1}, effect: slow_body, "
      "bytes_per_second: 20000}]");
  testing::CurlResult r =
      testing::CurlFetch(buffered_ + "canary?bytes=10000&seed=8");
  EXPECT_EQ(r.body, MakePayload(8, 10000));
  EXPECT_GE(r.total, absl::Milliseconds(450));  // 10,000 B at 20,000 B/s
}

TEST_F(WireTest, CorruptFlipsExactlyOneByte) {
  SetScenario(
      "faults: [{name: c, probability: {base: 1}, effect: corrupt, "
      "after_bytes: 1500}]");
  for (const std::string& base : {buffered_, stream_}) {
    testing::CurlResult r =
        testing::CurlFetch(base + "canary?bytes=4000&chunk=1000&seed=6");
    ASSERT_EQ(r.body.size(), 4000u);
    const std::string good = MakePayload(6, 4000);
    std::vector<size_t> diffs;
    for (size_t i = 0; i < good.size(); ++i) {
      if (good[i] != r.body[i]) diffs.push_back(i);
    }
    EXPECT_THAT(diffs, ElementsAre(1500)) << base;
  }
}

TEST_F(WireTest, CachedPayloadBlocksServeExactBytesInAnyChunking) {
  // 200,000 B = 3 whole 64 KiB blocks (from the shared cache) + a tail of
  // 3,392 B (generated per response); each URL twice, so the second
  // response is written from blocks the first one cached.
  const std::string good = MakePayload(21, 200000);
  for (const std::string& url :
       {buffered_ + "canary?bytes=200000&seed=21",
        stream_ + "canary?bytes=200000&seed=21",
        stream_ + "canary?bytes=200000&chunk=1000&seed=21",
        stream_ + "canary?bytes=200000&chunk=70000&seed=21"}) {
    for (int round = 0; round < 2; ++round) {
      testing::CurlResult r = testing::CurlFetch(url);
      ASSERT_EQ(r.curl_code, 0) << r.error;
      EXPECT_TRUE(r.body == good) << url << " round " << round;
    }
  }
}

TEST_F(WireTest, CorruptInsideACachedBlockLeavesTheCacheIntact) {
  const std::string good = MakePayload(22, 200000);
  testing::CurlResult warm =
      testing::CurlFetch(buffered_ + "canary?bytes=200000&seed=22");
  EXPECT_TRUE(warm.body == good);
  SetScenario(
      "faults: [{name: c, probability: {base: 1}, effect: corrupt, "
      "after_bytes: 131077}]");
  for (const std::string& url :
       {buffered_ + "canary?bytes=200000&seed=22",
        stream_ + "canary?bytes=200000&chunk=1000&seed=22"}) {
    testing::CurlResult r = testing::CurlFetch(url);
    ASSERT_EQ(r.body.size(), good.size()) << url;
    std::vector<size_t> diffs;
    for (size_t i = 0; i < good.size(); ++i) {
      if (good[i] != r.body[i]) diffs.push_back(i);
    }
    EXPECT_THAT(diffs, ElementsAre(131077)) << url;
  }
  SetScenario("faults: []");
  testing::CurlResult after =
      testing::CurlFetch(buffered_ + "canary?bytes=200000&seed=22");
  EXPECT_TRUE(after.body == good);
}

TEST(WireNoCacheTest, WithoutThePayloadCacheBodiesAreTheSameBytes) {
  EmulatorOptions options;
  options.config.add_regions()->set_name("us-east-1");
  options.payload_cache_bytes = 0;
  std::unique_ptr<Emulator> emu = Start(options);
  ASSERT_NE(emu, nullptr);
  const std::string good = MakePayload(23, 200000);
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    testing::CurlResult r = testing::CurlFetch(emu->url("us-east-1", mode) +
                                               "canary?bytes=200000&seed=23");
    ASSERT_EQ(r.curl_code, 0) << r.error;
    EXPECT_TRUE(r.body == good) << v1::InvokeMode_Name(mode);
  }
}

TEST_F(WireTest, ThrottleFaultIs429) {
  SetScenario("faults: [{name: t, probability: {base: 1}, effect: throttle}]");
  testing::CurlResult r = testing::CurlFetch(buffered_ + "canary?bytes=10");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("x-amzn-errortype"), "TooManyRequestsException");
  ASSERT_EQ(emu_->truth().size(), 1u);
  EXPECT_EQ(emu_->truth()[0].effect(), v1::FAULT_EFFECT_THROTTLE);
}

TEST_F(WireTest, FaultsHonourRegionModeAndSize) {
  SetScenario(R"(
faults:
  - name: only-eu-stream-big
    regions: [eu-west-1]
    modes: [RESPONSE_STREAM]
    min_bytes: 1Ki
    probability: {base: 1}
    effect: http_status
    status: 502
)");
  EXPECT_EQ(testing::CurlFetch(stream_ + "canary?bytes=2048").status, 200);
  const std::string eu_stream = emu_->url("eu-west-1", v1::RESPONSE_STREAM);
  EXPECT_EQ(testing::CurlFetch(eu_stream + "canary?bytes=1023").status, 200);
  EXPECT_EQ(testing::CurlFetch(eu_stream + "canary?bytes=1024").status, 502);
  EXPECT_EQ(testing::CurlFetch(emu_->url("eu-west-1", v1::BUFFERED) +
                               "canary?bytes=2048")
                .status,
            200);
  ASSERT_EQ(emu_->truth().size(), 1u);
  EXPECT_EQ(emu_->truth()[0].region(), "eu-west-1");
}

// ---------------------------------------------------------------------------
// Control endpoint and the curl program.

TEST_F(WireTest, ControlEndpointReplacesScenarioAndServesTruth) {
  const std::string control = emu_->control_url();
  testing::CurlResult bad = testing::CurlFetch(
      control + "_emulator/scenario",
      testing::WithMethod("PUT", "faults:\n  - name: x\n    effect: reset\n"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("scenario:2:5: faults[0].probability"));
  testing::CurlResult put = testing::CurlFetch(
      control + "_emulator/scenario",
      testing::WithMethod(
          "PUT",
          "name: t\nseed: 3\nfaults:\n  - {name: p, probability: {base: 1}, "
          "effect: phantom_error, modes: [RESPONSE_STREAM]}\n"));
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_THAT(testing::CurlFetch(control + "_emulator/scenario").body,
              HasSubstr("\"name\":\"t\""));
  testing::CurlFetch(stream_ + "canary?bytes=10",
                     testing::WithHeaders({"x-canary-probe-id: a"}));
  testing::CurlFetch(buffered_ + "canary?bytes=10",
                     testing::WithHeaders({"x-canary-probe-id: b"}));
  testing::CurlFetch(stream_ + "canary?bytes=20",
                     testing::WithHeaders({"x-canary-probe-id: c"}));
  testing::CurlResult truth = testing::CurlFetch(control + "_emulator/truth");
  ASSERT_EQ(truth.status, 200);
  EXPECT_EQ(truth.Header("content-type"), "application/x-ndjson");
  std::vector<std::string> lines =
      absl::StrSplit(truth.body, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["probe_id"], "a");
  EXPECT_EQ(first["effect"], "FAULT_EFFECT_PHANTOM_ERROR");
  EXPECT_EQ(first["alias"], "stream");
  EXPECT_EQ(first["region"], "us-east-1");
  EXPECT_EQ(first["bytes"], "10");
  EXPECT_FALSE(first["request_id"].get<std::string>().empty());
  EXPECT_FALSE(first["time"].get<std::string>().empty());
  const std::string second_seq = nlohmann::json::parse(lines[1])["sequence"];
  testing::CurlResult since = testing::CurlFetch(
      control + "_emulator/truth?since=" +
      nlohmann::json::parse(lines[0])["sequence"].get<std::string>());
  EXPECT_EQ(absl::StrSplit(since.body, '\n', absl::SkipEmpty()).begin()->size(),
            lines[1].size());
  EXPECT_EQ(testing::CurlFetch(control + "_emulator/truth",
                               testing::WithMethod("DELETE"))
                .status,
            204);
  EXPECT_EQ(testing::CurlFetch(control + "_emulator/truth").body, "");
  testing::CurlResult metrics = testing::CurlFetch(control + "metrics");
  EXPECT_THAT(
      metrics.body,
      HasSubstr("fleetcanary_emulator_faults_injected_total{alias=\"stream\","
                "effect=\"phantom_error\",region=\"us-east-1\"} 2"));
  EXPECT_THAT(metrics.body,
              HasSubstr("fleetcanary_emulator_url_requests_total"));
  testing::CurlResult urls = testing::CurlFetch(control + "_emulator/urls");
  EXPECT_EQ(nlohmann::json::parse(urls.body).size(), 4u);
}

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST_F(WireTest, TheCurlProgramSeesTheContract) {
  const std::string out = RunCommand(
      "curl -sS --max-time 60 -i --raw -H 'x-canary-probe-id: cli' '" +
      stream_ + "canary?bytes=20&chunk=8&seed=1' | od -An -c");
  // od output of: "HTTP/1.1 200 OK" ... "8\r\n" <8 bytes> ... "0\r\n\r\n".
  EXPECT_THAT(out, HasSubstr("H   T   T   P   /   1   .   1       2   0   0"));
  const std::string headers = RunCommand(
      "curl -sS --max-time 60 -D - -o /dev/null -H 'x-canary-probe-id: cli' '" +
      buffered_ + "canary?bytes=20&seed=1'");
  EXPECT_THAT(headers, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(headers, HasSubstr("Content-Length: 20"));
  EXPECT_THAT(headers, HasSubstr("x-canary-probe-id: cli"));
  EXPECT_THAT(headers, HasSubstr("x-canary-bytes: 20"));
  const std::string size = RunCommand("curl -sS --max-time 60 '" + stream_ +
                                      "canary?bytes=12345&chunk=100' | wc -c");
  EXPECT_EQ(absl::StripAsciiWhitespace(size), "12345");
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary
