// Test helper: one STREAM_HEALTH stream of the verdict engine driven by seeded
// binomial counts in-process (no sockets, no clocks), for the simulation tests.
#ifndef FLEETCANARY_TESTS_ANALYSIS_SIM_STREAM_H_
#define FLEETCANARY_TESTS_ANALYSIS_SIM_STREAM_H_

#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "analysis/verdict_engine.h"
#include "gtest/gtest.h"

namespace fleetcanary::analysis::testing {

// The reference fleet the false-alarm budget is shared by: 200 streams
// probed once a minute, one false alarm a month.
inline v1::DetectionConfig FleetConfig() {
  v1::DetectionConfig cfg;
  cfg.set_false_alarms_per_month(1);
  cfg.set_probes_per_stream_per_month(43200);
  return cfg;
}
constexpr int kFleetStreams = 200;

class SimStream {
 public:
  explicit SimStream(uint64_t seed,
                     const v1::DetectionConfig& cfg = FleetConfig())
      : rng_(seed) {
    auto e = VerdictEngine::Create(cfg, kFleetStreams);
    EXPECT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    key_.set_region("us-east-1");
    key_.set_target("canary");
    key_.set_mode(v1::RESPONSE_STREAM);
    key_.set_size_class("64KiB");
  }

  VerdictEngine& engine() { return *engine_; }
  absl::Time now() const { return t_; }
  uint64_t probes() const { return probes_; }

  // Feeds `probes` probes at failure rate p in batches of `batch` (one batch
  // per second of data time). Stops early, after the batch where a
  // STREAM_HEALTH transition to `stop_at` happens, and returns it.
  std::optional<v1::Verdict> Feed(uint64_t probes, uint64_t batch, double p,
                                  v1::VerdictState stop_at) {
    std::optional<v1::Verdict> hit;
    for (uint64_t done = 0; done < probes && !hit;) {
      const uint64_t n = std::min(batch, probes - done);
      std::binomial_distribution<uint64_t> fail(n, p);
      const uint64_t k = p > 0 ? fail(rng_) : 0;
      ClassCounts c;
      c.Add(v1::TRUNCATED, k);
      c.Add(v1::OK, n - k);
      absl::Status s = engine_->Observe(key_, t_, c);
      EXPECT_TRUE(s.ok()) << s;
      t_ += absl::Seconds(1);
      done += n;
      probes_ += n;
      for (v1::Verdict& v : engine_->TakeTransitions()) {
        if (v.kind() != v1::STREAM_HEALTH) continue;
        transitions_.push_back(v);
        if (v.state() == stop_at && !hit) hit = v;
      }
    }
    return hit;
  }

  const std::vector<v1::Verdict>& transitions() const { return transitions_; }

 private:
  std::mt19937_64 rng_;
  std::unique_ptr<VerdictEngine> engine_;
  v1::StreamKey key_;
  absl::Time t_ = absl::FromUnixSeconds(1706745600);
  uint64_t probes_ = 0;
  std::vector<v1::Verdict> transitions_;
};

inline absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace fleetcanary::analysis::testing

#endif  // FLEETCANARY_TESTS_ANALYSIS_SIM_STREAM_H_
