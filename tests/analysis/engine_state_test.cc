// Verdict engine restart: an engine restored from SaveState() (after a trip
// through bytes) at any point of a seeded scenario continues exactly as the
// engine that never stopped; a state saved under another config is refused;
// hostile states yield an error or a working engine, never a crash.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "analysis/verdict_engine.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::util::MessageDifferencer;

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);  // 2024-02-01.

v1::DetectionConfig Config() {
  v1::DetectionConfig cfg;
  cfg.set_probes_per_stream_per_month(2.592e6);  // 60 a minute.
  cfg.mutable_trend_window()->set_seconds(3600);
  return cfg;
}
constexpr int kExpectedStreams = 12;

v1::StreamKey Key(const std::string& region, v1::InvokeMode mode,
                  const std::string& size) {
  v1::StreamKey k;
  k.set_region(region);
  k.set_target("canary");
  k.set_mode(mode);
  k.set_size_class(size);
  return k;
}

// One input call of the engine.
struct Event {
  enum Type { kProbe, kBatch, kPlatform, kFix } type = kBatch;
  v1::StreamKey key;
  std::string agent;
  absl::Time time;
  v1::OutcomeClass outcome = v1::OK;
  ClassCounts counts;
  double platform_errors = 0, platform_invocations = 0;
  uint64_t client_failures = 0, client_probes = 0;
};

