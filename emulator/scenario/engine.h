// The scenario engine: a pure, seeded, clock-driven decision of which fault
// (if any) an invocation suffers. It knows nothing of sockets; the function
// handler asks it once per invocation and carries the decision out on the
// wire.
//
// A scenario (v1::Scenario, see proto/fleetcanary/v1/scenario.proto) is a list
// of fault rules. Each rule matches by region, invoke mode and body-size range,
// is active during a window of *scenario time*, and fires with a probability
// that depends on the body size. Rules are tried in order; for every rule that
// is active and matches, exactly one uniform number is drawn from the seeded
// generator, and the first rule whose draw falls below its probability wins.
// Hence the same seed and the same sequence of invocations (and scenario times)
// give the same faults.
//
// Scenario time: when a scenario is loaded its clock starts at `epoch` (or
// the wall time of loading) and runs `time_scale` times faster than the
// injected Clock. Relative windows (start/end) are measured in scenario time
// since loading; absolute ones (start_time/end_time) against epoch + elapsed.
//
// Thread-safety: the free functions are pure. ScenarioEngine is thread-safe.
#ifndef FLEETCANARY_EMULATOR_SCENARIO_ENGINE_H_
#define FLEETCANARY_EMULATOR_SCENARIO_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

// What rules match on.
struct InvocationFacts {
  absl::string_view region;
  v1::InvokeMode mode = v1::BUFFERED;
  uint64_t bytes = 0;
};

// Where a scenario is on its own timeline.
struct ScenarioTime {
  absl::Duration elapsed;  // Scenario time since loading.
  absl::Time now;          // epoch + elapsed.
};

// p(n) = min(max, base + per_log2_byte*log2(max(n,1)) + per_byte*n); a
// max_probability of 0 means 1.
double FaultProbabilityAt(const v1::FaultProbability& p, uint64_t bytes);

// Whether `rule` is active at `t` (start inclusive, end exclusive).
bool RuleActive(const v1::FaultRule& rule, const ScenarioTime& t);

// Whether `rule` applies to an invocation with these facts.
bool RuleMatches(const v1::FaultRule& rule, const InvocationFacts& facts);

// A uniform double in [0, 1) from one 64-bit draw of `gen`; the mapping is
// fixed (top 53 bits), so results do not depend on library versions.
double DrawUnit(absl::BitGenRef gen);

// The index of the rule that fires, or nullopt. Draws one number from `gen`
// per active, matching rule until one fires.
std::optional<int> DecideFault(const v1::Scenario& scenario,
                               const InvocationFacts& facts,
                               const ScenarioTime& t, absl::BitGenRef gen);

// Semantic checks beyond the proto field rules: effect present, effect
// parameters present, ranges and windows ordered, regions/modes well formed.
// INVALID_ARGUMENT "faults[2].status: required for http_status" etc.; the
// message starts with the field path.
absl::Status ValidateScenario(const v1::Scenario& scenario);

// Parses a scenario from YAML (common/config) and validates it. Errors name
// `source_name`, the line and column, and the field path; semantic errors are
// located in the YAML too when the field is there.
absl::StatusOr<v1::Scenario> ParseScenarioYaml(absl::string_view yaml,
                                               absl::string_view source_name);
absl::StatusOr<v1::Scenario> LoadScenarioFile(const std::string& path);

// Turns a semantic `error` whose message starts with a field path
// ("faults[1].status: ...") into "source:line:col: faults[1].status: ..."
// when the field is written in `yaml`, or "source: ..." otherwise.
absl::Status LocateYamlError(absl::string_view yaml,
                             absl::string_view source_name,
                             const absl::Status& error);

// What the engine decided for one invocation.
struct FaultDecision {
  std::optional<v1::FaultRule> rule;  // Set when a fault fires.
  ScenarioTime time;
};

class ScenarioEngine {
 public:
  // Validates `scenario` and starts its timeline at `clock`'s current time.
  // `clock` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<ScenarioEngine>> Create(
      v1::Scenario scenario, Clock* clock);

  // Decides the fault for one invocation, at the clock's current time.
  FaultDecision Decide(const InvocationFacts& facts);

  // Replaces the scenario (validated first; the old one stays on error),
  // restarts the timeline and reseeds the generator.
  absl::Status Replace(v1::Scenario scenario);

  v1::Scenario scenario() const;
  ScenarioTime Now() const;

 private:
  ScenarioEngine(v1::Scenario scenario, Clock* clock);
  ScenarioTime NowLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  v1::Scenario scenario_ ABSL_GUARDED_BY(mu_);
  double time_scale_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Duration loaded_at_ ABSL_GUARDED_BY(mu_);  // Clock monotonic time.
  absl::Time epoch_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 gen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SCENARIO_ENGINE_H_
