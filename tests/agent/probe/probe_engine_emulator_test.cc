// The probe engine against the real function-url-emulator (in process, real
// loopback sockets): every fault effect of a scenario lands in its outcome
// class in both invoke modes, a phantom error (the platform counts an error,
// the client sees a perfect response) is OK with every byte verified while
// the emulator's ground truth records it, and the TLS paths (trusted CA,
// wrong CA, verification off, HTTP/2 requested from an HTTP/1.1-only server).
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/probe/probe_engine.h"
#include "emulator/emulator.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/probe_test_support.h"
#include "tests/testing/pki.h"

namespace fleetcanary {
namespace {

using emulator::Emulator;
using emulator::EmulatorOptions;
using testing::Describe;
using testing::FromProto;
using testing::SetDuration;

const char* ModeName(v1::InvokeMode mode) {
  return mode == v1::RESPONSE_STREAM ? "stream" : "buffered";
}

// One fault rule of the scenario and what the probe must conclude. Each case
// has its own body size, and its rule matches exactly that size, so all cases
// run at once.
struct EffectCase {
  std::string name;
  uint64_t size;
  v1::FaultRule rule;  // name, sizes and probability filled in by Scenario().
  v1::OutcomeClass want_class;
  v1::TransferEnd want_end_buffered;
  v1::TransferEnd want_end_stream;
  int64_t want_received = -1;  // -1 = don't check.
  int want_status = -1;        // -1 = don't check.
};

std::vector<EffectCase> EffectCases() {
  std::vector<EffectCase> c;
  auto add = [&](std::string name, v1::FaultEffect effect,
                 v1::OutcomeClass want, v1::TransferEnd end_buffered,
                 v1::TransferEnd end_stream) -> EffectCase& {
    EffectCase e;
    e.name = std::move(name);
    e.size = 10000 + 101 * c.size();
    e.rule.set_effect(effect);
    e.want_class = want;
    e.want_end_buffered = end_buffered;
    e.want_end_stream = end_stream;
    c.push_back(std::move(e));
    return c.back();
  };
  {
    EffectCase& e = add("http_status_502", v1::FAULT_EFFECT_HTTP_STATUS,
                        v1::HTTP_5XX, v1::COMPLETE, v1::COMPLETE);
    e.rule.set_status(502);
    e.want_status = 502;
  }
  {
    EffectCase& e = add("http_status_403", v1::FAULT_EFFECT_HTTP_STATUS,
                        v1::HTTP_4XX, v1::COMPLETE, v1::COMPLETE);
    e.rule.set_status(403);
    e.want_status = 403;
  }
  {
    EffectCase& e = add("throttle", v1::FAULT_EFFECT_THROTTLE, v1::THROTTLED,
                        v1::COMPLETE, v1::COMPLETE);
    e.want_status = 429;
  }
  {
    // FIN after 3000 bytes: short of Content-Length, or of the chunked end.
    EffectCase& e = add("truncate", v1::FAULT_EFFECT_TRUNCATE, v1::TRUNCATED,
                        v1::CLEAN_CLOSE, v1::CLEAN_CLOSE);
    e.rule.set_after_bytes(3000);
    e.want_received = 3000;
  }
  {
    // The stream is framed to its end (terminating chunk) after 3000 bytes:
    // a complete transfer that is short of x-canary-bytes.
    EffectCase& e = add("truncate_with_final_chunk", v1::FAULT_EFFECT_TRUNCATE,
                        v1::TRUNCATED, v1::CLEAN_CLOSE, v1::COMPLETE);
    e.rule.set_after_bytes(3000);
    e.rule.set_final_chunk(true);
    e.want_received = 3000;
  }
  {
    EffectCase& e = add("reset", v1::FAULT_EFFECT_RESET, v1::RESET,
                        v1::PEER_RESET, v1::PEER_RESET);
    e.rule.set_after_bytes(3000);
  }
  {
    EffectCase& e = add("stall", v1::FAULT_EFFECT_STALL, v1::STALLED,
                        v1::STALL_LIMIT, v1::STALL_LIMIT);
    e.rule.set_after_bytes(3000);  // No duration: stalls for good.
    e.want_received = 3000;
  }
  {
    EffectCase& e = add("corrupt", v1::FAULT_EFFECT_CORRUPT, v1::INTEGRITY,
                        v1::LOCAL_ABORT, v1::LOCAL_ABORT);
    e.rule.set_after_bytes(4321);
  }
  {
    // 16 KiB/s: about 0.6 s for the body, in small steps.
    EffectCase& e = add("slow_body", v1::FAULT_EFFECT_SLOW_BODY, v1::OK,
                        v1::COMPLETE, v1::COMPLETE);
    e.rule.set_bytes_per_second(16384);
    e.want_status = 200;
  }
  {
    EffectCase& e = add("phantom_error", v1::FAULT_EFFECT_PHANTOM_ERROR, v1::OK,
                        v1::COMPLETE, v1::COMPLETE);
    e.want_status = 200;
  }
  return c;
}

v1::Scenario Scenario(const std::vector<EffectCase>& cases) {
  v1::Scenario s;
  s.set_name("probe-engine-effects");
  s.set_seed(20240229);
  for (const EffectCase& e : cases) {
    v1::FaultRule* r = s.add_faults();
    *r = e.rule;
    r->set_name(e.name);
    r->set_min_bytes(e.size);
    r->set_max_bytes(e.size);
    r->mutable_probability()->set_base(1);
  }
  return s;
}

class EmulatorProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ProbeEngine>> engine =
        ProbeEngine::Create(ProbeEngineOptions(), Clock::Real());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  void StartEmulator(EmulatorOptions options) {
    if (options.config.regions_size() == 0) {
      options.config.add_regions()->set_name("us-east-1");
    }
    options.request_id_seed = 7;
    absl::StatusOr<std::unique_ptr<Emulator>> emu =
        Emulator::Create(options, Clock::Real());
    ASSERT_TRUE(emu.ok()) << emu.status();
    emu_ = std::move(*emu);
  }