absl::Status Apply(VerdictEngine* e, const Event& ev) {
  switch (ev.type) {
    case Event::kProbe:
      return e->ObserveProbe(ev.key, ev.agent, ev.time, ev.outcome);
    case Event::kBatch:
      return e->Observe(ev.key, ev.time, ev.counts);
    case Event::kPlatform:
      return e->ObservePlatform(ev.key, ev.time, ev.platform_errors,
                                ev.platform_invocations, ev.client_failures,
                                ev.client_probes);
    case Event::kFix:
      e->DeclareFix(ev.time);
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

// A seeded fleet, one tick a minute, with one incident per verdict kind:
//  - us-east-1 streamed 64KiB: a fault (STREAM_HEALTH), then a fix that is
//    declared or not (the reverse CUSUM finds it);
//  - eu-west-1 1KiB: streaming-only failures (MODE_DIFFERENCE);
//  - ap-south-1 streamed 2B..1MiB: failures rising with size (SIZE_TREND);
//  - us-east-1 platform metrics: phantom errors (PHANTOM_ERRORS);
//  - sa-east-1 buffered 2B by four agents, probe by probe: an outage on all
//    (HARD_DOWN) and a lone agent's short failure run (SUSPECT only).
std::vector<Event> Scenario(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  const int ticks = uniform(2300, 2600);
  const int fault_start = uniform(1000, 1150), fault_end = uniform(1350, 1500);
  const double fault_p = 0.005 * uniform(2, 5);
  const bool declare_fix = uniform(0, 1) == 1;
  const int mode_start = uniform(700, 850), mode_end = uniform(1200, 1350);
  const int trend_start = uniform(500, 650), trend_end = uniform(900, 1100);
  const int phantom_start = uniform(1500, 1600),
            phantom_end = uniform(1750, 1900);
  const int down_start = uniform(1150, 1250);
  const int down_len = uniform(3, 8);
  const int lone_start = uniform(300, 400);
  const std::vector<std::pair<std::string, double>> trend_sizes = {
      {"2B", 0.0}, {"1KiB", 0.001}, {"64KiB", 0.004}, {"1MiB", 0.01}};
  const std::vector<std::string> agents = {"a1", "a2", "a3", "a4"};

  std::vector<Event> out;
  auto batch = [&](const v1::StreamKey& key, absl::Time t, double p) {
    Event ev;
    ev.type = Event::kBatch;
    ev.key = key;
    ev.time = t;
    const uint64_t n = 60;
    const uint64_t k = std::binomial_distribution<uint64_t>(n, p)(rng);
    ev.counts.Add(v1::TRUNCATED, k);
    ev.counts.Add(v1::OK, n - k);
    ev.counts.Add(v1::AGENT_ERROR, uniform(0, 1));  // Never a trial.
    out.push_back(ev);
  };
  for (int i = 0; i < ticks; ++i) {
    const absl::Time t = kT0 + absl::Minutes(i) + absl::Milliseconds(seed % 7);
    if (declare_fix && i == fault_end) {
      Event ev;
      ev.type = Event::kFix;
      ev.time = t;
      out.push_back(ev);
    }
    const bool fault = i >= fault_start && i < fault_end;
    batch(Key("us-east-1", v1::RESPONSE_STREAM, "64KiB"), t,
          fault ? fault_p : 0.0002);
    batch(Key("eu-west-1", v1::BUFFERED, "1KiB"), t, 0.0005);
    batch(Key("eu-west-1", v1::RESPONSE_STREAM, "1KiB"), t,
          i >= mode_start && i < mode_end ? 0.006 : 0.0005);
    const bool trend = i >= trend_start && i < trend_end;
    for (const auto& [size, p] : trend_sizes) {
      batch(Key("ap-south-1", v1::RESPONSE_STREAM, size), t,
            trend ? p : 0.0002);
    }
    for (size_t a = 0; a < agents.size(); ++a) {
      Event ev;
      ev.type = Event::kProbe;
      ev.key = Key("sa-east-1", v1::BUFFERED, "2B");
      ev.agent = agents[a];
      ev.time = t + absl::Seconds(static_cast<int>(a));
      const bool down = i >= down_start && i < down_start + down_len;
      const bool lone = a == 3 && i >= lone_start && i < lone_start + 3;
      ev.outcome = down || lone                              ? v1::CONNECT_ERROR
                   : std::bernoulli_distribution(0.002)(rng) ? v1::HTTP_5XX
                                                             : v1::OK;
      out.push_back(ev);
    }
    Event pl;
    pl.type = Event::kPlatform;
    pl.key = Key("us-east-1", v1::RESPONSE_STREAM, "");
    pl.time = kT0 + absl::Minutes(i);
    pl.client_probes = 60;
    pl.client_failures = std::bernoulli_distribution(0.05)(rng) ? 1 : 0;
    const bool phantom = i >= phantom_start && i < phantom_end;
    pl.platform_errors =
        static_cast<double>(pl.client_failures) +
        (phantom ? static_cast<double>(
                       std::binomial_distribution<int>(60, 0.01)(rng))
                 : 0.0);
    pl.platform_invocations = 60;
    out.push_back(pl);
  }
  return out;
}

std::unique_ptr<VerdictEngine> NewEngine() {
  absl::StatusOr<std::unique_ptr<VerdictEngine>> e =
      VerdictEngine::Create(Config(), kExpectedStreams);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

// The saved state through bytes, as a restart would read it.
v1::DetectorState ThroughBytes(const v1::DetectorState& state) {
  std::string bytes;
  EXPECT_TRUE(state.SerializeToString(&bytes));
  v1::DetectorState parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  return parsed;
}

// What the uninterrupted engine did.
struct Reference {
  // transitions[i] = those taken right after event i; the last entry is
  // the Flush.
  std::vector<std::vector<v1::Verdict>> transitions;
  std::vector<v1::Verdict> current;
  // Events after which some verdict is in REGRESSION / RECOVERING.
  std::vector<size_t> in_regression, in_recovering;
  std::set<std::pair<int, int>> kinds_and_states_reached;
};

Reference RunReference(const std::vector<Event>& events) {
  Reference ref;
  auto e = NewEngine();
  std::map<std::pair<int, std::string>, v1::VerdictState> state;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_TRUE(Apply(e.get(), events[i]).ok()) << i;
    ref.transitions.push_back(e->TakeTransitions());
    for (const v1::Verdict& v : ref.transitions.back()) {
      state[{v.kind(), v.key().SerializeAsString()}] = v.state();
      ref.kinds_and_states_reached.insert({v.kind(), v.state()});
    }
    bool regression = false, recovering = false;
    for (const auto& [k, s] : state) {
      regression |= s == v1::REGRESSION;
      recovering |= s == v1::RECOVERING;
    }
    if (regression) ref.in_regression.push_back(i + 1);
    if (recovering) ref.in_recovering.push_back(i + 1);
  }
  e->Flush();
  ref.transitions.push_back(e->TakeTransitions());
  ref.current = e->Current();
  return ref;
}

void ExpectSameVerdicts(const std::vector<v1::Verdict>& want,
                        const std::vector<v1::Verdict>& got,
                        const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(want[i], got[i]))
        << what << " #" << i << "\nwant " << want[i].DebugString() << "\ngot "
        << got[i].DebugString();
  }
}

