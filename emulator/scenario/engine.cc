#include "emulator/scenario/engine.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/loader.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace emulator {
namespace {

absl::Status Invalid(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string CamelCase(absl::string_view snake) {
  std::string out;
  bool upper = false;
  for (char c : snake) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper ? absl::ascii_toupper(c) : c);
    upper = false;
  }
  return out;
}

// Finds the YAML node addressed by a field path like "faults[2].status".
// Returns false when any step is missing (the field was not written).
bool LocatePath(const YAML::Node& root, absl::string_view path,
                YAML::Mark* mark) {
  // Note: YAML::Node::operator= writes through to the tree; rebind with
  // reset() and look up through const nodes only.
  YAML::Node node;
  node.reset(root);
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    std::string key(part);
    int index = -1;
    size_t bracket = key.find('[');
    if (bracket != std::string::npos) {
      if (!absl::SimpleAtoi(key.substr(bracket + 1, key.size() - bracket - 2),
                            &index)) {
        return false;
      }
      key = key.substr(0, bracket);
    }
    if (!node.IsMap()) return false;
    const YAML::Node& const_node = node;
    // (A missing key yields an invalid node that must not be reset().)
    YAML::Node next = const_node[key].IsDefined() ? const_node[key]
                                                  : const_node[CamelCase(key)];
    if (!next.IsDefined()) return false;
    if (index >= 0) {
      if (!next.IsSequence() || index >= static_cast<int>(next.size())) {
        return false;
      }
      const YAML::Node& seq = next;
      YAML::Node element = seq[index];
      next.reset(element);
    }
    node.reset(next);
  }
  *mark = node.Mark();
  return true;
}

absl::Status ValidateRule(const v1::FaultRule& rule, const std::string& path) {
  using v1::FaultEffect;
  if (rule.effect() == v1::FAULT_EFFECT_UNSPECIFIED) {
    return Invalid(path + ".effect", "required");
  }
  for (int i = 0; i < rule.regions_size(); ++i) {
    if (rule.regions(i).empty()) {
      return Invalid(absl::StrCat(path, ".regions[", i, "]"), "empty region");
    }
  }
  for (int i = 0; i < rule.modes_size(); ++i) {
    if (rule.modes(i) == v1::INVOKE_MODE_UNSPECIFIED) {
      return Invalid(absl::StrCat(path, ".modes[", i, "]"),
                     "must be BUFFERED or RESPONSE_STREAM");
    }
  }
  if (rule.max_bytes() != 0 && rule.min_bytes() > rule.max_bytes()) {
    return Invalid(path + ".max_bytes",
                   absl::StrCat(rule.max_bytes(), " is below min_bytes ",
                                rule.min_bytes()));
  }
  const std::pair<const char*, const google::protobuf::Duration*> durations[] =
      {{"start", &rule.start()},
       {"end", &rule.end()},
       {"duration", &rule.duration()}};
  for (const auto& [name, d] : durations) {
    if (d->seconds() < 0 || d->nanos() < 0) {
      return Invalid(absl::StrCat(path, ".", name), "must not be negative");
    }
  }
  if (rule.has_end() && DurationFromProto(rule.end()) != absl::ZeroDuration() &&
      DurationFromProto(rule.end()) <= DurationFromProto(rule.start())) {
    return Invalid(path + ".end", "must be after start");
  }
  if (IsSet(rule.start_time()) && IsSet(rule.end_time()) &&
      TimeFromProto(rule.end_time()) <= TimeFromProto(rule.start_time())) {
    return Invalid(path + ".end_time", "must be after start_time");
  }
  const v1::FaultProbability& p = rule.probability();
  if (p.base() == 0 && p.per_log2_byte() == 0 && p.per_byte() == 0) {
    return Invalid(path + ".probability",
                   "required (all of base, per_log2_byte, per_byte are 0: the "
                   "rule would never fire)");
  }
  switch (rule.effect()) {
    case v1::FAULT_EFFECT_HTTP_STATUS:
      if (rule.status() < 100) {
        return Invalid(path + ".status", "required for http_status (100..599)");
      }
      break;
    case v1::FAULT_EFFECT_DELAY_FIRST_BYTE:
      if (DurationFromProto(rule.duration()) <= absl::ZeroDuration()) {
        return Invalid(path + ".duration", "required for delay_first_byte");
      }
      break;
    case v1::FAULT_EFFECT_SLOW_BODY:
      if (rule.bytes_per_second() == 0) {
        return Invalid(path + ".bytes_per_second", "required for slow_body");
      }
      break;
    default:
      break;
  }
  if (rule.final_chunk() && rule.effect() != v1::FAULT_EFFECT_TRUNCATE) {
    return Invalid(path + ".final_chunk", "only meaningful for truncate");
  }
  return absl::OkStatus();
}

}  // namespace

double FaultProbabilityAt(const v1::FaultProbability& p, uint64_t bytes) {
  const double n = static_cast<double>(std::max<uint64_t>(bytes, 1));
  double v = p.base() + p.per_log2_byte() * std::log2(n) + p.per_byte() * n;
  const double cap = p.max_probability() > 0 ? p.max_probability() : 1.0;
  return std::clamp(v, 0.0, cap);
}

bool RuleActive(const v1::FaultRule& rule, const ScenarioTime& t) {
  if (IsSet(rule.start_time()) || IsSet(rule.end_time())) {
    if (IsSet(rule.start_time()) && t.now < TimeFromProto(rule.start_time())) {
      return false;
    }
    if (IsSet(rule.end_time()) && t.now >= TimeFromProto(rule.end_time())) {
      return false;
    }
    return true;
  }
  if (t.elapsed < DurationFromProto(rule.start())) return false;
  const absl::Duration end = DurationFromProto(rule.end());
  if (end > absl::ZeroDuration() && t.elapsed >= end) return false;
  return true;
}

