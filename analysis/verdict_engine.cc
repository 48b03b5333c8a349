#include "analysis/verdict_engine.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "analysis/detectors/common.h"
#include "analysis/detectors/context.h"
#include "analysis/detectors/hard_down.h"
#include "analysis/detectors/mode_comparison.h"
#include "analysis/detectors/rate_monitor.h"
#include "analysis/detectors/size_trend.h"
#include "analysis/detectors/state_io.h"
#include "analysis/replay.h"
#include "analysis/tests.h"
#include "common/status/status_util.h"
#include "common/units/units.h"
#include "google/protobuf/util/message_differencer.h"

namespace fleetcanary::analysis {
namespace {

using detectors::CheckStateKey;
using detectors::Context;
using detectors::FloorTo;
using detectors::HardDown;
using detectors::Invalid;
using detectors::Key;
using detectors::kMaxKeys;
using detectors::LoadTime;
using detectors::MakeKey;
using detectors::ModeComparison;
using detectors::RateMonitor;
using detectors::SaveTime;
using detectors::SetClasses;
using detectors::ToStreamKey;
using detectors::TrendFamily;

constexpr uint32_t kStateFormatVersion = 1;

absl::Status CheckKey(const v1::StreamKey& key, bool need_size) {
  if (key.region().empty()) {
    return absl::InvalidArgumentError("stream key: region is empty");
  }
  if (key.target().empty()) {
    return absl::InvalidArgumentError("stream key: target is empty");
  }
  if (key.mode() != v1::BUFFERED && key.mode() != v1::RESPONSE_STREAM) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream key: mode must be BUFFERED or RESPONSE_STREAM, got ",
        static_cast<int>(key.mode())));
  }
  if (need_size && key.size_class().empty()) {
    return absl::InvalidArgumentError("stream key: size_class is empty");
  }
  return absl::OkStatus();
}

// Routes each observation to the detectors of its keys (one per kind and
// key, analysis/detectors/), closes the comparison buckets and trend windows
// as time passes, and saves / restores them all.
class VerdictEngineImpl : public VerdictEngine {
 public:
  VerdictEngineImpl(const v1::DetectionConfig& cfg, int expected_streams) {
    ctx_.cfg = cfg;
    ctx_.expected_streams = expected_streams;
    ctx_.out = &transitions_;
    bucket_ = absl::Seconds(cfg.comparison_bucket().seconds()) +
              absl::Nanoseconds(cfg.comparison_bucket().nanos());
    window_ = absl::Seconds(cfg.trend_window().seconds()) +
              absl::Nanoseconds(cfg.trend_window().nanos());
  }