// An engine stopped at a cut (events before it applied, transitions taken).
struct Saved {
  v1::DetectorState state;
  std::vector<v1::Verdict> current;
};

// Runs the events once, saving at each of `cuts` (sorted).
std::vector<Saved> SaveAt(const std::vector<Event>& events,
                          const std::vector<size_t>& cuts) {
  std::vector<Saved> out;
  auto a = NewEngine();
  size_t next = 0;
  for (size_t cut : cuts) {
    for (; next < cut; ++next) {
      EXPECT_TRUE(Apply(a.get(), events[next]).ok());
      a->TakeTransitions();
    }
    out.push_back({a->SaveState(), a->Current()});
  }
  return out;
}

// The key property: restored at `cut`, the engine produces the reference's
// transitions after the cut and its final verdicts.
void CheckRestoreAt(const std::vector<Event>& events, const Reference& ref,
                    size_t cut, const Saved& at_cut, const std::string& what) {
  const v1::DetectorState& saved = at_cut.state;
  absl::StatusOr<std::unique_ptr<VerdictEngine>> b =
      VerdictEngine::Restore(Config(), kExpectedStreams, ThroughBytes(saved));
  ASSERT_TRUE(b.ok()) << what << ": " << b.status();
  EXPECT_TRUE((*b)->TakeTransitions().empty()) << what;
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(saved, (*b)->SaveState()))
      << what << ": the restored engine saves another state: " << diff;
  ExpectSameVerdicts(at_cut.current, (*b)->Current(), what + " at the cut");
  for (size_t i = cut; i < events.size(); ++i) {
    ASSERT_TRUE(Apply(b->get(), events[i]).ok());
    ExpectSameVerdicts(ref.transitions[i], (*b)->TakeTransitions(),
                       what + " event " + std::to_string(i));
    if (::testing::Test::HasFailure()) return;
  }
  (*b)->Flush();
  ExpectSameVerdicts(ref.transitions.back(), (*b)->TakeTransitions(),
                     what + " flush");
  ExpectSameVerdicts(ref.current, (*b)->Current(), what + " final");
}

constexpr int kScenarios = 8;