  ProbeRequest Request(v1::InvokeMode mode, uint64_t size) {
    ProbeRequest r;
    r.url = emu_->url("us-east-1", mode);
    r.mode = mode;
    r.size_bytes = size;
    if (mode == v1::RESPONSE_STREAM) r.chunk_bytes = 1024;
    r.seed = 0xc0ffee + size;
    r.probe_id = absl::StrCat("p-", ModeName(mode), "-", ++counter_);
    r.region = "us-east-1";
    // Far beyond what the slowest machine needs (half as fast, under a
    // sanitizer, with another test in parallel): no test here wants a
    // limit to decide its outcome unless it sets that limit itself.
    SetDuration(absl::Seconds(60), r.limits.mutable_timeout());
    SetDuration(absl::Seconds(30), r.limits.mutable_stall_limit());
    SetDuration(absl::Seconds(30), r.limits.mutable_connect_timeout());
    return r;
  }

  v1::Outcome Run(ProbeRequest request) {
    return testing::RunProbe(engine_.get(), std::move(request),
                             absl::Seconds(120));
  }

  // The ground-truth record of the probe, if the emulator injected a fault.
  const v1::InjectedFault* TruthFor(const std::vector<v1::InjectedFault>& all,
                                    const std::string& probe_id) {
    for (const v1::InjectedFault& f : all) {
      if (f.probe_id() == probe_id) return &f;
    }
    return nullptr;
  }

