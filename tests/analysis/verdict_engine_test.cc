// The verdict engine end to end on seeded Bernoulli streams (no wall time).
#include "analysis/verdict_engine.h"

#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "analysis/fix_confirmation.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);  // 2024-02-01.

v1::StreamKey Key(v1::InvokeMode mode, const std::string& size = "2B",
                  const std::string& region = "us-east-1") {
  v1::StreamKey k;
  k.set_region(region);
  k.set_target("canary");
  k.set_mode(mode);
  k.set_size_class(size);
  return k;
}

std::unique_ptr<VerdictEngine> NewEngine(v1::DetectionConfig cfg = {}) {
  if (cfg.probes_per_stream_per_month() == 0) {
    cfg.set_probes_per_stream_per_month(2.592e6);  // One a second.
  }
  absl::StatusOr<std::unique_ptr<VerdictEngine>> e =
      VerdictEngine::Create(cfg, 10);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

// Feeds `n` probes, one a second from `*t`, failing with probability p.
void Feed(VerdictEngine* e, const v1::StreamKey& key, std::mt19937_64* rng,
          absl::Time* t, int n, double p, const std::string& agent = "a1") {
  std::bernoulli_distribution fail(p);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(
        e->ObserveProbe(key, agent, *t, fail(*rng) ? v1::RESET : v1::OK).ok());
    *t += absl::Seconds(1);
  }
}

std::vector<v1::Verdict> OfKind(const std::vector<v1::Verdict>& all,
                                v1::VerdictKind kind) {
  std::vector<v1::Verdict> out;
  for (const auto& v : all) {
    if (v.kind() == kind) out.push_back(v);
  }
  return out;
}

absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

// Clean probes the engine's default fix test needs at p_bad (mixture of
// p_bad/100, /10, /2 at alpha 0.05).
uint64_t MixtureCleanProbes(double p_bad) {
  FixConfirmation f(p_bad, {p_bad / 100, p_bad / 10, p_bad / 2}, 0.05);
  while (!f.Confirmed()) f.Observe(1, 0);
  return f.trials();
}

TEST(VerdictEngineTest, CleanStreamStaysHealthy) {
  auto e = NewEngine();
  std::mt19937_64 rng(1);
  absl::Time t = kT0;
  Feed(e.get(), Key(v1::RESPONSE_STREAM), &rng, &t, 100000, 0.0);
  EXPECT_TRUE(OfKind(e->TakeTransitions(), v1::STREAM_HEALTH).empty());
  for (const auto& v : e->Current()) EXPECT_EQ(v.state(), v1::HEALTHY);
}

// Unset times stay unset: no placeholder (1970, 1677) in the proto or its
// JSON; every time that is set lies within the data fed.
TEST(VerdictEngineTest, UnsetTimesAreAbsentNeverPlaceholders) {
  auto e = NewEngine();
  std::mt19937_64 rng(11);
  absl::Time t = kT0;
  const v1::StreamKey key = Key(v1::RESPONSE_STREAM);
  Feed(e.get(), key, &rng, &t, 200, 0.0);
  Feed(e.get(), Key(v1::BUFFERED), &rng, &t, 200, 0.0);
  for (const v1::Verdict& v : e->Current()) {
    EXPECT_FALSE(v.evidence().has_change_time()) << v.ShortDebugString();
    EXPECT_FALSE(v.evidence().has_change_interval()) << v.ShortDebugString();
    EXPECT_FALSE(v.evidence().has_confirmation_start());
  }
  Feed(e.get(), key, &rng, &t, 3000, 0.05);
  std::vector<v1::Verdict> all = e->TakeTransitions();
  for (const v1::Verdict& v : e->Current()) all.push_back(v);
  bool dated = false;
  for (const v1::Verdict& v : all) {
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(v, &json).ok());
    EXPECT_EQ(json.find("1970-01-01"), std::string::npos) << json;
    EXPECT_EQ(json.find("1677-"), std::string::npos) << json;
    for (const google::protobuf::Timestamp* ts :
         {&v.since(), &v.updated(), &v.evidence().change_time(),
          &v.evidence().change_interval().lower(),
          &v.evidence().change_interval().upper()}) {
      if (ts->seconds() == 0 && ts->nanos() == 0) continue;  // Unset.
      EXPECT_GE(FromProto(*ts), kT0 - absl::Seconds(1)) << json;
      EXPECT_LE(FromProto(*ts), t) << json;
    }
    if (v.state() == v1::REGRESSION && v.evidence().has_change_time()) {
      dated = true;
    }
  }
  EXPECT_TRUE(dated);
}