TEST(EngineStateTest, RestoredEngineContinuesExactly) {
  std::set<std::pair<int, int>> reached;
  int regression_cuts = 0, recovering_cuts = 0;
  for (uint64_t seed = 1; seed <= kScenarios; ++seed) {
    const std::vector<Event> events = Scenario(seed);
    const Reference ref = RunReference(events);
    reached.insert(ref.kinds_and_states_reached.begin(),
                   ref.kinds_and_states_reached.end());
    std::mt19937_64 rng(seed * 7919);
    auto pick = [&](const std::vector<size_t>& from) {
      return from[std::uniform_int_distribution<size_t>(0,
                                                        from.size() - 1)(rng)];
    };
    std::vector<std::pair<size_t, std::string>> cuts = {
        {0, "start"},
        {events.size(), "end"},
        {std::uniform_int_distribution<size_t>(1, events.size() - 1)(rng),
         "random"}};
    if (!ref.in_regression.empty()) {
      cuts.push_back({pick(ref.in_regression), "mid-REGRESSION"});
      ++regression_cuts;
    }
    if (!ref.in_recovering.empty()) {
      cuts.push_back({pick(ref.in_recovering), "mid-RECOVERING"});
      ++recovering_cuts;
    }
    std::sort(cuts.begin(), cuts.end());
    std::vector<size_t> at;
    for (const auto& [cut, name] : cuts) at.push_back(cut);
    const std::vector<Saved> saved = SaveAt(events, at);
    for (size_t c = 0; c < cuts.size(); ++c) {
      CheckRestoreAt(events, ref, cuts[c].first, saved[c],
                     "seed " + std::to_string(seed) + " " + cuts[c].second +
                         " cut " + std::to_string(cuts[c].first));
      if (HasFailure()) return;
    }
  }
  EXPECT_EQ(regression_cuts, kScenarios);
  EXPECT_EQ(recovering_cuts, kScenarios);
  // The scenarios cover every kind's incident path.
  for (const auto& [kind, state] :
       std::vector<std::pair<v1::VerdictKind, v1::VerdictState>>{
           {v1::STREAM_HEALTH, v1::REGRESSION},
           {v1::STREAM_HEALTH, v1::RECOVERING},
           {v1::STREAM_HEALTH, v1::FIX_CONFIRMED},
           {v1::STREAM_HEALTH, v1::HEALTHY},
           {v1::MODE_DIFFERENCE, v1::SUSPECT},
           {v1::MODE_DIFFERENCE, v1::REGRESSION},
           {v1::MODE_DIFFERENCE, v1::FIX_CONFIRMED},
           {v1::SIZE_TREND, v1::SUSPECT},
           {v1::SIZE_TREND, v1::REGRESSION},
           {v1::SIZE_TREND, v1::RECOVERING},
           {v1::PHANTOM_ERRORS, v1::REGRESSION},
           {v1::HARD_DOWN, v1::SUSPECT},
           {v1::HARD_DOWN, v1::REGRESSION},
           {v1::HARD_DOWN, v1::RECOVERING},
       }) {
    EXPECT_TRUE(reached.count({kind, state}))
        << v1::VerdictKind_Name(kind) << " never reached "
        << v1::VerdictState_Name(state);
  }
}

// A state rich in every detector: the scenario stopped mid-incident.
v1::DetectorState RichState(uint64_t seed, size_t* cut_out,
                            std::vector<Event>* events_out) {
  std::vector<Event> events = Scenario(seed);
  auto e = NewEngine();
  const size_t cut = events.size() * 55 / 100;
  for (size_t i = 0; i < cut; ++i) EXPECT_TRUE(Apply(e.get(), events[i]).ok());
  e->TakeTransitions();
  *cut_out = cut;
  *events_out = std::move(events);
  return e->SaveState();
}

TEST(EngineStateTest, StateHoldsEveryDetector) {
  size_t cut;
  std::vector<Event> events;
  const v1::DetectorState s = RichState(3, &cut, &events);
  EXPECT_EQ(s.format_version(), 1u);
  EXPECT_EQ(s.stream_health_size(), 8);
  // Comparisons per region and size; trends per region and mode.
  EXPECT_EQ(s.mode_difference_size(), 7);
  EXPECT_EQ(s.size_trend_size(), 5);
  EXPECT_EQ(s.phantom_errors_size(), 1);
  EXPECT_EQ(s.hard_down_size(), 1);
  EXPECT_EQ(s.platform_periods_size(), 1);
  EXPECT_EQ(s.hard_down(0).runs_size(), 4);
  RecordProperty("state_bytes", static_cast<int>(s.ByteSizeLong()));
  EXPECT_EQ(s.fingerprint().expected_streams(), kExpectedStreams);
  EXPECT_EQ(s.fingerprint().resolved_config().p1_ratio(), 10);  // Resolved.
}