  std::unique_ptr<Emulator> emu_;
  std::unique_ptr<ProbeEngine> engine_;
  int counter_ = 0;
};

TEST_F(EmulatorProbeTest, EveryFaultEffectLandsInItsClassInBothModes) {
  StartEmulator(EmulatorOptions());
  const std::vector<EffectCase> cases = EffectCases();
  ASSERT_TRUE(emu_->SetScenario(Scenario(cases)).ok());

  struct Run {
    size_t index;
    v1::InvokeMode mode;
    ProbeRequest request;
    v1::Outcome outcome;
  };
  std::vector<Run> runs;
  for (size_t i = 0; i < cases.size(); ++i) {
    for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      ProbeRequest r = Request(mode, cases[i].size);
      if (cases[i].want_class == v1::STALLED) {
        // The one case that must stall: a short limit keeps the test quick,
        // far below the 60 s deadline so that STALLED cannot become TIMEOUT.
        // Its 3000 bytes are counted exactly, so the limit must not expire
        // before they came: they go out in one write with the head, but
        // only after the emulator was woken to read the request, hence
        // seconds rather than milliseconds.
        SetDuration(absl::Seconds(2), r.limits.mutable_stall_limit());
      } else {
        // Everything else must finish however slow the machine is: limits
        // far above the slowest body (slow_body, about 0.6 s).
        SetDuration(absl::Seconds(10), r.limits.mutable_stall_limit());
        SetDuration(absl::Seconds(30), r.limits.mutable_timeout());
      }
      runs.push_back({i, mode, std::move(r), v1::Outcome()});
    }
  }
  // A size no rule matches: no fault, no ground-truth record.
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    runs.push_back({cases.size(), mode, Request(mode, 65536), v1::Outcome()});
  }
  std::vector<ProbeRequest> requests;
  for (const Run& run : runs) requests.push_back(run.request);
  std::vector<v1::Outcome> outcomes;
  ASSERT_TRUE(testing::RunProbesConcurrently(engine_.get(), requests,
                                             absl::Seconds(120), &outcomes));
  for (size_t i = 0; i < runs.size(); ++i) runs[i].outcome = outcomes[i];

  const std::vector<v1::InjectedFault> truth = emu_->truth();
  for (const Run& run : runs) {
    const v1::Outcome& o = run.outcome;
    const v1::InjectedFault* injected = TruthFor(truth, run.request.probe_id);
    if (run.index == cases.size()) {
      SCOPED_TRACE(absl::StrCat("no_fault/", ModeName(run.mode)));
      EXPECT_EQ(o.outcome_class(), v1::OK) << Describe(o);
      EXPECT_EQ(o.received_bytes(), 65536u);
      EXPECT_EQ(injected, nullptr);
      continue;
    }
    const EffectCase& c = cases[run.index];
    SCOPED_TRACE(absl::StrCat(c.name, "/", ModeName(run.mode)));
    EXPECT_EQ(v1::OutcomeClass_Name(o.outcome_class()),
              v1::OutcomeClass_Name(c.want_class))
        << Describe(o);
    const v1::TransferEnd want_end =
        run.mode == v1::BUFFERED ? c.want_end_buffered : c.want_end_stream;
    EXPECT_EQ(v1::TransferEnd_Name(o.transfer_end()),
              v1::TransferEnd_Name(want_end))
        << Describe(o);
    if (c.want_received >= 0) {
      EXPECT_EQ(o.received_bytes(), static_cast<uint64_t>(c.want_received))
          << Describe(o);
    }
    if (c.want_status >= 0) {
      EXPECT_EQ(o.status(), c.want_status);
    }
    EXPECT_EQ(o.probe_id(), run.request.probe_id);
    EXPECT_EQ(o.mode(), run.mode);
    EXPECT_FALSE(o.platform_request_id().empty()) << Describe(o);
    // The emulator really injected this fault into this very probe.
    ASSERT_NE(injected, nullptr) << "no ground truth for " << c.name;
    EXPECT_EQ(injected->effect(), c.rule.effect());
    EXPECT_EQ(injected->rule(), c.name);
    EXPECT_EQ(injected->mode(), run.mode);
    EXPECT_EQ(injected->bytes(), c.size);
    EXPECT_EQ(injected->request_id(), o.platform_request_id());

    switch (c.rule.effect()) {
      case v1::FAULT_EFFECT_CORRUPT:
        EXPECT_EQ(o.first_bad_offset(),
                  static_cast<int64_t>(c.rule.after_bytes()));
        break;
      case v1::FAULT_EFFECT_SLOW_BODY: {
        EXPECT_EQ(o.received_bytes(), c.size);
        // Causal: the emulator read the request after the engine sent it,
        // then paused slice / rate after each 1/20 s slice but the last, so
        // the last byte came (size - one slice) / rate after the request at
        // the very least, however late the engine read any of it.
        const uint64_t rate = c.rule.bytes_per_second();
        const absl::Duration paced =
            absl::Seconds(static_cast<double>(c.size - rate / 20) / rate);
        EXPECT_GE(FromProto(o.timings().last_byte()) -
                      FromProto(o.timings().request_sent()),
                  paced)
            << Describe(o);
        if (run.mode == v1::RESPONSE_STREAM) {
          // The emulator ends an HTTP chunk at least at every multiple of
          // chunk_bytes, and libcurl hands each chunk over on its own, so
          // there are at least ceil(size / chunk_bytes) deliveries however
          // the reads fell.
          const uint64_t chunk = run.request.chunk_bytes;
          ASSERT_GT(chunk, 0u);
          EXPECT_GE(o.chunk_count(), (c.size + chunk - 1) / chunk)
              << Describe(o);
        } else {
          // Slices that arrive while the engine is not reading merge into
          // one read, so how many deliveries there are depends on the
          // scheduler; only the receive buffer of a small body bounds them
          // from below (no read is longer than the buffer).
          const ProbeEngineOptions defaults;
          ASSERT_LE(c.size, defaults.small_body_bytes);
          EXPECT_GE(
              o.chunk_count(),
              c.size / static_cast<uint64_t>(defaults.receive_buffer_bytes))
              << Describe(o);
        }
        break;
      }
      case v1::FAULT_EFFECT_PHANTOM_ERROR:
        // The client saw a perfect response: every byte verified...
        EXPECT_EQ(o.received_bytes(), c.size);
        EXPECT_EQ(o.expected_bytes(), c.size);
        EXPECT_EQ(o.first_bad_offset(), -1);
        EXPECT_EQ(o.seed(), run.request.seed);
        // ...while the platform counted an error.
        EXPECT_TRUE(injected->platform_error());
        break;
      default:
        break;
    }
  }
  EXPECT_EQ(engine_->in_flight(), 0);
}