  absl::Status ObserveProbe(const v1::StreamKey& key,
                            const std::string& agent_id, absl::Time time,
                            v1::OutcomeClass outcome_class) override {
    if (!v1::OutcomeClass_IsValid(outcome_class)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "outcome_class: unknown value ", static_cast<int>(outcome_class)));
    }
    ClassCounts counts;
    counts.Add(outcome_class);
    if (absl::Status s = Observe(key, time, counts); !s.ok()) return s;
    if (!IsTrial(outcome_class)) return absl::OkStatus();
    const Key hk{key.region(), key.target(), key.mode(), ""};
    auto it = hard_down_.find(hk);
    if (it == hard_down_.end()) {
      it = hard_down_.emplace(hk, HardDown(hk, ctx_.cfg)).first;
    }
    it->second.Observe(&ctx_, agent_id, time,
                       IsStreamHealthFailure(outcome_class));
    return absl::OkStatus();
  }

  absl::Status Observe(const v1::StreamKey& key, absl::Time time,
                       const ClassCounts& counts) override {
    if (absl::Status s = CheckKey(key, true); !s.ok()) return s;
    if (time < watermark_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "time ", absl::FormatTime(time), " is before the previous one ",
          absl::FormatTime(watermark_), " (feed observations in time order)"));
    }
    absl::StatusOr<uint64_t> bytes = ParseBytes(key.size_class());
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stream key: size_class: ", bytes.status().message()));
    }
    const Key k = MakeKey(key);
    if (streams_.find(k) == streams_.end() && streams_.size() >= kMaxKeys) {
      return absl::ResourceExhaustedError("too many streams");
    }
    AdvanceTo(time);
    const uint64_t n = counts.Trials();
    const uint64_t f = counts.StreamHealthFailures();
    if (n == 0) return absl::OkStatus();
    auto it = streams_.find(k);
    if (it == streams_.end()) {
      it = streams_.emplace(k, RateMonitor(v1::STREAM_HEALTH, k, true)).first;
    }
    v1::Evidence extra;
    SetClasses(&extra, false);
    it->second.Observe(&ctx_, static_cast<int>(streams_.size()), time, n, f,
                       extra);
    // Mode comparison (same region/target/size, mode unset).
    const Key ck{key.region(), key.target(), v1::INVOKE_MODE_UNSPECIFIED,
                 key.size_class()};
    auto cit = comparisons_.find(ck);
    if (cit == comparisons_.end()) {
      cit = comparisons_.emplace(ck, ModeComparison(ck)).first;
    }
    cit->second.Add(key.mode(), n, f);
    // Size trend (region/target/mode, size unset).
    const Key tk{key.region(), key.target(), key.mode(), ""};
    auto tit = trends_.find(tk);
    if (tit == trends_.end()) tit = trends_.emplace(tk, TrendFamily(tk)).first;
    tit->second.Add(*bytes, n, f);
    return absl::OkStatus();
  }

  absl::Status ObservePlatform(const v1::StreamKey& key,
                               absl::Time period_start, double platform_errors,
                               double platform_invocations,
                               uint64_t client_failures,
                               uint64_t client_probes) override {
    if (absl::Status s = CheckKey(key, false); !s.ok()) return s;
    if (!std::isfinite(platform_errors) || platform_errors < 0) {
      return absl::InvalidArgumentError(
          "platform_errors must be a finite value >= 0");
    }
    if (!std::isfinite(platform_invocations) || platform_invocations < 0) {
      return absl::InvalidArgumentError(
          "platform_invocations must be a finite value >= 0");
    }
    if (client_failures > client_probes) {
      return absl::InvalidArgumentError("client_failures > client_probes");
    }
    const Key k{key.region(), key.target(), key.mode(), ""};
    auto last = platform_time_.find(k);
    if (last != platform_time_.end() && period_start < last->second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "platform period ", absl::FormatTime(period_start),
          " is before the previous one for ", key.region(), "/", key.target()));
    }
    if (phantom_.find(k) == phantom_.end() && phantom_.size() >= kMaxKeys) {
      return absl::ResourceExhaustedError("too many platform streams");
    }
    platform_time_[k] = period_start;
    const uint64_t invocations =
        static_cast<uint64_t>(std::llround(platform_invocations));
    const uint64_t phantom =
        PhantomErrors(platform_errors, platform_invocations, client_failures);
    if (invocations == 0) return absl::OkStatus();
    auto it = phantom_.find(k);
    if (it == phantom_.end()) {
      it = phantom_.emplace(k, RateMonitor(v1::PHANTOM_ERRORS, k, false)).first;
    }
    v1::Evidence extra;
    SetClasses(&extra, true);
    extra.set_platform_errors(platform_errors);
    extra.set_platform_invocations(platform_invocations);
    extra.set_client_failures(client_failures);
    extra.set_control_trials(client_probes);
    extra.set_control_failures(client_failures);
    it->second.Observe(&ctx_, static_cast<int>(phantom_.size()), period_start,
                       invocations, phantom, extra);
    return absl::OkStatus();
  }

  void DeclareFix(absl::Time time) override { ctx_.declared_fix = time; }

  void Flush() override {
    CloseBuckets(watermark_ + bucket_);
    CloseWindow(watermark_ + window_, /*force=*/true);
  }

  std::vector<v1::Verdict> Current() const override {
    std::vector<v1::Verdict> out;
    for (const auto& [k, m] : streams_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : comparisons_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : trends_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : phantom_) out.push_back(m.life().verdict());
    for (const auto& [k, m] : hard_down_) out.push_back(m.life().verdict());
    return out;
  }

  std::vector<v1::Verdict> TakeTransitions() override {
    std::vector<v1::Verdict> out;
    out.swap(transitions_);
    return out;
  }

  v1::DetectorState SaveState() const override {
    v1::DetectorState out;
    out.set_format_version(kStateFormatVersion);
    *out.mutable_fingerprint() = Fingerprint();
    SaveTime(watermark_, out.mutable_watermark());
    SaveTime(bucket_start_, out.mutable_bucket_start());
    SaveTime(window_start_, out.mutable_window_start());
    if (ctx_.declared_fix) {
      SaveTime(*ctx_.declared_fix, out.mutable_declared_fix());
    }
    for (const auto& [k, m] : streams_) m.Save(out.add_stream_health());
    for (const auto& [k, c] : comparisons_) c.Save(out.add_mode_difference());
    for (const auto& [k, f] : trends_) f.Save(out.add_size_trend());
    for (const auto& [k, m] : phantom_) m.Save(out.add_phantom_errors());
    for (const auto& [k, h] : hard_down_) h.Save(out.add_hard_down());
    for (const auto& [k, t] : platform_time_) {
      v1::PlatformPeriod* p = out.add_platform_periods();
      *p->mutable_key() = ToStreamKey(k);
      SaveTime(t, p->mutable_period_start());
    }
    return out;
  }

  // Replaces the state of this freshly created engine with `in` (see
  // VerdictEngine::Restore for the errors).
  absl::Status LoadState(const v1::DetectorState& in) {
    if (in.format_version() != kStateFormatVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("detector state: format_version ", in.format_version(),
                       " is not the supported ", kStateFormatVersion));
    }
    std::string diff;
    google::protobuf::util::MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&diff);
    if (!differencer.Compare(Fingerprint(), in.fingerprint())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "detector state was saved under another detection config or "
          "expected_streams (current vs saved): ",
          diff));
    }
    FC_ASSIGN_OR_RETURN(
        watermark_, LoadTime(in.has_watermark(), in.watermark(), "watermark"));
    FC_ASSIGN_OR_RETURN(
        bucket_start_,
        LoadTime(in.has_bucket_start(), in.bucket_start(), "bucket_start"));
    FC_ASSIGN_OR_RETURN(
        window_start_,
        LoadTime(in.has_window_start(), in.window_start(), "window_start"));
    if (in.has_declared_fix()) {
      FC_ASSIGN_OR_RETURN(ctx_.declared_fix,
                          LoadTime(true, in.declared_fix(), "declared_fix"));
    }
    FC_RETURN_IF_ERROR(
        LoadMap(in.stream_health(), "stream_health", &streams_,
                [](const v1::RateMonitorState& m, const std::string& where) {
                  return RateMonitor::Load(m, v1::STREAM_HEALTH, where);
                }));
    FC_RETURN_IF_ERROR(LoadMap(in.mode_difference(), "mode_difference",
                               &comparisons_, &ModeComparison::Load));
    FC_RETURN_IF_ERROR(
        LoadMap(in.size_trend(), "size_trend", &trends_, &TrendFamily::Load));
    FC_RETURN_IF_ERROR(
        LoadMap(in.phantom_errors(), "phantom_errors", &phantom_,
                [](const v1::RateMonitorState& m, const std::string& where) {
                  return RateMonitor::Load(m, v1::PHANTOM_ERRORS, where);
                }));
    FC_RETURN_IF_ERROR(
        LoadMap(in.hard_down(), "hard_down", &hard_down_,
                [this](const v1::HardDownState& h, const std::string& where) {
                  return HardDown::Load(h, ctx_.cfg, where);
                }));
    if (in.platform_periods_size() > static_cast<int>(kMaxKeys)) {
      return Invalid("platform_periods", "too many");
    }
    for (int i = 0; i < in.platform_periods_size(); ++i) {
      const v1::PlatformPeriod& p = in.platform_periods(i);
      const std::string where = absl::StrCat("platform_periods[", i, "]");
      FC_RETURN_IF_ERROR(CheckStateKey(p.key(), v1::PHANTOM_ERRORS, where));
      FC_ASSIGN_OR_RETURN(absl::Time t,
                          LoadTime(p.has_period_start(), p.period_start(),
                                   absl::StrCat(where, ".period_start")));
      if (!platform_time_.emplace(MakeKey(p.key()), t).second) {
        return Invalid(where, "key repeated");
      }
    }
    return absl::OkStatus();
  }

 private:
  v1::DetectorFingerprint Fingerprint() const {
    v1::DetectorFingerprint f;
    *f.mutable_resolved_config() = ctx_.cfg;
    f.set_expected_streams(ctx_.expected_streams);
    return f;
  }

  // Loads the detectors of one list into `*out`, keyed by their verdicts'
  // keys (each key once).
  template <typename Proto, typename Detector, typename LoadFn>
  static absl::Status LoadMap(
      const google::protobuf::RepeatedPtrField<Proto>& in,
      absl::string_view name, std::map<Key, Detector>* out, LoadFn load) {
    if (in.size() > static_cast<int>(kMaxKeys))
      return Invalid(name, "too many");
    for (int i = 0; i < in.size(); ++i) {
      const std::string where = absl::StrCat(name, "[", i, "]");
      FC_ASSIGN_OR_RETURN(Detector d, load(in.Get(i), where));
      const Key key = MakeKey(in.Get(i).verdict().key());
      if (!out->emplace(key, std::move(d)).second) {
        return Invalid(where, "key repeated");
      }
    }
    return absl::OkStatus();
  }

  // Closes buckets and windows that end at or before `time`.
  void AdvanceTo(absl::Time time) {
    if (watermark_ == absl::InfinitePast()) {
      bucket_start_ = FloorTo(time, bucket_);
      window_start_ = FloorTo(time, window_);
    }
    watermark_ = time;
    if (time >= bucket_start_ + bucket_) {
      CloseBuckets(time);
      bucket_start_ = FloorTo(time, bucket_);
    }
    if (time >= window_start_ + window_) {
      CloseWindow(time, false);
      window_start_ = FloorTo(time, window_);
    }
  }

  void CloseBuckets(absl::Time) {
    const absl::Time end = bucket_start_ + bucket_;
    for (auto& [k, c] : comparisons_) {
      if (c.pending()) c.CloseBucket(&ctx_, end);
    }
  }

  void CloseWindow(absl::Time, bool force) {
    const absl::Time end = window_start_ + window_;
    std::vector<TrendFamily*> families;
    std::vector<std::optional<TrendTest>> tests;
    std::vector<double> p;
    for (auto& [k, f] : trends_) {
      if (!f.pending()) continue;
      families.push_back(&f);
      tests.push_back(f.Test());
      p.push_back(tests.back() ? tests.back()->p_increasing : 1.0);
    }
    if (families.empty()) return;
    (void)force;
    const BhResult bh = BenjaminiHochberg(p, ctx_.cfg.trend_fdr_q());
    for (size_t i = 0; i < families.size(); ++i) {
      const bool significant = tests[i].has_value() && bh.reject[i] &&
                               p[i] <= ctx_.cfg.trend_alpha();
      families[i]->CloseWindow(&ctx_, end, window_, tests[i], bh.adjusted[i],
                               significant);
    }
  }

  Context ctx_;
  absl::Duration bucket_, window_;
  absl::Time watermark_ = absl::InfinitePast();
  absl::Time bucket_start_ = absl::InfinitePast();
  absl::Time window_start_ = absl::InfinitePast();
  std::map<Key, RateMonitor> streams_;
  std::map<Key, ModeComparison> comparisons_;
  std::map<Key, TrendFamily> trends_;
  std::map<Key, RateMonitor> phantom_;
  std::map<Key, HardDown> hard_down_;
  std::map<Key, absl::Time> platform_time_;
  std::vector<v1::Verdict> transitions_;
};