TEST(VerdictEngineTest, RegressionThenDeclaredFixIsConfirmed) {
  auto e = NewEngine();
  std::mt19937_64 rng(2);
  absl::Time t = kT0;
  const v1::StreamKey key = Key(v1::RESPONSE_STREAM);
  Feed(e.get(), key, &rng, &t, 70000, 0.0);
  const absl::Time change = t;
  Feed(e.get(), key, &rng, &t, 20000, 0.01);
  // The fix is declared for a time in the future of the data fed so far.
  const absl::Time fix = t;
  e->DeclareFix(fix);
  Feed(e.get(), key, &rng, &t, 45000, 0.0);

  const auto tr = OfKind(e->TakeTransitions(), v1::STREAM_HEALTH);
  std::vector<v1::VerdictState> states;
  for (const auto& v : tr) states.push_back(v.state());
  // ... -> REGRESSION -> RECOVERING -> FIX_CONFIRMED -> HEALTHY (after as
  // many clean probes again).
  ASSERT_GE(states.size(), 4u);
  EXPECT_EQ(states[states.size() - 2], v1::FIX_CONFIRMED);
  EXPECT_EQ(states.back(), v1::HEALTHY);
  // REGRESSION came before RECOVERING, and RECOVERING entered at the fix.
  const v1::Verdict* regression = nullptr;
  const v1::Verdict* recovering = nullptr;
  for (const auto& v : tr) {
    if (v.state() == v1::REGRESSION && !regression) regression = &v;
    if (v.state() == v1::RECOVERING) recovering = &v;
  }
  ASSERT_NE(regression, nullptr);
  ASSERT_NE(recovering, nullptr);
  const absl::Time alarm = FromProto(regression->since());
  EXPECT_GT(alarm, change);
  EXPECT_LT(alarm, change + absl::Seconds(2000));
  // The onset estimate is near the true change.
  const absl::Time onset = FromProto(regression->evidence().change_time());
  EXPECT_GE(onset, change - absl::Seconds(200));
  EXPECT_LE(onset, alarm);
  EXPECT_EQ(FromProto(recovering->since()), fix);
  const v1::Verdict& confirmed = tr[tr.size() - 2];
  const v1::Evidence& ev = confirmed.evidence();
  // 60,000 clean probes: the Beta-prior p0 (1.5 / 63,000) is under the floor
  // 1e-4, so p_bad = 2 x 1e-4 (far below half the 1 % incident rate) and
  // p_good = p_bad / 100.
  EXPECT_DOUBLE_EQ(ev.null_rate(), 2e-4);
  EXPECT_DOUBLE_EQ(ev.alternative_rate(), 2e-6);
  const uint64_t needed = MixtureCleanProbes(2e-4);
  EXPECT_GT(needed, 15000u);
  EXPECT_LT(needed, 25000u);
  EXPECT_EQ(FromProto(tr.back().since()),
            fix + absl::Seconds(2 * static_cast<int64_t>(needed) - 1));
  EXPECT_EQ(FromProto(ev.confirmation_start()), fix);
  EXPECT_EQ(ev.trials(), needed);
  EXPECT_EQ(ev.failures(), 0u);
  EXPECT_EQ(FromProto(confirmed.since()),
            fix + absl::Seconds(static_cast<int64_t>(needed) - 1));
  EXPECT_GE(ev.likelihood_ratio(), 20.0);
  EXPECT_LT(ev.proven_upper_bound(), 2e-4);
  // Dated change: the last failure before the fix, with an interval.
  const absl::Time dated = FromProto(ev.change_time());
  EXPECT_LT(dated, fix);
  EXPECT_GT(dated, fix - absl::Seconds(1000));
  EXPECT_LE(FromProto(ev.change_interval().lower()), dated);
  EXPECT_GE(FromProto(ev.change_interval().upper()), dated);
  EXPECT_GT(ev.classes_size(), 0);
  for (int c : ev.classes()) EXPECT_NE(c, v1::AGENT_ERROR);
}