TEST_F(EmulatorProbeTest, MeasuresTheInjectedFirstByteDelayInBothModes) {
  StartEmulator(EmulatorOptions());
  v1::Scenario s;
  s.set_seed(1);
  v1::FaultRule* r = s.add_faults();
  r->set_name("delay");
  r->set_effect(v1::FAULT_EFFECT_DELAY_FIRST_BYTE);
  SetDuration(absl::Milliseconds(200), r->mutable_duration());
  r->mutable_probability()->set_base(1);
  ASSERT_TRUE(emu_->SetScenario(s).ok());
  // Scheduling on a loaded machine only ever adds to a measurement, so each
  // sample must be at least the delay, and the best of five within 5 ms.
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    SCOPED_TRACE(ModeName(mode));
    // Causal bracket, as in ProbeEngineTest.MeasuresAnInjectedFirstByteDelay:
    // at least the delay, at most the test's own measurement of the probe.
    absl::Duration best = absl::InfiniteDuration();
    for (int i = 0; i < 5; ++i) {
      const ProbeRequest req = Request(mode, 4096);
      const absl::Duration before = Clock::Real()->MonotonicNow();
      const v1::Outcome o = Run(req);
      const absl::Duration around = Clock::Real()->MonotonicNow() - before;
      ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
      EXPECT_EQ(o.received_bytes(), 4096u);
      // TTFB measured from the request on the wire to the status line.
      const absl::Duration waited = FromProto(o.timings().headers_received()) -
                                    FromProto(o.timings().request_sent());
      EXPECT_GE(waited, absl::Milliseconds(200)) << waited;
      EXPECT_LE(waited, around) << waited;
      best = std::min(best, waited);
      const std::vector<v1::InjectedFault> truth = emu_->truth();
      const v1::InjectedFault* injected = TruthFor(truth, req.probe_id);
      ASSERT_NE(injected, nullptr);
      EXPECT_EQ(injected->effect(), v1::FAULT_EFFECT_DELAY_FIRST_BYTE);
    }
    std::printf("%s: 200 ms first-byte delay measured as %s (best of five)\n",
                v1::InvokeMode_Name(mode).c_str(),
                absl::FormatDuration(best).c_str());
  }
}

// The emulator serving TLS with a certificate from a test CA (made once).
class EmulatorTlsTest : public EmulatorProbeTest {
 protected:
  static void SetUpTestSuite() {
    const std::string dir =
        absl::StrCat(::testing::TempDir(), "/probe-emulator-pki-", getpid());
    absl::StatusOr<testing::TestPki> pki = testing::TestPki::Create(dir + "/a");
    ASSERT_TRUE(pki.ok()) << pki.status();
    ASSERT_TRUE(pki->Leaf("server", "DNS:localhost,IP:127.0.0.1").ok());
    absl::StatusOr<testing::TestPki> other =
        testing::TestPki::Create(dir + "/b", "some-other-ca");
    ASSERT_TRUE(other.ok()) << other.status();
    pki_ = new testing::TestPki(*pki);
    other_ca_ = new std::string(other->ca());
  }

  void SetUp() override {
    ASSERT_NE(pki_, nullptr);
    EmulatorProbeTest::SetUp();
    ca_ = pki_->ca();
    other_ca_path_ = *other_ca_;
    EmulatorOptions options;
    options.config.set_tls_cert_file(pki_->Path("server", "pem"));
    options.config.set_tls_key_file(pki_->Path("server", "key"));
    StartEmulator(options);
    ASSERT_TRUE(absl::StartsWith(emu_->url("us-east-1", v1::BUFFERED),
                                 "https://127.0.0.1:"));
  }