TEST(EngineStateTest, InfiniteAndUnsetTimesRoundTrip) {
  // A fresh engine holds only infinite-past times and no declared fix.
  auto fresh = NewEngine();
  const v1::DetectorState empty = fresh->SaveState();
  EXPECT_EQ(empty.watermark().seconds(), std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(empty.has_declared_fix());
  auto restored = VerdictEngine::Restore(Config(), kExpectedStreams, empty);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(MessageDifferencer::Equals(empty, (*restored)->SaveState()));
  // A declared fix far in the future, and one before the epoch.
  for (absl::Time fix : {absl::InfiniteFuture(), absl::InfinitePast(),
                         absl::FromUnixNanos(-1), kT0 + absl::Nanoseconds(7)}) {
    auto e = NewEngine();
    e->DeclareFix(fix);
    const v1::DetectorState s = e->SaveState();
    ASSERT_TRUE(s.has_declared_fix());
    auto r =
        VerdictEngine::Restore(Config(), kExpectedStreams, ThroughBytes(s));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(MessageDifferencer::Equals(s, (*r)->SaveState()))
        << s.declared_fix().DebugString();
  }
}

TEST(EngineStateTest, OtherConfigIsFailedPrecondition) {
  auto e = NewEngine();
  ASSERT_TRUE(e->Observe(Key("us-east-1", v1::BUFFERED, "2B"), kT0,
                         [] {
                           ClassCounts c;
                           c.Add(v1::OK, 10);
                           return c;
                         }())
                  .ok());
  const v1::DetectorState s = e->SaveState();
  v1::DetectionConfig other = Config();
  other.set_p1_ratio(20);
  absl::StatusOr<std::unique_ptr<VerdictEngine>> r =
      VerdictEngine::Restore(other, kExpectedStreams, s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
  EXPECT_NE(r.status().message().find("p1_ratio"), std::string::npos)
      << r.status();
  EXPECT_EQ(
      VerdictEngine::Restore(Config(), kExpectedStreams + 1, s).status().code(),
      absl::StatusCode::kFailedPrecondition);
  // Defaults written out are the same resolved config.
  v1::DetectionConfig explicit_defaults = Config();
  explicit_defaults.set_p1_ratio(10);
  EXPECT_TRUE(
      VerdictEngine::Restore(explicit_defaults, kExpectedStreams, s).ok());
  v1::DetectorState future = s;
  future.set_format_version(2);
  EXPECT_EQ(VerdictEngine::Restore(Config(), kExpectedStreams, future)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      VerdictEngine::Restore(Config(), kExpectedStreams, v1::DetectorState())
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  v1::DetectionConfig bad = Config();
  bad.set_alpha(0.9);
  EXPECT_EQ(VerdictEngine::Restore(bad, kExpectedStreams, s).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Transitions not yet taken are not part of the state (documented in
// verdict_engine.h): the saver still holds them, the restored engine does not.
TEST(EngineStateTest, UntakenTransitionsAreNotSaved) {
  auto e = NewEngine();
  const v1::StreamKey key = Key("sa-east-1", v1::BUFFERED, "2B");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        e->ObserveProbe(key, "a1", kT0 + absl::Seconds(i), v1::CONNECT_ERROR)
            .ok());
  }
  const v1::DetectorState s = e->SaveState();
  auto r = VerdictEngine::Restore(Config(), kExpectedStreams, ThroughBytes(s));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->TakeTransitions().empty());
  const std::vector<v1::Verdict> pending = e->TakeTransitions();
  ASSERT_FALSE(pending.empty());
  // The verdicts themselves are restored.
  ExpectSameVerdicts(e->Current(), (*r)->Current(), "current");
}

// Targeted corruptions: INVALID_ARGUMENT naming the field.
TEST(EngineStateTest, MalformedStateNamesTheField) {
  size_t cut;
  std::vector<Event> events;
  const v1::DetectorState good = RichState(5, &cut, &events);
  struct Case {
    std::string name;
    std::function<void(v1::DetectorState*)> corrupt;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"unknown state",
       [](v1::DetectorState* s) {
         s->mutable_stream_health(0)->mutable_verdict()->set_state(
             static_cast<v1::VerdictState>(42));
       },
       "stream_health[0].verdict"},
      {"wrong kind",
       [](v1::DetectorState* s) {
         s->mutable_size_trend(1)->mutable_verdict()->set_kind(v1::HARD_DOWN);
       },
       "size_trend[1].verdict"},
      {"empty region",
       [](v1::DetectorState* s) {
         s->mutable_hard_down(0)->mutable_verdict()->mutable_key()->set_region(
             "");
       },
       "hard_down[0].verdict.key"},
      {"size class not a size",
       [](v1::DetectorState* s) {
         s->mutable_stream_health(2)
             ->mutable_verdict()
             ->mutable_key()
             ->set_size_class("banana");
       },
       "stream_health[2].verdict.key"},
      {"mode on a comparison",
       [](v1::DetectorState* s) {
         s->mutable_mode_difference(0)
             ->mutable_verdict()
             ->mutable_key()
             ->set_mode(v1::BUFFERED);
       },
       "mode_difference[0].verdict.key"},
      {"duplicate key",
       [](v1::DetectorState* s) {
         *s->add_phantom_errors() = s->phantom_errors(0);
       },
       "phantom_errors[1]"},
      {"failures above trials",
       [](v1::DetectorState* s) {
         s->mutable_stream_health(0)->mutable_history(0)->set_failures(
             s->stream_health(0).history(0).trials() + 1);
       },
       "stream_health[0].history[0]"},
      {"bad nanos",
       [](v1::DetectorState* s) { s->mutable_watermark()->set_nanos(-1); },
       "watermark"},
      {"missing time", [](v1::DetectorState* s) { s->clear_bucket_start(); },
       "bucket_start"},
      {"CUSUM rates",
       [](v1::DetectorState* s) {
         s->mutable_stream_health(0)->mutable_cusum()->set_p1(0.0);
       },
       "stream_health[0].cusum"},
      {"NaN statistic",
       [](v1::DetectorState* s) {
         s->mutable_phantom_errors(0)->mutable_cusum()->set_statistic(NAN);
       },
       "phantom_errors[0].cusum"},
      {"repeated agent",
       [](v1::DetectorState* s) {
         *s->mutable_hard_down(0)->add_runs() = s->hard_down(0).runs(0);
       },
       "hard_down[0].runs[4]"},
      {"platform key with size",
       [](v1::DetectorState* s) {
         s->mutable_platform_periods(0)->mutable_key()->set_size_class("2B");
       },
       "platform_periods[0].key"},
      {"fix LR not matching its counts",
       [](v1::DetectorState* s) {
         v1::RecoveryState* r = s->mutable_hard_down(0)->mutable_recovery();
         r->mutable_fix()->set_failures(r->fix().failures() + 5);
         r->mutable_fix()->set_trials(r->fix().trials() + 5);
       },
       "hard_down[0].recovery.fix"},
  };
  for (const Case& c : cases) {
    v1::DetectorState s = good;
    c.corrupt(&s);
    absl::StatusOr<std::unique_ptr<VerdictEngine>> r =
        VerdictEngine::Restore(Config(), kExpectedStreams, s);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name << ": " << r.status();
    EXPECT_NE(r.status().message().find(c.field), std::string::npos)
        << c.name << ": " << r.status();
  }
}

// Every set field of `m` and of the messages below it.
void CollectFields(
    Message* m, std::vector<std::pair<Message*, const FieldDescriptor*>>* out) {
  const Reflection* r = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    out->push_back({m, f});
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*m, f); ++i) {
        CollectFields(r->MutableRepeatedMessage(m, f, i), out);
      }
    } else {
      CollectFields(r->MutableMessage(m, f), out);
    }
  }
}