TEST(VerdictEngineTest, RecoveryWithoutDeclaredFixStartsAfterLastError) {
  auto e = NewEngine();
  std::mt19937_64 rng(3);
  absl::Time t = kT0;
  const v1::StreamKey key = Key(v1::BUFFERED);
  Feed(e.get(), key, &rng, &t, 70000, 0.0);
  Feed(e.get(), key, &rng, &t, 20000, 0.01);
  const absl::Time fixed = t;
  Feed(e.get(), key, &rng, &t, 70000, 0.0);
  const auto tr = OfKind(e->TakeTransitions(), v1::STREAM_HEALTH);
  ASSERT_GE(tr.size(), 2u);
  EXPECT_EQ(tr[tr.size() - 2].state(), v1::FIX_CONFIRMED);
  EXPECT_EQ(tr.back().state(), v1::HEALTHY);
  const v1::Evidence& ev = tr[tr.size() - 2].evidence();
  // The test started when the reverse CUSUM decided (a stopping time), after
  // the last failure, never at the estimated change time itself.
  const absl::Time start = FromProto(ev.confirmation_start());
  EXPECT_GT(start, fixed);
  EXPECT_GT(start, FromProto(ev.change_time()));
  EXPECT_EQ(ev.trials(), MixtureCleanProbes(2e-4));
  // The fix is dated within its interval, which holds the true fix.
  EXPECT_LE(FromProto(ev.change_interval().lower()), fixed) << ev.DebugString();
  EXPECT_GE(FromProto(ev.change_interval().upper()), fixed);
}

TEST(VerdictEngineTest, ModeDifferenceFlagsStreamingOnlyDefect) {
  auto e = NewEngine();
  std::mt19937_64 rng(4);
  absl::Time t = kT0;
  std::bernoulli_distribution base(0.0005), bad(0.005);
  for (int i = 0; i < 40000; ++i) {
    const bool late = i >= 10000;
    ASSERT_TRUE(e->ObserveProbe(Key(v1::BUFFERED), "a1", t,
                                base(rng) ? v1::HTTP_5XX : v1::OK)
                    .ok());
    ASSERT_TRUE(
        e->ObserveProbe(Key(v1::RESPONSE_STREAM), "a1", t,
                        (late ? bad(rng) : base(rng)) ? v1::TRUNCATED : v1::OK)
            .ok());
    t += absl::Seconds(1);
  }
  e->Flush();
  const auto md = OfKind(e->TakeTransitions(), v1::MODE_DIFFERENCE);
  bool regression = false;
  for (const auto& v : md) {
    if (v.state() == v1::REGRESSION) {
      regression = true;
      EXPECT_GT(FromProto(v.since()), kT0 + absl::Seconds(10000));
      EXPECT_GT(v.evidence().rate_ratio(), 1.0);
      EXPECT_GE(v.evidence().statistic(), std::log(99.0));
      EXPECT_EQ(v.key().mode(), v1::INVOKE_MODE_UNSPECIFIED);
    }
  }
  EXPECT_TRUE(regression);
}

// The split test learns only from failures; a SUSPECT with no further
// failures must still resolve (bounded horizon), not hang forever.
TEST(VerdictEngineTest, ModeDifferenceSuspectResolvesOnCleanPairedProbes) {
  auto e = NewEngine();
  absl::Time t = kT0;
  for (int i = 0; i < 120; ++i) {
    // Six streaming-only failures in the first minute: LLR 6 ln 1.5 = 2.43,
    // over half of ln 99, under ln 99.
    const bool fail = i < 6;
    ASSERT_TRUE(e->ObserveProbe(Key(v1::BUFFERED), "a1", t, v1::OK).ok());
    ASSERT_TRUE(e->ObserveProbe(Key(v1::RESPONSE_STREAM), "a1", t,
                                fail ? v1::TRUNCATED : v1::OK)
                    .ok());
    t += absl::Seconds(1);
  }
  auto md = OfKind(e->TakeTransitions(), v1::MODE_DIFFERENCE);
  ASSERT_EQ(md.size(), 1u);
  EXPECT_EQ(md[0].state(), v1::SUSPECT);
  // 15 minutes of clean paired probes do not decide; 3000 resolve it.
  for (int i = 0; i < 3100; ++i) {
    ASSERT_TRUE(e->ObserveProbe(Key(v1::BUFFERED), "a1", t, v1::OK).ok());
    ASSERT_TRUE(
        e->ObserveProbe(Key(v1::RESPONSE_STREAM), "a1", t, v1::OK).ok());
    t += absl::Seconds(1);
  }
  e->Flush();
  md = OfKind(e->TakeTransitions(), v1::MODE_DIFFERENCE);
  ASSERT_EQ(md.size(), 1u);
  EXPECT_EQ(md[0].state(), v1::HEALTHY);
  EXPECT_EQ(md[0].previous_state(), v1::SUSPECT);
  EXPECT_LE(FromProto(md[0].since()), kT0 + absl::Seconds(120 + 3060));
}