  static testing::TestPki* pki_;
  static std::string* other_ca_;
  std::string ca_;
  std::string other_ca_path_;
};

testing::TestPki* EmulatorTlsTest::pki_ = nullptr;
std::string* EmulatorTlsTest::other_ca_ = nullptr;

TEST_F(EmulatorTlsTest, TrustedCaIsOkWithTlsTimings) {
  for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
    SCOPED_TRACE(ModeName(mode));
    ProbeRequest r = Request(mode, 100000);
    r.transport.set_ca_file(ca_);
    const v1::Outcome o = Run(r);
    ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
    EXPECT_EQ(o.received_bytes(), 100000u);
    EXPECT_EQ(o.http_version(), "1.1");
    ASSERT_TRUE(o.timings().has_connect());
    ASSERT_TRUE(o.timings().has_tls());
    EXPECT_GT(FromProto(o.timings().tls()), FromProto(o.timings().connect()));
    EXPECT_LE(FromProto(o.timings().tls()),
              FromProto(o.timings().request_sent()));
    EXPECT_LE(FromProto(o.timings().request_sent()),
              FromProto(o.timings().headers_received()));
  }
}

TEST_F(EmulatorTlsTest, UntrustedCertificateIsTlsError) {
  ProbeRequest r = Request(v1::BUFFERED, 1024);
  r.transport.set_ca_file(other_ca_path_);
  const v1::Outcome o = Run(r);
  EXPECT_EQ(o.outcome_class(), v1::TLS_ERROR) << Describe(o);
  EXPECT_EQ(o.status(), 0);
  EXPECT_FALSE(o.timings().has_tls());
  EXPECT_TRUE(absl::StrContains(o.detail(), "certificate")) << o.detail();
}

TEST_F(EmulatorTlsTest, VerificationOffIsOk) {
  ProbeRequest r = Request(v1::RESPONSE_STREAM, 20000);
  r.transport.set_insecure_skip_verify(true);
  const v1::Outcome o = Run(r);
  EXPECT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_TRUE(o.timings().has_tls());
}

// The emulator (Boost.Beast) speaks HTTP/1.1 only: asking for HTTP/2 over TLS
// offers h2 in ALPN, the server picks http/1.1, and the probe still succeeds
// and reports the version actually used.
TEST_F(EmulatorTlsTest, Http2RequestFallsBackToHttp11ViaAlpn) {
  ProbeRequest r = Request(v1::RESPONSE_STREAM, 20000);
  r.transport.set_ca_file(ca_);
  r.transport.set_http_version("2");
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_EQ(o.http_version(), "1.1");
}

TEST_F(EmulatorTlsTest, FaultsOverTlsKeepTheirClass) {
  v1::Scenario s;
  s.set_seed(3);
  struct Case {
    uint64_t size;
    v1::FaultEffect effect;
    v1::OutcomeClass want;
  };
  const std::vector<Case> cases = {
      {30001, v1::FAULT_EFFECT_TRUNCATE, v1::TRUNCATED},
      {30002, v1::FAULT_EFFECT_CORRUPT, v1::INTEGRITY},
      {30003, v1::FAULT_EFFECT_PHANTOM_ERROR, v1::OK},
  };
  for (const Case& c : cases) {
    v1::FaultRule* r = s.add_faults();
    r->set_name(absl::StrCat("rule-", c.size));
    r->set_effect(c.effect);
    r->set_after_bytes(7000);
    r->set_min_bytes(c.size);
    r->set_max_bytes(c.size);
    r->mutable_probability()->set_base(1);
  }
  ASSERT_TRUE(emu_->SetScenario(s).ok());
  for (const Case& c : cases) {
    for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      SCOPED_TRACE(absl::StrCat(c.size, "/", ModeName(mode)));
      ProbeRequest r = Request(mode, c.size);
      r.transport.set_ca_file(ca_);
      const v1::Outcome o = Run(r);
      EXPECT_EQ(v1::OutcomeClass_Name(o.outcome_class()),
                v1::OutcomeClass_Name(c.want))
          << Describe(o);
      if (c.effect == v1::FAULT_EFFECT_TRUNCATE) {
        EXPECT_EQ(o.received_bytes(), 7000u);
      }
      if (c.effect == v1::FAULT_EFFECT_CORRUPT) {
        EXPECT_EQ(o.first_bad_offset(), 7000);
      }
    }
  }
}

}  // namespace
}  // namespace fleetcanary