// The config an engine runs with: `config` resolved, and expected_streams
// checked (VerdictEngine::Create and Restore).
absl::StatusOr<v1::DetectionConfig> ResolveEngineConfig(
    const v1::DetectionConfig& config, int expected_streams) {
  absl::StatusOr<v1::DetectionConfig> resolved = ResolveDetectionConfig(config);
  if (resolved.ok() && expected_streams < 0) {
    return absl::InvalidArgumentError("expected_streams must be >= 0");
  }
  return resolved;
}

// The probes of `by_class` whose class satisfies `counts`.
uint64_t CountOf(const std::array<uint64_t, ClassCounts::kSize>& by_class,
                 bool (*counts)(v1::OutcomeClass)) {
  uint64_t n = 0;
  for (int c = 0; c < ClassCounts::kSize; ++c) {
    if (counts(static_cast<v1::OutcomeClass>(c))) n += by_class[c];
  }
  return n;
}

}  // namespace

bool IsStreamHealthFailure(v1::OutcomeClass c) {
  if (IsPlatformVisibleFailure(c)) return true;
  // Failures before the request reached the platform.
  switch (c) {
    case v1::CONNECT_ERROR:
    case v1::TLS_ERROR:
    case v1::DNS_ERROR:
      return true;
    default:
      return false;
  }
}