// After FIX_CONFIRMED, failures from before the fix never raise a new
// SUSPECT or REGRESSION.
TEST(VerdictEngineTest, ModeDifferenceNoNewSuspectFromPreFixFailures) {
  auto e = NewEngine();
  std::mt19937_64 rng(41);
  absl::Time t = kT0;
  std::bernoulli_distribution base(0.0005), bad(0.01);
  auto pair = [&](bool faulty) {
    ASSERT_TRUE(e->ObserveProbe(Key(v1::BUFFERED), "a1", t,
                                base(rng) ? v1::HTTP_5XX : v1::OK)
                    .ok());
    ASSERT_TRUE(
        e->ObserveProbe(Key(v1::RESPONSE_STREAM), "a1", t,
                        (faulty ? bad(rng) : false) ? v1::TRUNCATED : v1::OK)
            .ok());
    t += absl::Seconds(1);
  };
  for (int i = 0; i < 20000; ++i) pair(i >= 5000);
  e->DeclareFix(t);
  for (int i = 0; i < 40000; ++i) pair(false);
  e->Flush();
  const auto md = OfKind(e->TakeTransitions(), v1::MODE_DIFFERENCE);
  size_t confirmed = md.size();
  for (size_t i = 0; i < md.size(); ++i) {
    if (md[i].state() == v1::FIX_CONFIRMED) {
      confirmed = i;
      break;
    }
  }
  ASSERT_LT(confirmed, md.size()) << "never confirmed";
  for (size_t i = confirmed + 1; i < md.size(); ++i) {
    EXPECT_EQ(md[i].state(), v1::HEALTHY) << i;
  }
  EXPECT_EQ(md.back().state(), v1::HEALTHY);
}

TEST(VerdictEngineTest, SizeTrendNeedsTwoSignificantWindows) {
  auto e = NewEngine();
  std::mt19937_64 rng(5);
  absl::Time t = kT0;
  const std::vector<std::pair<std::string, double>> sizes = {
      {"2B", 0.0}, {"1KiB", 0.001}, {"64KiB", 0.004}, {"1MiB", 0.01}};
  for (int i = 0; i < 3 * 3600; ++i) {
    for (const auto& [size, p] : sizes) {
      std::bernoulli_distribution fail(p);
      ASSERT_TRUE(e->ObserveProbe(Key(v1::RESPONSE_STREAM, size), "a1", t,
                                  fail(rng) ? v1::RESET : v1::OK)
                      .ok());
    }
    t += absl::Seconds(1);
  }
  e->Flush();
  const auto st = OfKind(e->TakeTransitions(), v1::SIZE_TREND);
  ASSERT_GE(st.size(), 2u);
  EXPECT_EQ(st[0].state(), v1::SUSPECT);
  EXPECT_EQ(st[1].state(), v1::REGRESSION);
  EXPECT_GT(st[1].evidence().statistic(), 0);
  EXPECT_LE(st[1].evidence().p_value(), 0.01);
  EXPECT_TRUE(st[1].key().size_class().empty());
}

TEST(VerdictEngineTest, PhantomErrorsFromPlatformMetrics) {
  auto e = NewEngine();
  std::mt19937_64 rng(6);
  v1::StreamKey key = Key(v1::RESPONSE_STREAM);
  key.clear_size_class();
  absl::Time minute = kT0;
  // Healthy: the platform's errors are exactly the ones clients saw.
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(e->ObservePlatform(key, minute, 1, 60, 1, 60).ok());
    minute += absl::Minutes(1);
  }
  EXPECT_TRUE(OfKind(e->TakeTransitions(), v1::PHANTOM_ERRORS).empty());
  // Defect: 1 % of invocations raise Errors while clients got a 200.
  std::binomial_distribution<int> phantom(60, 0.01);
  const absl::Time change = minute;
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(e->ObservePlatform(key, minute, phantom(rng), 60, 0, 60).ok());
    minute += absl::Minutes(1);
  }
  const auto ph = OfKind(e->TakeTransitions(), v1::PHANTOM_ERRORS);
  ASSERT_FALSE(ph.empty());
  EXPECT_EQ(ph.back().state(), v1::REGRESSION);
  EXPECT_GE(FromProto(ph.back().since()), change);
  EXPECT_EQ(ph.back().evidence().client_failures(), 0u);
  EXPECT_GT(ph.back().evidence().platform_invocations(), 0);
}

