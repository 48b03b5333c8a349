// Integration tests of the probe engine against a real local HTTP server
// (tests/testing/fault_server.h) over loopback sockets.
#include "agent/probe/probe_engine.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/probe_test_support.h"
#include "tests/testing/fault_server.h"
#include "tests/testing/ports.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace {

using testing::Describe;
using testing::FaultServer;
using testing::FaultServerOptions;
using testing::FaultSpec;
using testing::FromProto;
using testing::SetDuration;
using Framing = FaultSpec::Framing;

// Limits that must not decide a probe: far beyond what the slowest machine
// needs (half as fast, under a sanitizer, with another test in parallel).
// A test shortens only the one limit it tests.
constexpr absl::Duration kGenerousTimeout = absl::Seconds(60);
constexpr absl::Duration kGenerousStall = absl::Seconds(30);
constexpr absl::Duration kGenerousConnect = absl::Seconds(30);
// The stall limit of a probe that must stall and whose bytes before the
// stall are counted exactly. The fault server sends those bytes in several
// writes (head, end of head, body pieces) right after it read the request;
// a limit this long cannot expire in between however loaded the machine,
// and it is still far below kGenerousTimeout, so STALLED cannot turn into
// TIMEOUT.
constexpr absl::Duration kStallUnderTest = absl::Seconds(2);