bool IsPlatformVisibleFailure(v1::OutcomeClass c) {
  switch (c) {
    case v1::HTTP_5XX:
    case v1::TRUNCATED:
    case v1::RESET:
    case v1::STALLED:
    case v1::TIMEOUT:
    case v1::INTEGRITY:
      return true;
    default:
      return false;
  }
}

bool IsTrial(v1::OutcomeClass c) {
  return c != v1::AGENT_ERROR && c != v1::OUTCOME_CLASS_UNSPECIFIED &&
         v1::OutcomeClass_IsValid(c);
}

uint64_t ClassCounts::Trials() const { return CountOf(by_class, IsTrial); }

uint64_t ClassCounts::StreamHealthFailures() const {
  return CountOf(by_class, IsStreamHealthFailure);
}

absl::StatusOr<std::unique_ptr<VerdictEngine>> VerdictEngine::Create(
    const v1::DetectionConfig& config, int expected_streams) {
  FC_ASSIGN_OR_RETURN(const v1::DetectionConfig resolved,
                      ResolveEngineConfig(config, expected_streams));
  return std::unique_ptr<VerdictEngine>(
      new VerdictEngineImpl(resolved, expected_streams));
}

absl::StatusOr<std::unique_ptr<VerdictEngine>> VerdictEngine::Restore(
    const v1::DetectionConfig& config, int expected_streams,
    const v1::DetectorState& state) {
  FC_ASSIGN_OR_RETURN(const v1::DetectionConfig resolved,
                      ResolveEngineConfig(config, expected_streams));
  auto engine = std::make_unique<VerdictEngineImpl>(resolved, expected_streams);
  FC_RETURN_IF_ERROR(engine->LoadState(state));
  return std::unique_ptr<VerdictEngine>(std::move(engine));
}

}  // namespace fleetcanary::analysis