TEST(VerdictEngineTest, HardDownNeedsTwoAgents) {
  auto e = NewEngine();
  absl::Time t = kT0;
  const v1::StreamKey key = Key(v1::BUFFERED);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(e->ObserveProbe(key, "a1", t, v1::OK).ok());
    ASSERT_TRUE(e->ObserveProbe(key, "a2", t, v1::OK).ok());
    t += absl::Seconds(1);
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(e->ObserveProbe(key, "a1", t, v1::CONNECT_ERROR).ok());
    t += absl::Seconds(1);
  }
  auto hd = OfKind(e->TakeTransitions(), v1::HARD_DOWN);
  ASSERT_EQ(hd.size(), 1u);
  EXPECT_EQ(hd[0].state(), v1::SUSPECT);
  // AGENT_ERROR neither fails nor breaks a run.
  ASSERT_TRUE(e->ObserveProbe(key, "a2", t, v1::AGENT_ERROR).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(e->ObserveProbe(key, "a2", t, v1::HTTP_5XX).ok());
    t += absl::Seconds(1);
  }
  hd = OfKind(e->TakeTransitions(), v1::HARD_DOWN);
  ASSERT_EQ(hd.size(), 1u);
  EXPECT_EQ(hd[0].state(), v1::REGRESSION);
  EXPECT_EQ(hd[0].evidence().statistic(), 2);
  ASSERT_TRUE(e->ObserveProbe(key, "a1", t, v1::OK).ok());
  hd = OfKind(e->TakeTransitions(), v1::HARD_DOWN);
  ASSERT_EQ(hd.size(), 1u);
  EXPECT_EQ(hd[0].state(), v1::RECOVERING);
}

TEST(VerdictEngineTest, DeterministicOutput) {
  auto run = [] {
    auto e = NewEngine();
    std::mt19937_64 rng(7);
    absl::Time t = kT0;
    Feed(e.get(), Key(v1::RESPONSE_STREAM), &rng, &t, 30000, 0.0);
    Feed(e.get(), Key(v1::RESPONSE_STREAM), &rng, &t, 5000, 0.02);
    std::string out;
    for (const auto& v : e->TakeTransitions()) out += v.SerializeAsString();
    for (const auto& v : e->Current()) out += v.SerializeAsString();
    return out;
  };
  const std::string a = run();
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, run());
}

TEST(VerdictEngineTest, RejectsBadInput) {
  auto e = NewEngine();
  v1::StreamKey key = Key(v1::BUFFERED);
  ASSERT_TRUE(e->ObserveProbe(key, "a1", kT0, v1::OK).ok());
  absl::Status s = e->ObserveProbe(key, "a1", kT0 - absl::Seconds(1), v1::OK);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("time"), std::string::npos);
  v1::StreamKey no_mode = key;
  no_mode.set_mode(v1::INVOKE_MODE_UNSPECIFIED);
  s = e->ObserveProbe(no_mode, "a1", kT0, v1::OK);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("mode"), std::string::npos);
  v1::StreamKey bad_size = key;
  bad_size.set_size_class("huge");
  s = e->ObserveProbe(bad_size, "a1", kT0, v1::OK);
  EXPECT_NE(s.message().find("size_class"), std::string::npos);
  v1::StreamKey no_region = key;
  no_region.clear_region();
  EXPECT_NE(
      e->ObserveProbe(no_region, "a1", kT0, v1::OK).message().find("region"),
      std::string::npos);
  EXPECT_EQ(e->ObservePlatform(key, kT0, -1, 60, 0, 60).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->ObservePlatform(key, kT0, 1, 60, 5, 4).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(e->ObservePlatform(key, kT0, 0, 60, 0, 60).ok());
  EXPECT_EQ(
      e->ObservePlatform(key, kT0 - absl::Minutes(1), 0, 60, 0, 60).code(),
      absl::StatusCode::kInvalidArgument);

  v1::DetectionConfig bad;
  bad.set_p1_ratio(0.5);
  absl::StatusOr<std::unique_ptr<VerdictEngine>> made =
      VerdictEngine::Create(bad);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("p1_ratio"), std::string::npos);
}

}  // namespace
}  // namespace fleetcanary::analysis
