// One replay path: a recorded outcome + platform stream goes through the live
// verdict service, `canaryctl analyze` (AnalyzeJsonLines) and the
// store-backed Analyze; the phantom-error verdicts (the reconciliation's
// output) must be identical in all three, and the live and offline stream
// verdicts identical too. The platform datapoints are messy (partial first
// readings, re-reads by a second agent) as they are in production.
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/offline.h"
#include "controller/api/verdict_source.h"
#include "controller/store/store.h"
#include "controller/verdicts/verdict_service.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1706745600);
constexpr int kMinutes = 480;
constexpr int kPerMinute = 12;  // Probes per mode and minute.

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

struct Recording {
  std::vector<std::vector<v1::Outcome>> outcomes;  // Per minute.
  std::vector<std::vector<v1::PlatformMetricSample>> samples;
};

v1::PlatformMetricSample Sample(v1::InvokeMode mode, absl::Time start,
                                const std::string& metric, double value) {
  v1::PlatformMetricSample s;
  s.set_region("us-east-1");
  s.set_target("canary");
  s.set_mode(mode);
  s.set_metric(metric);
  s.set_stat("Sum");
  *s.mutable_period_start() = Ts(start);
  s.mutable_period()->set_seconds(60);
  s.set_value(value);
  return s;
}

// Minutes 120-240: 5 % of streaming invocations fail on the platform side
// while clients see nothing; a few client-visible truncations throughout.
Recording Record() {
  Recording r;
  std::mt19937_64 rng(77);
  std::bernoulli_distribution phantom(0.05), truncated(0.002);
  for (int m = 0; m < kMinutes; ++m) {
    const absl::Time start = kT0 + absl::Minutes(m);
    std::vector<v1::Outcome> outs;
    int client_errors[2] = {0, 0};
    int phantoms = 0;
    for (int i = 0; i < kPerMinute; ++i) {
      for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
        v1::Outcome o;
        o.set_agent_id(i % 2 ? "a1" : "a2");
        o.set_region("us-east-1");
        o.set_target("canary");
        o.set_mode(mode);
        o.set_requested_bytes(65536);
        *o.mutable_start_time() =
            Ts(start + absl::Seconds(5 * i + (mode == v1::BUFFERED ? 0 : 1)));
        const bool trunc = truncated(rng);
        o.set_outcome_class(trunc ? v1::TRUNCATED : v1::OK);
        if (trunc) ++client_errors[mode == v1::BUFFERED ? 0 : 1];
        if (mode == v1::RESPONSE_STREAM && m >= 120 && m < 240 && !trunc &&
            phantom(rng)) {
          ++phantoms;
        }
        outs.push_back(o);
      }
    }
    r.outcomes.push_back(outs);
    std::vector<v1::PlatformMetricSample> ss;
    for (v1::InvokeMode mode : {v1::BUFFERED, v1::RESPONSE_STREAM}) {
      const int errors = client_errors[mode == v1::BUFFERED ? 0 : 1] +
                         (mode == v1::RESPONSE_STREAM ? phantoms : 0);
      // A partial first reading, the final one, and a second agent's re-read.
      ss.push_back(Sample(mode, start, "Errors", errors > 0 ? errors - 1 : 0));
      ss.push_back(Sample(mode, start, "Invocations", kPerMinute - 2));
      ss.push_back(Sample(mode, start, "Errors", errors));
      ss.push_back(Sample(mode, start, "Invocations", kPerMinute));
      ss.push_back(Sample(mode, start, "Errors", errors));
      ss.push_back(Sample(mode, start, "Invocations", kPerMinute));
    }
    r.samples.push_back(ss);
  }
  return r;
}

v1::DetectionConfig Detection() {
  v1::DetectionConfig d;
  d.set_p0_floor(1e-3);
  d.set_false_alarms_per_month(1);
  return d;
}

// What must agree: kind, key, state, since and the counts behind it.
std::string Digest(const v1::Verdict& v) {
  std::ostringstream out;
  out << v1::VerdictKind_Name(v.kind()) << " " << v.key().ShortDebugString()
      << " " << v1::VerdictState_Name(v.state()) << " since "
      << v.since().seconds() << " trials " << v.evidence().trials()
      << " failures " << v.evidence().failures();
  return out.str();
}

std::vector<std::string> Digests(const std::vector<v1::Verdict>& vs,
                                 v1::VerdictKind kind) {
  std::vector<std::string> out;
  for (const v1::Verdict& v : vs) {
    if (v.kind() == kind) out.push_back(Digest(v));
  }
  return out;
}