// Sets one field of `m` to a value chosen to break things.
void Mutate(Message* m, const FieldDescriptor* f, std::mt19937_64* rng) {
  const Reflection* r = m->GetReflection();
  auto choose = [&](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(*rng);
  };
  if (f->is_repeated()) {
    const int size = r->FieldSize(*m, f);
    switch (choose(3)) {
      case 0:
        r->RemoveLast(m, f);
        return;
      case 1:
        if (size >= 2) {
          r->SwapElements(m, f, static_cast<int>(choose(size)),
                          static_cast<int>(choose(size)));
        }
        return;
      default:
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          const Message& from =
              r->GetRepeatedMessage(*m, f, static_cast<int>(choose(size)));
          r->AddMessage(m, f)->CopyFrom(from);
        } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
          r->SetRepeatedDouble(m, f, static_cast<int>(choose(size)),
                               choose(2) ? -1.0 : 1e300);
        } else {
          r->RemoveLast(m, f);
        }
        return;
    }
  }
  const std::vector<int64_t> ints = {0,
                                     1,
                                     -1,
                                     7,
                                     1 << 20,
                                     std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max(),
                                     std::numeric_limits<int32_t>::max()};
  const std::vector<double> doubles = {
      0,     -1,  1,        0.5,       1e-300,
      1e300, NAN, INFINITY, -INFINITY, std::ldexp(1.0, 70)};
  const std::vector<std::string> strings = {
      "", "x", "2B", "0B", "banana", "18446744073709551615B"};
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      r->SetInt32(m, f, static_cast<int32_t>(ints[choose(ints.size())]));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->SetInt64(m, f, ints[choose(ints.size())]);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      r->SetUInt32(m, f, static_cast<uint32_t>(ints[choose(ints.size())]));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->SetUInt64(m, f, static_cast<uint64_t>(ints[choose(ints.size())]));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->SetDouble(m, f, doubles[choose(doubles.size())]);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->SetFloat(m, f, static_cast<float>(doubles[choose(doubles.size())]));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->SetBool(m, f, !r->GetBool(*m, f));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->SetEnumValue(m, f, static_cast<int>(choose(12)) - 3);
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(m, f, strings[choose(strings.size())]);
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      r->ClearField(m, f);
      break;
  }
}