bool RuleMatches(const v1::FaultRule& rule, const InvocationFacts& facts) {
  if (!rule.regions().empty() &&
      std::none_of(rule.regions().begin(), rule.regions().end(),
                   [&](const std::string& r) { return r == facts.region; })) {
    return false;
  }
  if (!rule.modes().empty() &&
      std::none_of(rule.modes().begin(), rule.modes().end(),
                   [&](int m) { return m == facts.mode; })) {
    return false;
  }
  if (facts.bytes < rule.min_bytes()) return false;
  if (rule.max_bytes() != 0 && facts.bytes > rule.max_bytes()) return false;
  return true;
}

double DrawUnit(absl::BitGenRef gen) {
  return static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

std::optional<int> DecideFault(const v1::Scenario& scenario,
                               const InvocationFacts& facts,
                               const ScenarioTime& t, absl::BitGenRef gen) {
  for (int i = 0; i < scenario.faults_size(); ++i) {
    const v1::FaultRule& rule = scenario.faults(i);
    if (!RuleActive(rule, t) || !RuleMatches(rule, facts)) continue;
    const double p = FaultProbabilityAt(rule.probability(), facts.bytes);
    if (DrawUnit(gen) < p) return i;
  }
  return std::nullopt;
}

absl::Status ValidateScenario(const v1::Scenario& scenario) {
  absl::Status proto_rules = ValidateMessage(scenario);
  if (!proto_rules.ok()) return proto_rules;
  if (scenario.time_scale() < 0) {
    return Invalid("time_scale", "must not be negative");
  }
  for (int i = 0; i < scenario.faults_size(); ++i) {
    absl::Status s =
        ValidateRule(scenario.faults(i), absl::StrCat("faults[", i, "]"));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Scenario> ParseScenarioYaml(absl::string_view yaml,
                                               absl::string_view source_name) {
  v1::Scenario scenario;
  absl::Status parsed = ParseYamlToMessage(yaml, source_name, &scenario);
  if (!parsed.ok()) return parsed;
  absl::Status valid = ValidateScenario(scenario);
  if (valid.ok()) return scenario;
  return LocateYamlError(yaml, source_name, valid);
}

absl::Status LocateYamlError(absl::string_view yaml,
                             absl::string_view source_name,
                             const absl::Status& error) {
  std::string message(error.message());
  std::string path = message.substr(0, message.find(':'));
  YAML::Mark mark;
  bool located = false;
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    // A missing field is reported at the object that lacks it.
    while (!located && !path.empty()) {
      located = LocatePath(root, path, &mark);
      const size_t dot = path.rfind('.');
      path = dot == std::string::npos ? "" : path.substr(0, dot);
    }
  } catch (const YAML::Exception&) {
    located = false;
  }
  if (located) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", message));
}

absl::StatusOr<v1::Scenario> LoadScenarioFile(const std::string& path) {
  v1::Scenario scenario;
  absl::Status loaded = LoadYamlFile(path, &scenario);
  if (!loaded.ok()) return loaded;
  // Re-run through the YAML path for located semantic errors.
  absl::Status valid = ValidateScenario(scenario);
  if (valid.ok()) return scenario;
  std::string text;
  {
    FILE* f = fopen(path.c_str(), "rb");
    if (f == nullptr) return valid;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    fclose(f);
  }
  return ParseScenarioYaml(text, path);
}

ScenarioEngine::ScenarioEngine(v1::Scenario scenario, Clock* clock)
    : clock_(clock) {
  absl::Status s = Replace(std::move(scenario));
  (void)s;  // Validated by Create().
}

absl::StatusOr<std::unique_ptr<ScenarioEngine>> ScenarioEngine::Create(
    v1::Scenario scenario, Clock* clock) {
  absl::Status valid = ValidateScenario(scenario);
  if (!valid.ok()) return valid;
  return std::unique_ptr<ScenarioEngine>(
      new ScenarioEngine(std::move(scenario), clock));
}

absl::Status ScenarioEngine::Replace(v1::Scenario scenario) {
  absl::Status valid = ValidateScenario(scenario);
  if (!valid.ok()) return valid;
  const absl::Duration mono = clock_->MonotonicNow();
  const absl::Time wall = clock_->Now();
  absl::MutexLock lock(&mu_);
  scenario_ = std::move(scenario);
  time_scale_ = scenario_.time_scale() > 0 ? scenario_.time_scale() : 1.0;
  loaded_at_ = mono;
  epoch_ = IsSet(scenario_.epoch()) ? TimeFromProto(scenario_.epoch()) : wall;
  gen_.seed(scenario_.seed());
  return absl::OkStatus();
}

ScenarioTime ScenarioEngine::NowLocked() const {
  ScenarioTime t;
  t.elapsed = (clock_->MonotonicNow() - loaded_at_) * time_scale_;
  t.now = epoch_ + t.elapsed;
  return t;
}

ScenarioTime ScenarioEngine::Now() const {
  absl::MutexLock lock(&mu_);
  return NowLocked();
}

FaultDecision ScenarioEngine::Decide(const InvocationFacts& facts) {
  absl::MutexLock lock(&mu_);
  FaultDecision decision;
  decision.time = NowLocked();
  if (scenario_.faults().empty()) return decision;
  std::optional<int> index = DecideFault(scenario_, facts, decision.time, gen_);
  if (index.has_value()) decision.rule = scenario_.faults(*index);
  return decision;
}

v1::Scenario ScenarioEngine::scenario() const {
  absl::MutexLock lock(&mu_);
  return scenario_;
}

}  // namespace emulator
}  // namespace fleetcanary