// Current resident set size of this process, from /proc.
int64_t RssBytes() {
  std::ifstream f("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

class ProbeEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<FaultServer>> server =
        FaultServer::Create(FaultServerOptions());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ProbeEngineOptions options;
    options.max_in_flight = 256;
    options.credentials = [this]() -> absl::StatusOr<sigv4::Credentials> {
      if (!credentials_)
        return absl::NotFoundError("AWS_ACCESS_KEY_ID is not set");
      return *credentials_;
    };
    absl::StatusOr<std::unique_ptr<ProbeEngine>> engine =
        ProbeEngine::Create(options, Clock::Real());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  ProbeRequest Request(const FaultSpec& spec, uint64_t size) {
    ProbeRequest r;
    r.url = server_->BaseUrl(spec);
    r.mode =
        spec.framing == Framing::kChunked ? v1::RESPONSE_STREAM : v1::BUFFERED;
    r.size_bytes = size;
    r.seed = 0x5eed + size;
    r.probe_id = absl::StrCat("probe-", ++probe_counter_);
    r.agent_id = "agent-1";
    r.region = "us-east-1";
    r.target = "canary";
    SetDuration(kGenerousTimeout, r.limits.mutable_timeout());
    SetDuration(kGenerousStall, r.limits.mutable_stall_limit());
    SetDuration(kGenerousConnect, r.limits.mutable_connect_timeout());
    return r;
  }

  v1::Outcome Run(ProbeRequest request) {
    return testing::RunProbe(engine_.get(), std::move(request),
                             absl::Seconds(120));
  }

  std::unique_ptr<FaultServer> server_;
  std::unique_ptr<ProbeEngine> engine_;
  std::optional<sigv4::Credentials> credentials_;
  int probe_counter_ = 0;
};

TEST_F(ProbeEngineTest, CorrectBodiesAreOkInEveryFraming) {
  for (Framing framing :
       {Framing::kContentLength, Framing::kChunked, Framing::kClose}) {
    for (uint64_t size : {0ull, 2ull, 1024ull, 65536ull, 1048576ull}) {
      FaultSpec spec;
      spec.framing = framing;
      ProbeRequest r = Request(spec, size);
      if (framing == Framing::kChunked) r.chunk_bytes = 1000;
      const v1::Outcome o = Run(r);
      SCOPED_TRACE(absl::StrCat(spec.ToPath(), " size=", size));
      EXPECT_EQ(o.outcome_class(), v1::OK) << Describe(o);
      EXPECT_EQ(o.transfer_end(), v1::COMPLETE);
      EXPECT_EQ(o.status(), 200);
      EXPECT_EQ(o.http_version(), "1.1");
      EXPECT_EQ(o.received_bytes(), size);
      EXPECT_EQ(o.expected_bytes(), size);
      EXPECT_EQ(o.first_bad_offset(), -1);
      EXPECT_EQ(o.probe_id(), r.probe_id);
      EXPECT_EQ(o.seed(), r.seed);
      EXPECT_EQ(o.agent_id(), "agent-1");
      EXPECT_TRUE(absl::StartsWith(o.platform_request_id(), "00000000-"));
      EXPECT_TRUE(absl::StartsWith(o.trace_id(), "Root=1-"));
      EXPECT_TRUE(o.timings().has_connect());
      EXPECT_TRUE(o.timings().has_request_sent());
      EXPECT_TRUE(o.timings().has_headers_received());
      EXPECT_FALSE(o.timings().has_tls());
      EXPECT_LE(FromProto(o.timings().connect()),
                FromProto(o.timings().request_sent()));
      EXPECT_LE(FromProto(o.timings().headers_received()),
                FromProto(o.timings().total()));
      if (size > 0) {
        EXPECT_GE(o.chunk_count(), 1u);
        EXPECT_LE(FromProto(o.timings().headers_received()),
                  FromProto(o.timings().first_body_byte()));
        EXPECT_LE(FromProto(o.timings().first_body_byte()),
                  FromProto(o.timings().last_byte()));
        EXPECT_LE(FromProto(o.timings().last_byte()),
                  FromProto(o.timings().total()));
      }
      if (framing == Framing::kChunked && size == 65536) {
        EXPECT_GE(o.chunk_count(), 2u);
      }
    }
  }
}

struct FaultCase {
  std::string name;
  FaultSpec spec;
  uint64_t size;
  v1::OutcomeClass want_class;
  v1::TransferEnd want_end;
  int64_t want_received = -1;  // -1 = don't check.
  // Far from what the case does, except the one limit it tests: a short
  // stall limit only for the cases that must stall, a short timeout only for
  // the one that must hit its deadline.
  absl::Duration stall = kGenerousStall;
  absl::Duration timeout = kGenerousTimeout;
};

FaultSpec Spec(Framing framing) {
  FaultSpec s;
  s.framing = framing;
  return s;
}

std::vector<FaultCase> FaultCases() {
  std::vector<FaultCase> c;
  {
    FaultSpec s = Spec(Framing::kContentLength);
    s.close_at = 1000;
    c.push_back(
        {"cl_clean_close", s, 4096, v1::TRUNCATED, v1::CLEAN_CLOSE, 1000});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.close_at = 1000;
    c.push_back({"chunked_close_without_final_chunk", s, 4096, v1::TRUNCATED,
                 v1::CLEAN_CLOSE, 1000});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.end_at = 1000;
    c.push_back({"chunked_final_chunk_early", s, 4096, v1::TRUNCATED,
                 v1::COMPLETE, 1000});
  }
  {
    FaultSpec s = Spec(Framing::kClose);
    s.close_at = 1000;
    c.push_back(
        {"close_delimited_short", s, 4096, v1::TRUNCATED, v1::COMPLETE, 1000});
  }
  {
    FaultSpec s = Spec(Framing::kContentLength);
    s.reset_at = 1000;
    c.push_back({"cl_reset", s, 4096, v1::RESET, v1::PEER_RESET});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.reset_at = 1000;
    c.push_back({"chunked_reset", s, 4096, v1::RESET, v1::PEER_RESET});
  }
  {
    FaultSpec s = Spec(Framing::kContentLength);
    s.reset_at = 0;
    c.push_back({"reset_before_body", s, 4096, v1::RESET, v1::PEER_RESET, 0});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.stall_at = 1000;
    c.push_back(
        {"stall_mid_body", s, 4096, v1::STALLED, v1::STALL_LIMIT, 1000});
    c.back().stall = kStallUnderTest;
  }
  {
    FaultSpec s;
    s.silent = true;
    c.push_back(
        {"accept_never_answer", s, 4096, v1::STALLED, v1::STALL_LIMIT, 0});
    // Nothing is ever sent: STALLED with 0 bytes however slow the machine.
    c.back().stall = absl::Milliseconds(300);
  }
  {
    FaultSpec s = Spec(Framing::kContentLength);
    s.corrupt_at = 3000;
    c.push_back({"wrong_byte", s, 4096, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.endless = true;
    c.push_back({"endless_body", s, 4096, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.declare_bytes = 10;
    c.push_back(
        {"declares_other_length", s, 4096, v1::INTEGRITY, v1::LOCAL_ABORT, 0});
  }
  {
    FaultSpec s;
    s.echo_probe_id = false;
    c.push_back({"probe_id_not_echoed", s, 64, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    FaultSpec s;
    s.header_bytes = 10 << 20;
    c.push_back({"ten_mb_of_headers", s, 64, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    FaultSpec s;
    s.header_line_bytes = 10 << 20;
    c.push_back({"ten_mb_header_line", s, 64, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  for (int status : {500, 502, 503}) {
    FaultSpec s;
    s.status = status;
    c.push_back(
        {absl::StrCat("status_", status), s, 21, v1::HTTP_5XX, v1::COMPLETE});
  }
  {
    FaultSpec s;
    s.status = 429;
    c.push_back({"status_429", s, 0, v1::THROTTLED, v1::COMPLETE});
  }
  for (int status : {400, 403, 404}) {
    FaultSpec s;
    s.status = status;
    c.push_back(
        {absl::StrCat("status_", status), s, 16, v1::HTTP_4XX, v1::COMPLETE});
  }
  {
    FaultSpec s = Spec(Framing::kChunked);
    s.status = 500;
    s.endless = true;
    c.push_back(
        {"status_500_endless_body", s, 16, v1::HTTP_5XX, v1::LOCAL_ABORT});
  }
  {
    FaultSpec s;
    s.trickle = absl::Milliseconds(100);
    c.push_back(
        {"trickle_beyond_deadline", s, 4096, v1::TIMEOUT, v1::DEADLINE});
    // The body would take 410 s: the 4 s deadline ends it. The stall limit
    // is 30 trickle intervals (no pause of the server makes a byte that
    // late), yet below the deadline, so the case still proves that each
    // trickled byte keeps the probe alive.
    c.back().stall = absl::Seconds(3);
    c.back().timeout = absl::Seconds(4);
  }
  return c;
}

TEST_F(ProbeEngineTest, EachFaultLandsInItsClass) {
  const std::vector<FaultCase> cases = FaultCases();
  // All at once: the engine and the server run every fault concurrently.
  std::vector<ProbeRequest> requests;
  for (size_t i = 0; i < cases.size(); ++i) {
    ProbeRequest r = Request(cases[i].spec, cases[i].size);
    SetDuration(cases[i].stall, r.limits.mutable_stall_limit());
    SetDuration(cases[i].timeout, r.limits.mutable_timeout());
    requests.push_back(std::move(r));
  }
  std::vector<v1::Outcome> got;
  ASSERT_TRUE(testing::RunProbesConcurrently(engine_.get(), requests,
                                             absl::Seconds(120), &got));
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const v1::Outcome& o = got[i];
    EXPECT_EQ(v1::OutcomeClass_Name(o.outcome_class()),
              v1::OutcomeClass_Name(cases[i].want_class))
        << Describe(o);
    EXPECT_EQ(v1::TransferEnd_Name(o.transfer_end()),
              v1::TransferEnd_Name(cases[i].want_end))
        << Describe(o);
    if (cases[i].want_received >= 0) {
      EXPECT_EQ(o.received_bytes(),
                static_cast<uint64_t>(cases[i].want_received))
          << Describe(o);
    }
  }
  EXPECT_EQ(engine_->in_flight(), 0);
}

TEST_F(ProbeEngineTest, WrongByteReportsItsOffset) {
  FaultSpec s;
  s.corrupt_at = 777;
  const v1::Outcome o = Run(Request(s, 4096));
  EXPECT_EQ(o.outcome_class(), v1::INTEGRITY) << Describe(o);
  EXPECT_EQ(o.first_bad_offset(), 777);
}

TEST_F(ProbeEngineTest, NetworkFailuresHaveTheirOwnClasses) {
  ProbeRequest dns = Request(FaultSpec(), 16);
  dns.url = "http://fleetcanary-no-such-host.invalid/";
  v1::Outcome o = Run(dns);
  EXPECT_EQ(o.outcome_class(), v1::DNS_ERROR) << Describe(o);
  EXPECT_EQ(o.transfer_end(), v1::NOT_CONNECTED);

  ProbeRequest refused = Request(FaultSpec(), 16);
  refused.url =
      absl::StrCat("http://127.0.0.1:", testing::UnusedLoopbackPort(), "/");
  o = Run(refused);
  EXPECT_EQ(o.outcome_class(), v1::CONNECT_ERROR) << Describe(o);
  EXPECT_EQ(o.transfer_end(), v1::NOT_CONNECTED);
  EXPECT_FALSE(o.timings().has_connect());

  // TLS spoken to a plain-HTTP server.
  ProbeRequest tls = Request(FaultSpec(), 16);
  tls.url = absl::StrCat("https://127.0.0.1:", server_->port(), "/");
  o = Run(tls);
  EXPECT_EQ(o.outcome_class(), v1::TLS_ERROR) << Describe(o);
  EXPECT_FALSE(o.timings().has_tls());
}

TEST_F(ProbeEngineTest, OurOwnFaultsAreAgentErrors) {
  std::vector<std::pair<std::string, ProbeRequest>> bad;
  ProbeRequest r = Request(FaultSpec(), 16);
  r.transport.set_http_version("3");
  bad.push_back({"http_version", r});
  r = Request(FaultSpec(), 16);
  r.url = "ftp://127.0.0.1/";
  bad.push_back({"url", r});
  r = Request(FaultSpec(), 16);
  r.url = "http://[::1/";
  bad.push_back({"url", r});
  r = Request(FaultSpec(), 16);
  r.transport.set_ca_file("/nonexistent/ca.pem");
  bad.push_back({"ca_file", r});
  r = Request(FaultSpec(), 1 << 20);
  r.limits.set_max_body_bytes(1024);
  bad.push_back({"max_body_bytes", r});
  r = Request(FaultSpec(), 16);
  r.auth = v1::AWS_IAM;
  bad.push_back({"AWS_ACCESS_KEY_ID", r});
  const int64_t requests_before = server_->requests();
  for (auto& [field, request] : bad) {
    SCOPED_TRACE(field);
    const v1::Outcome o = Run(request);
    EXPECT_EQ(o.outcome_class(), v1::AGENT_ERROR) << Describe(o);
    EXPECT_EQ(o.transfer_end(), v1::NOT_CONNECTED);
    EXPECT_TRUE(absl::StrContains(o.detail(), field)) << o.detail();
  }
  EXPECT_EQ(server_->requests(), requests_before);
}

TEST_F(ProbeEngineTest, MeasuresAnInjectedFirstByteDelay) {
  FaultSpec s;
  s.first_byte_delay = absl::Milliseconds(200);
  // Bracketed by causality, whatever the machine's speed: the server holds
  // its answer for the delay after it read the request the engine had sent,
  // so the engine's wait is at least the delay; and the engine's measurement
  // lies inside the test's own measurement of the whole probe. How close to
  // the delay the measurement lands is a benchmark figure (bench/), printed
  // here for reference.
  absl::Duration best = absl::InfiniteDuration();
  for (int i = 0; i < 5; ++i) {
    const absl::Duration before = Clock::Real()->MonotonicNow();
    const v1::Outcome o = Run(Request(s, 1024));
    const absl::Duration around = Clock::Real()->MonotonicNow() - before;
    ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
    const absl::Duration waited = FromProto(o.timings().headers_received()) -
                                  FromProto(o.timings().request_sent());
    EXPECT_GE(waited, absl::Milliseconds(200)) << waited;
    EXPECT_LE(waited, around) << waited;
    EXPECT_GE(FromProto(o.timings().first_body_byte()),
              absl::Milliseconds(200));
    EXPECT_LE(FromProto(o.timings().total()), around);
    best = std::min(best, waited);
  }
  std::printf("200 ms first-byte delay measured as %s (best of five)\n",
              absl::FormatDuration(best).c_str());
}

TEST_F(ProbeEngineTest, DetectsAStallWithinTheLimit) {
  FaultSpec s = Spec(Framing::kChunked);
  s.stall_at = 5000;
  ProbeRequest r = Request(s, 65536);
  r.chunk_bytes = 1000;
  SetDuration(kStallUnderTest, r.limits.mutable_stall_limit());
  SetDuration(kGenerousTimeout, r.limits.mutable_timeout());
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::STALLED) << Describe(o);
  EXPECT_EQ(o.received_bytes(), 5000u);
  const absl::Duration silent =
      FromProto(o.timings().total()) - FromProto(o.timings().last_byte());
  // The stall timer fired (the class says so, long before the 60 s
  // deadline), and not before the limit.
  EXPECT_GE(silent, kStallUnderTest) << silent;
  std::printf("%s stall limit: stall declared after %s of silence\n",
              absl::FormatDuration(kStallUnderTest).c_str(),
              absl::FormatDuration(silent).c_str());
}

// A header line sent one byte per 100 ms takes 3.3 s to arrive: every byte
// counts as activity, so a 2 s stall limit (20 intervals: no pause of the
// server makes a byte that late) is not hit, though it is well below the
// time the whole line takes; a 50 ms one is hit.
TEST_F(ProbeEngineTest, HeaderBytesTrickledSlowlyAreNotAStall) {
  FaultSpec s;
  s.header_trickle_bytes = 20;  // "x-trickle: " + 20 't' + "\r\n": 33 bytes.
  s.header_trickle = absl::Milliseconds(100);
  ProbeRequest r = Request(s, 4096);
  SetDuration(absl::Seconds(2), r.limits.mutable_stall_limit());
  SetDuration(kGenerousTimeout, r.limits.mutable_timeout());
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_EQ(o.received_bytes(), 4096u);
  // The server cannot finish the line before 32 intervals have passed.
  EXPECT_GE(FromProto(o.timings().first_body_byte()), absl::Milliseconds(3200));

  SetDuration(absl::Milliseconds(50), r.limits.mutable_stall_limit());
  r.probe_id += "-b";
  const v1::Outcome stalled = Run(r);
  EXPECT_EQ(stalled.outcome_class(), v1::STALLED) << Describe(stalled);
  EXPECT_EQ(stalled.received_bytes(), 0u);
}

TEST_F(ProbeEngineTest, TruncationAtByteKReportsExactlyK) {
  for (int64_t k : {1, 4095, 12345, 65537}) {
    for (Framing framing : {Framing::kContentLength, Framing::kChunked}) {
      FaultSpec s = Spec(framing);
      s.close_at = k;
      const v1::Outcome o = Run(Request(s, 100000));
      SCOPED_TRACE(s.ToPath());
      EXPECT_EQ(o.outcome_class(), v1::TRUNCATED) << Describe(o);
      EXPECT_EQ(o.received_bytes(), static_cast<uint64_t>(k));
      EXPECT_EQ(o.expected_bytes(), 100000u);
      EXPECT_EQ(o.first_bad_offset(), -1);
    }
  }
}

TEST_F(ProbeEngineTest, StreamingRecordsChunksAndGaps) {
  // Four chunks of 100 bytes: the whole response (about 700 bytes with its
  // head) fits in one read of libcurl's smallest receive buffer (1 KiB), so
  // however late the engine reads, no chunk is split across two reads and
  // each chunk is exactly one delivery.
  ProbeRequest r = Request(Spec(Framing::kChunked), 400);
  r.chunk_bytes = 100;
  r.chunk_gap = absl::Milliseconds(40);
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_EQ(o.chunk_count(), 4u);
  // The server cannot send the last chunk before three gaps have passed
  // since it read the request; the largest of the three gaps the engine saw
  // is at least their mean.
  const absl::Duration body = FromProto(o.timings().last_byte()) -
                              FromProto(o.timings().first_body_byte());
  EXPECT_GE(FromProto(o.timings().last_byte()) -
                FromProto(o.timings().request_sent()),
            absl::Milliseconds(120));
  EXPECT_GE(FromProto(o.max_gap()), body / 3);
  EXPECT_LE(FromProto(o.max_gap()), body);
}

TEST_F(ProbeEngineTest, FreshConnectionPerProbeUnlessKeepAlive) {
  const int64_t before = server_->connections_accepted();
  for (int i = 0; i < 10; ++i) {
    const v1::Outcome o = Run(Request(FaultSpec(), 512));
    ASSERT_EQ(o.outcome_class(), v1::OK);
    EXPECT_FALSE(o.connection_reused());
    EXPECT_TRUE(o.timings().has_connect());
  }
  EXPECT_EQ(server_->connections_accepted() - before, 10);

  const int64_t mid = server_->connections_accepted();
  int reused = 0;
  for (int i = 0; i < 10; ++i) {
    ProbeRequest r = Request(FaultSpec(), 512);
    r.transport.set_keep_alive(true);
    const v1::Outcome o = Run(r);
    ASSERT_EQ(o.outcome_class(), v1::OK);
    if (o.connection_reused()) {
      ++reused;
      EXPECT_FALSE(o.timings().has_connect());
    }
  }
  EXPECT_EQ(server_->connections_accepted() - mid, 1);
  EXPECT_EQ(reused, 9);
}

// The engine reuses easy handles without resetting them and leaves the
// sockets of idle keep-alive connections registered with epoll. Connections
// the server closes (close-delimited bodies) free descriptor numbers the
// next connection takes again, and a probe with a rare option
// (insecure_skip_verify) makes its handle be reset: every probe in between
// must still be OK and carry its own labels.
TEST_F(ProbeEngineTest, ReusedHandlesAndDescriptorsKeepProbesApart) {
  for (int i = 0; i < 12; ++i) {
    const Framing framing = i % 3 == 0   ? Framing::kClose
                            : i % 3 == 1 ? Framing::kChunked
                                         : Framing::kContentLength;
    ProbeRequest r = Request(Spec(framing), 700 + i);
    r.transport.set_keep_alive(i % 4 != 3);
    r.transport.set_insecure_skip_verify(i % 5 == 4);
    const std::string probe_id = r.probe_id;
    const v1::Outcome o = Run(r);
    ASSERT_EQ(o.outcome_class(), v1::OK) << i << ": " << testing::Describe(o);
    EXPECT_EQ(o.probe_id(), probe_id);
    EXPECT_EQ(o.received_bytes(), 700u + i);
    EXPECT_EQ(o.agent_id(), "agent-1");
  }
}

TEST_F(ProbeEngineTest, ManyConcurrentProbes) {
  constexpr int kProbes = 2000;
  absl::Mutex mu;
  int done = 0, ok = 0;
  int max_seen = 0;
  for (int i = 0; i < kProbes; ++i) {
    ProbeRequest r = Request(
        Spec(i % 2 ? Framing::kChunked : Framing::kContentLength), 1024);
    r.chunk_bytes = 256;
    engine_->Start(r, [&](v1::Outcome o) {
      absl::MutexLock lock(&mu);
      ++done;
      if (o.outcome_class() == v1::OK) ++ok;
    });
    max_seen = std::max(max_seen, engine_->in_flight());
  }
  // Each probe has the fixture's generous limits (60 s total, 30 s stall):
  // all 2000 share one server thread, so a probe may wait long for its turn
  // under a sanitizer. The bound is only a safety limit.
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(
      mu.AwaitWithTimeout(absl::Condition(
                              +[](int* d) { return *d == kProbes; }, &done),
                          absl::Seconds(300)));
  EXPECT_EQ(ok, kProbes);
  EXPECT_GT(max_seen, 256);  // Queued beyond max_in_flight, then drained.
}

TEST_F(ProbeEngineTest, HostileEndpointsEndWithinLimitsInBoundedMemory) {
  const int64_t rss_before = RssBytes();
  struct Hostile {
    std::string name;
    FaultSpec spec;
    uint64_t size;
    absl::Duration stall, timeout;
    v1::OutcomeClass want;
  };
  // Limits that must not decide a case are far above what the slowest
  // machine needs (32 MiB under ThreadSanitizer took over 5 s).
  std::vector<Hostile> hostile;
  {
    // Endless correct payload after 32 MiB: stopped at the first extra byte.
    FaultSpec s = Spec(Framing::kChunked);
    s.endless = true;
    hostile.push_back({"endless", s, 32 << 20, absl::Seconds(10),
                       absl::Seconds(60), v1::INTEGRITY});
  }
  {
    // Endless body with no length at all.
    FaultSpec s = Spec(Framing::kClose);
    s.endless = true;
    hostile.push_back({"endless_close_delimited", s, 1 << 20, absl::Seconds(10),
                       absl::Seconds(60), v1::INTEGRITY});
  }
  {
    FaultSpec s;
    s.header_bytes = 10 << 20;
    hostile.push_back({"10MB_headers", s, 16, absl::Seconds(10),
                       absl::Seconds(60), v1::INTEGRITY});
  }
  {
    FaultSpec s;
    s.silent = true;
    hostile.push_back({"never_answers", s, 16, absl::Milliseconds(500),
                       absl::Seconds(60), v1::STALLED});
  }
  {
    // Ended by its deadline. The stall limit is far above the 1 s between
    // bytes (no pause of the server makes a byte 3 s late), yet below the
    // deadline: the trickle evades the stall limit and the deadline still
    // ends it.
    FaultSpec s;
    s.trickle = absl::Seconds(1);
    hostile.push_back({"one_byte_per_second", s, 1024, absl::Seconds(4),
                       absl::Seconds(6), v1::TIMEOUT});
  }
  std::vector<ProbeRequest> requests;
  for (size_t i = 0; i < hostile.size(); ++i) {
    ProbeRequest r = Request(hostile[i].spec, hostile[i].size);
    SetDuration(hostile[i].stall, r.limits.mutable_stall_limit());
    SetDuration(hostile[i].timeout, r.limits.mutable_timeout());
    requests.push_back(std::move(r));
  }
  std::vector<v1::Outcome> got;
  ASSERT_TRUE(testing::RunProbesConcurrently(engine_.get(), requests,
                                             absl::Seconds(120), &got));
  for (size_t i = 0; i < hostile.size(); ++i) {
    SCOPED_TRACE(hostile[i].name);
    EXPECT_EQ(v1::OutcomeClass_Name(got[i].outcome_class()),
              v1::OutcomeClass_Name(hostile[i].want))
        << Describe(got[i]);
  }
  // 32+ MiB of body and 10 MiB of headers went through without being kept.
  // (Sanitizers keep freed memory resident (quarantine, shadow), so the
  // bound is checked in the uninstrumented build only.)
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_LT(RssBytes() - rss_before, 8 << 20);
#else
  (void)rss_before;
#endif
}

TEST_F(ProbeEngineTest, ShutdownCompletesEverythingAsAgentError) {
  FaultSpec s;
  s.silent = true;
  absl::Mutex mu;
  int agent_errors = 0;
  constexpr int kProbes = 300;  // More than max_in_flight: some still queued.
  for (int i = 0; i < kProbes; ++i) {
    engine_->Start(Request(s, 16), [&](v1::Outcome o) {
      absl::MutexLock lock(&mu);
      if (o.outcome_class() == v1::AGENT_ERROR) ++agent_errors;
    });
  }
  engine_->Shutdown();
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(agent_errors, kProbes);
  }
  EXPECT_EQ(engine_->in_flight(), 0);
  const v1::Outcome late = Run(Request(FaultSpec(), 16));
  EXPECT_EQ(late.outcome_class(), v1::AGENT_ERROR);
  EXPECT_TRUE(absl::StrContains(late.detail(), "shut down"));
  engine_->Shutdown();  // Idempotent.
}

TEST_F(ProbeEngineTest, SignsIamRequestsWithSigV4) {
  credentials_ = sigv4::Credentials{"AKIDEXAMPLE",
                                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                    "session-token"};
  ProbeRequest r = Request(FaultSpec(), 64);
  r.auth = v1::AWS_IAM;
  r.region = "eu-west-1";
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);

  // Verify what arrived on the wire with the verifier the emulator uses.
  const std::string head = server_->last_request_headers();
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  ASSERT_GE(lines.size(), 2u);
  std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
  ASSERT_EQ(request_line.size(), 3u);
  std::vector<std::pair<std::string, std::string>> kv;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    kv.push_back({lines[i].substr(0, colon),
                  std::string(absl::StripAsciiWhitespace(
                      absl::string_view(lines[i]).substr(colon + 1)))});
  }
  std::vector<sigv4::HeaderView> views;
  for (const auto& [k, v] : kv) views.push_back({k, v});
  const sigv4::HttpRequestView req{"GET", request_line[1], views, "", ""};
  EXPECT_TRUE(absl::StrContains(head, "/eu-west-1/lambda/aws4_request"));
  EXPECT_TRUE(absl::StrContains(head, "session-token"));
  const absl::Status verified = sigv4::VerifyRequest(
      req, *credentials_, "lambda", "eu-west-1", absl::Now(), absl::Minutes(5));
  EXPECT_TRUE(verified.ok()) << verified;
}

TEST(ProbeEngineClockTest, StallLimitFollowsTheInjectedClock) {
  absl::StatusOr<std::unique_ptr<FaultServer>> server =
      FaultServer::Create(FaultServerOptions());
  ASSERT_TRUE(server.ok());
  SimulatedClock clock;
  ProbeEngineOptions options;
  options.max_poll_wait = absl::Milliseconds(2);
  auto engine = ProbeEngine::Create(options, &clock);
  ASSERT_TRUE(engine.ok());
  FaultSpec s;
  s.silent = true;
  ProbeRequest r;
  r.url = (*server)->BaseUrl(s);
  r.size_bytes = 16;
  SetDuration(absl::Seconds(10), r.limits.mutable_stall_limit());
  SetDuration(absl::Seconds(60), r.limits.mutable_timeout());
  absl::Notification done;
  v1::Outcome outcome;
  (*engine)->Start(r, [&](v1::Outcome o) {
    outcome = std::move(o);
    done.Notify();
  });
  // Wait (in real time) until the server saw the request, then jump 11 s of
  // simulated time: the stall is detected without 11 s passing.
  ASSERT_TRUE(testing::WaitUntil([&] { return (*server)->requests() > 0; }));
  ASSERT_EQ((*server)->requests(), 1);
  EXPECT_FALSE(done.HasBeenNotified());
  clock.AdvanceTime(absl::Seconds(11));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(outcome.outcome_class(), v1::STALLED) << Describe(outcome);
  EXPECT_EQ(FromProto(outcome.timings().total()), absl::Seconds(11));
}

// Out of file descriptors is our fault, not the platform's. Runs in a child
// process (death-test machinery) so the descriptor exhaustion stays there.
TEST(ProbeEngineFdTest, OutOfDescriptorsIsAgentError) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP()
      << "main build only: a sanitizer's runtime needs file "
         "descriptors of its own to report, and this test uses them up";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto server = FaultServer::Create(FaultServerOptions());
        auto engine = ProbeEngine::Create(ProbeEngineOptions(), Clock::Real());
        if (!server.ok() || !engine.ok()) _exit(10);
        rlimit lim{};
        getrlimit(RLIMIT_NOFILE, &lim);
        lim.rlim_cur = 256;
        setrlimit(RLIMIT_NOFILE, &lim);
        while (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0) {
        }
        ProbeRequest r;
        r.url = (*server)->BaseUrl();
        r.size_bytes = 16;
        absl::Notification done;
        v1::Outcome outcome;
        (*engine)->Start(r, [&](v1::Outcome o) {
          outcome = std::move(o);
          done.Notify();
        });
        if (!done.WaitForNotificationWithTimeout(absl::Seconds(60))) _exit(11);
        if (outcome.outcome_class() != v1::AGENT_ERROR) _exit(12);
        if (!absl::StrContains(outcome.detail(), "socket")) _exit(13);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace fleetcanary