// Random corruptions: Restore fails with INVALID_ARGUMENT or
// FAILED_PRECONDITION, or yields an engine that takes further input (run
// under the sanitizers in CI).
TEST(EngineStateTest, HostileStatesNeverCrash) {
  size_t cut;
  std::vector<Event> events;
  const v1::DetectorState good = RichState(2, &cut, &events);
  std::mt19937_64 rng(99);
  int restored = 0, rejected = 0;
  for (int iter = 0; iter < 300; ++iter) {
    v1::DetectorState s = good;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) {
      std::vector<std::pair<Message*, const FieldDescriptor*>> fields;
      CollectFields(&s, &fields);
      if (fields.empty()) break;
      const auto& [msg, field] = fields[rng() % fields.size()];
      Mutate(msg, field, &rng);
    }
    absl::StatusOr<std::unique_ptr<VerdictEngine>> r =
        VerdictEngine::Restore(Config(), kExpectedStreams, s);
    if (!r.ok()) {
      EXPECT_TRUE(r.status().code() == absl::StatusCode::kInvalidArgument ||
                  r.status().code() == absl::StatusCode::kFailedPrecondition)
          << r.status();
      ++rejected;
      continue;
    }
    ++restored;
    VerdictEngine& e = **r;
    for (size_t i = cut; i < std::min(events.size(), cut + 300); ++i) {
      (void)Apply(&e, events[i]);  // Errors (e.g. time going back) are fine.
    }
    e.DeclareFix(kT0);
    e.Flush();
    e.TakeTransitions();
    EXPECT_GT(e.Current().size(), 0u);
    v1::DetectorState again = e.SaveState();
    EXPECT_TRUE(VerdictEngine::Restore(Config(), kExpectedStreams, again).ok());
  }
  // Both outcomes happen, so neither branch is vacuous.
  RecordProperty("restored", restored);
  RecordProperty("rejected", rejected);
  EXPECT_GT(restored, 40);
  EXPECT_GT(rejected, 40);
}

// Garbage bytes: a parse that succeeds is still refused or usable.
TEST(EngineStateTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  size_t cut;
  std::vector<Event> events;
  std::string bytes;
  ASSERT_TRUE(RichState(4, &cut, &events).SerializeToString(&bytes));
  for (int iter = 0; iter < 300; ++iter) {
    std::string b = bytes;
    for (int k = 0; k < 4; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    v1::DetectorState s;
    if (!s.ParseFromString(b)) continue;
    absl::StatusOr<std::unique_ptr<VerdictEngine>> r =
        VerdictEngine::Restore(Config(), kExpectedStreams, s);
    if (!r.ok()) continue;
    for (size_t i = cut; i < std::min(events.size(), cut + 100); ++i) {
      (void)Apply(r->get(), events[i]);
    }
    (*r)->Flush();
  }
}

}  // namespace
}  // namespace fleetcanary::analysis