TEST(ReplayGoldenTest, LiveOfflineAndStoreAnalyzeAgree) {
  const Recording rec = Record();

  // 1. Live: the verdict service fed by ingest batches, minute by minute.
  std::unique_ptr<Store> live_store = CreateMemoryStore();
  SimulatedClock clock(kT0);
  ControllerMetrics metrics;
  VerdictServiceOptions vo;
  vo.detection = Detection();
  vo.metrics_period = absl::Seconds(60);
  auto service = VerdictService::Create(vo, live_store.get(), &metrics, &clock);
  ASSERT_TRUE(service.ok()) << service.status();
  for (int m = 0; m < kMinutes; ++m) {
    CommittedBatch b;
    b.outcomes = rec.outcomes[m];
    b.platform_samples = rec.samples[m];
    (*service)->OnCommitted(b);
    // Taken in before the clock moves, so every run processes the same
    // minute at the same clock time.
    ASSERT_TRUE((*service)->Sync(absl::Seconds(30)));
    clock.AdvanceTime(absl::Minutes(1));
    ASSERT_TRUE((*service)->Sync(absl::Seconds(30)));
  }
  clock.AdvanceTime(absl::Hours(2));  // Every period settles.
  ASSERT_TRUE((*service)->Sync(absl::Seconds(30)));
  auto live_history = live_store->ListVerdicts(absl::InfinitePast(), 100000);
  ASSERT_TRUE(live_history.ok());
  auto live_current = (*service)->Current(v1::StreamKey(), true);
  ASSERT_TRUE(live_current.ok());
  (*service)->Shutdown();

  // 2. Offline: the same records as JSON Lines.
  std::string text;
  for (int m = 0; m < kMinutes; ++m) {
    for (const v1::Outcome& o : rec.outcomes[m]) {
      v1::AnalysisInputLine l;
      *l.mutable_outcome() = o;
      std::string json;
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(l, &json).ok());
      text += json + "\n";
    }
    for (const v1::PlatformMetricSample& s : rec.samples[m]) {
      v1::AnalysisInputLine l;
      *l.mutable_platform_sample() = s;
      std::string json;
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(l, &json).ok());
      text += json + "\n";
    }
  }
  analysis::AnalyzeOptions ao;
  ao.detection = Detection();
  std::istringstream in(text);
  absl::StatusOr<v1::AnalysisReport> offline =
      analysis::AnalyzeJsonLines(in, ao);
  ASSERT_TRUE(offline.ok()) << offline.status();

  // 3. Store-backed Analyze over what ingest would have stored.
  std::unique_ptr<Store> store = CreateMemoryStore();
  for (int m = 0; m < kMinutes; ++m) {
    WriteBatch w;
    std::map<StreamKey, StreamStats> minute;
    for (const v1::Outcome& o : rec.outcomes[m]) {
      StreamKey k{o.region(), o.target(), o.mode(), o.requested_bytes(), false};
      minute[k].Add(o);
      if (o.outcome_class() != v1::OK) w.failures.push_back(o);
    }
    for (const auto& [k, stats] : minute) {
      w.minutes.push_back({k, MinuteOf(kT0 + absl::Minutes(m)), stats});
    }
    w.platform_samples = rec.samples[m];
    CommitResult result;
    ASSERT_TRUE(store->Commit(w, &result).ok());
  }
  StoreVerdictSourceOptions so;
  so.detection = Detection();
  auto source = CreateStoreVerdictSource(so, store.get(), &clock);
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<v1::AnalysisReport> stored =
      (*source)->Analyze(v1::AnalyzeRequest());
  ASSERT_TRUE(stored.ok()) << stored.status();

  // Phantom errors: identical transitions in all three.
  const std::vector<v1::Verdict> offline_tr(offline->transitions().begin(),
                                            offline->transitions().end());
  const std::vector<v1::Verdict> stored_tr(stored->transitions().begin(),
                                           stored->transitions().end());
  const auto live_ph = Digests(*live_history, v1::PHANTOM_ERRORS);
  const auto offline_ph = Digests(offline_tr, v1::PHANTOM_ERRORS);
  const auto stored_ph = Digests(stored_tr, v1::PHANTOM_ERRORS);
  ASSERT_FALSE(offline_ph.empty());
  bool regression = false, confirmed = false;
  for (const v1::Verdict& v : offline_tr) {
    if (v.kind() != v1::PHANTOM_ERRORS) continue;
    regression |= v.state() == v1::REGRESSION;
    confirmed |= v.state() == v1::FIX_CONFIRMED;
  }
  EXPECT_TRUE(regression);
  EXPECT_TRUE(confirmed);
  EXPECT_EQ(live_ph, offline_ph);
  EXPECT_EQ(stored_ph, offline_ph);

  // Stream health: the live service and offline analyze see the same probes
  // in the same order.
  EXPECT_EQ(Digests(*live_history, v1::STREAM_HEALTH),
            Digests(offline_tr, v1::STREAM_HEALTH));
  const std::vector<v1::Verdict> offline_current(offline->verdicts().begin(),
                                                 offline->verdicts().end());
  std::vector<std::string> live_states, offline_states;
  for (const v1::Verdict& v : *live_current) {
    if (v.kind() == v1::PHANTOM_ERRORS || v.kind() == v1::STREAM_HEALTH) {
      live_states.push_back(v1::VerdictKind_Name(v.kind()) +
                            v.key().ShortDebugString() +
                            v1::VerdictState_Name(v.state()));
    }
  }
  for (const v1::Verdict& v : offline_current) {
    if (v.kind() == v1::PHANTOM_ERRORS || v.kind() == v1::STREAM_HEALTH) {
      offline_states.push_back(v1::VerdictKind_Name(v.kind()) +
                               v.key().ShortDebugString() +
                               v1::VerdictState_Name(v.state()));
    }
  }
  std::sort(live_states.begin(), live_states.end());
  std::sort(offline_states.begin(), offline_states.end());
  EXPECT_EQ(live_states, offline_states);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
