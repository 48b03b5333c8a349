#include "analysis/detectors/state_io.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "common/units/units.h"

namespace fleetcanary::analysis::detectors {
namespace {

constexpr int64_t kInfinitePastSeconds = std::numeric_limits<int64_t>::min();
constexpr int64_t kInfiniteFutureSeconds = std::numeric_limits<int64_t>::max();

}  // namespace

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("detector state: ", where, ": ", what));
}

std::string Field(absl::string_view where, absl::string_view name) {
  return absl::StrCat(where, ".", name);
}

void SaveTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) {
    out->set_seconds(kInfinitePastSeconds);
    out->set_nanos(0);
    return;
  }
  if (t == absl::InfiniteFuture()) {
    out->set_seconds(kInfiniteFutureSeconds);
    out->set_nanos(0);
    return;
  }
  const int64_t secs = absl::ToUnixSeconds(t);  // Rounds down.
  out->set_seconds(secs);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(secs))));
}

absl::StatusOr<absl::Time> LoadTime(bool has,
                                    const google::protobuf::Timestamp& ts,
                                    absl::string_view where) {
  if (!has) return Invalid(where, "missing");
  if (ts.nanos() == 0 && ts.seconds() == kInfinitePastSeconds) {
    return absl::InfinitePast();
  }
  if (ts.nanos() == 0 && ts.seconds() == kInfiniteFutureSeconds) {
    return absl::InfiniteFuture();
  }
  if (ts.nanos() < 0 || ts.nanos() >= 1000000000) {
    return Invalid(where, absl::StrCat("nanos ", ts.nanos(), " out of range"));
  }
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::Status CheckCounts(uint64_t trials, uint64_t failures,
                         absl::string_view where) {
  if (failures > trials) {
    return Invalid(where,
                   absl::StrCat("failures ", failures, " > trials ", trials));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(double v, absl::string_view where) {
  if (!std::isfinite(v)) return Invalid(where, "not finite");
  return absl::OkStatus();
}

absl::Status CheckRate(double v, absl::string_view where) {
  if (!(v > 0 && v < 1)) {
    return Invalid(where, absl::StrCat("rate ", v, " is not in (0, 1)"));
  }
  return absl::OkStatus();
}

void SaveBin(const TimedBin& b, v1::TimedBinState* out) {
  SaveTime(b.time, out->mutable_time());
  out->set_trials(b.trials);
  out->set_failures(b.failures);
}

absl::StatusOr<TimedBin> LoadBin(const v1::TimedBinState& in,
                                 absl::string_view where) {
  TimedBin b;
  FC_ASSIGN_OR_RETURN(b.time,
                      LoadTime(in.has_time(), in.time(), Field(where, "time")));
  FC_RETURN_IF_ERROR(CheckCounts(in.trials(), in.failures(), where));
  b.trials = in.trials();
  b.failures = in.failures();
  return b;
}

void SaveCusum(const BernoulliCusum& c, v1::CusumState* out) {
  const BernoulliCusum::State s = c.state();
  out->set_p0(s.p0);
  out->set_p1(s.p1);
  out->set_h(s.h);
  out->set_statistic(s.statistic);
  out->set_steps(s.steps);
  out->set_last_zero_step(s.last_zero_step);
  out->set_alarm_statistic(s.alarm_statistic);
  out->set_alarm_onset_step(s.alarm_onset_step);
}

absl::StatusOr<BernoulliCusum> LoadCusum(const v1::CusumState& in,
                                         absl::string_view where) {
  BernoulliCusum::State s;
  s.p0 = in.p0();
  s.p1 = in.p1();
  s.h = in.h();
  s.statistic = in.statistic();
  s.steps = in.steps();
  s.last_zero_step = in.last_zero_step();
  s.alarm_statistic = in.alarm_statistic();
  s.alarm_onset_step = in.alarm_onset_step();
  absl::StatusOr<BernoulliCusum> c = BernoulliCusum::FromState(s);
  if (!c.ok()) return Invalid(where, c.status().message());
  return c;
}

void SaveFix(const FixConfirmation& f, v1::FixConfirmationState* out) {
  const FixConfirmation::State s = f.state();
  out->set_p_bad(s.p_bad);
  for (double g : s.p_goods) out->add_p_goods(g);
  out->set_alpha(s.alpha);
  for (double l : s.llr) out->add_log_lr(l);
  out->set_trials(s.trials);
  out->set_failures(s.failures);
  out->set_confirmed(s.confirmed);
}

absl::StatusOr<FixConfirmation> LoadFix(const v1::FixConfirmationState& in,
                                        absl::string_view where) {
  FixConfirmation::State s;
  s.p_bad = in.p_bad();
  s.p_goods.assign(in.p_goods().begin(), in.p_goods().end());
  s.alpha = in.alpha();
  s.llr.assign(in.log_lr().begin(), in.log_lr().end());
  s.trials = in.trials();
  s.failures = in.failures();
  s.confirmed = in.confirmed();
  absl::StatusOr<FixConfirmation> f = FixConfirmation::FromState(s);
  if (!f.ok()) return Invalid(where, f.status().message());
  return f;
}

bool InEpisode(v1::VerdictState state) {
  return state == v1::REGRESSION || state == v1::RECOVERING ||
         state == v1::FIX_CONFIRMED;
}

absl::Status CheckStateKey(const v1::StreamKey& key, v1::VerdictKind kind,
                           absl::string_view where) {
  const std::string field = Field(where, "key");
  if (key.region().empty()) return Invalid(field, "region is empty");
  if (key.target().empty()) return Invalid(field, "target is empty");
  const bool has_mode =
      key.mode() == v1::BUFFERED || key.mode() == v1::RESPONSE_STREAM;
  const bool need_mode = kind != v1::MODE_DIFFERENCE;
  if (need_mode ? !has_mode : key.mode() != v1::INVOKE_MODE_UNSPECIFIED) {
    return Invalid(field, absl::StrCat("mode ", static_cast<int>(key.mode()),
                                       " does not fit the verdict kind"));
  }
  const bool need_size =
      kind == v1::STREAM_HEALTH || kind == v1::MODE_DIFFERENCE;
  if (!need_size) {
    if (!key.size_class().empty()) return Invalid(field, "size_class is set");
    return absl::OkStatus();
  }
  if (absl::StatusOr<uint64_t> bytes = ParseBytes(key.size_class());
      !bytes.ok()) {
    return Invalid(field,
                   absl::StrCat("size_class: ", bytes.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace fleetcanary::analysis::detectors
