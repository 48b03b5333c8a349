// Whole-fleet scenarios through one verdict engine, probe by probe (the live
// path's ObserveProbe), with seeded random errors everywhere: a low-rate
// client-visible truncation on large streamed bodies in one region while a
// decoy fault hits the other mode in another region. Checks detection and
// attribution: the right stream alarms, within the probe budget, and
// no stream the faults do not touch does.
#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis {
namespace {

struct Stream {
  std::string region;
  v1::InvokeMode mode;
  std::string size;
};

v1::StreamKey KeyOf(const Stream& s) {
  v1::StreamKey k;
  k.set_region(s.region);
  k.set_target("canary");
  k.set_mode(s.mode);
  k.set_size_class(s.size);
  return k;
}

std::string Name(const v1::StreamKey& k) {
  return k.region() + "/" + v1::InvokeMode_Name(k.mode()) + "/" +
         k.size_class();
}

class FleetScenario {
 public:
  explicit FleetScenario(uint64_t seed) : rng_(seed) {
    for (const char* region : {"us-east-1", "eu-west-1"}) {
      for (v1::InvokeMode mode : {v1::RESPONSE_STREAM, v1::BUFFERED}) {
        for (const char* size : {"2B", "64KiB"}) {
          streams_.push_back({region, mode, size});
        }
      }
    }
    v1::DetectionConfig cfg;
    cfg.set_false_alarms_per_month(1);
    cfg.set_probes_per_stream_per_month(43200);  // One a minute.
    auto e = VerdictEngine::Create(cfg, 200);    // A 200-stream fleet.
    EXPECT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }

  // One probe per stream per step (two agents in turn), failing at the
  // stream's rate from `rate_of`.
  template <typename RateOf>
  void Run(int steps, RateOf rate_of) {
    for (int i = 0; i < steps; ++i) {
      for (const Stream& s : streams_) {
        std::bernoulli_distribution fail(rate_of(s));
        const v1::OutcomeClass c =
            fail(rng_)
                ? (s.mode == v1::RESPONSE_STREAM ? v1::TRUNCATED : v1::RESET)
                : v1::OK;
        ASSERT_TRUE(
            engine_->ObserveProbe(KeyOf(s), step_ % 2 ? "a1" : "a2", t_, c)
                .ok());
      }
      t_ += absl::Seconds(1);
      ++step_;
      for (v1::Verdict& v : engine_->TakeTransitions()) {
        if (v.kind() != v1::STREAM_HEALTH || v.state() != v1::REGRESSION) {
          continue;
        }
        const std::string name = Name(v.key());
        if (!first_regression_.count(name)) first_regression_[name] = step_;
      }
    }
  }

  int step() const { return step_; }
  // Step of the first STREAM_HEALTH REGRESSION of a stream, or -1.
  int FirstRegression(const std::string& name) const {
    auto it = first_regression_.find(name);
    return it == first_regression_.end() ? -1 : it->second;
  }
  const std::map<std::string, int>& regressions() const {
    return first_regression_;
  }

 private:
  std::mt19937_64 rng_;
  std::unique_ptr<VerdictEngine> engine_;
  std::vector<Stream> streams_;
  absl::Time t_ = absl::FromUnixSeconds(1706745600);
  int step_ = 0;
  std::map<std::string, int> first_regression_;
};

constexpr double kNoise = 1e-4;  // Random errors on every stream.

TEST(ScenarioTest, LowRateTruncationWithADecoyInTheOtherModeElsewhere) {
  int detected = 0, decoy_detected = 0, runs = 0;
  std::vector<int> delays;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    FleetScenario f(seed);
    f.Run(20000, [](const Stream&) { return kNoise; });
    EXPECT_TRUE(f.regressions().empty())
        << "seed " << seed << ": " << f.regressions().begin()->first;
    const int onset = f.step();
    f.Run(5000, [](const Stream& s) {
      // 0.5 % truncation of large streamed bodies in us-east-1; a decoy 2 %
      // reset of small buffered bodies in eu-west-1.
      if (s.region == "us-east-1" && s.mode == v1::RESPONSE_STREAM &&
          s.size == "64KiB") {
        return 0.005;
      }
      if (s.region == "eu-west-1" && s.mode == v1::BUFFERED && s.size == "2B") {
        return 0.02;
      }
      return kNoise;
    });
    ++runs;
    const int hit = f.FirstRegression("us-east-1/RESPONSE_STREAM/64KiB");
    if (hit >= 0) {
      ++detected;
      delays.push_back(hit - onset);
    }
    if (f.FirstRegression("eu-west-1/BUFFERED/2B") >= 0) ++decoy_detected;
    for (const auto& [name, at] : f.regressions()) {
      EXPECT_TRUE(name == "us-east-1/RESPONSE_STREAM/64KiB" ||
                  name == "eu-west-1/BUFFERED/2B")
          << "seed " << seed << ": " << name << " alarmed at step " << at;
    }
  }
  std::sort(delays.begin(), delays.end());
  ASSERT_FALSE(delays.empty());
  const int median = delays[delays.size() / 2];
  std::printf(
      "truncation 0.5%%: %d/%d detected, median delay %d probes; "
      "decoy 2%%: %d/%d detected\n",
      detected, runs, median, decoy_detected, runs);
  EXPECT_GE(detected, 18);
  EXPECT_LE(median, 3000);
  EXPECT_GE(decoy_detected, 19);
}

}  // namespace
}  // namespace fleetcanary::analysis
