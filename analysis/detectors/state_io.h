// Saving and loading the pieces every detector's state is made of
// (proto/fleetcanary/v1/detector_state.proto): times, bins, CUSUMs and fix
// tests, and the checks a loaded state must pass. Each detector has
// `Save(proto*) const` and `static Load(proto, ..., where)`; `where` is the
// field path named in INVALID_ARGUMENT errors ("detector state: <where>:
// <what>"). Internal to the verdict engine; not a public API.
#ifndef FLEETCANARY_ANALYSIS_DETECTORS_STATE_IO_H_
#define FLEETCANARY_ANALYSIS_DETECTORS_STATE_IO_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "analysis/cusum.h"
#include "analysis/detectors/common.h"
#include "analysis/fix_confirmation.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "fleetcanary/v1/verdict.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace fleetcanary::analysis::detectors {

// INVALID_ARGUMENT "detector state: <where>: <what>".
absl::Status Invalid(absl::string_view where, absl::string_view what);
// "<where>.<name>": the path of field `name` of the message at `where`.
std::string Field(absl::string_view where, absl::string_view name);

// Infinite times as the sentinels documented in detector_state.proto; finite
// ones at nanosecond resolution.
void SaveTime(absl::Time t, google::protobuf::Timestamp* out);
// A required time field (`has` = the field is set); the inverse of SaveTime.
absl::StatusOr<absl::Time> LoadTime(bool has,
                                    const google::protobuf::Timestamp& ts,
                                    absl::string_view where);

// OK unless failures > trials.
absl::Status CheckCounts(uint64_t trials, uint64_t failures,
                         absl::string_view where);
// OK when `v` is finite.
absl::Status CheckFinite(double v, absl::string_view where);
// OK when `v` is a rate in (0, 1).
absl::Status CheckRate(double v, absl::string_view where);

void SaveBin(const TimedBin& b, v1::TimedBinState* out);
absl::StatusOr<TimedBin> LoadBin(const v1::TimedBinState& in,
                                 absl::string_view where);

void SaveCusum(const BernoulliCusum& c, v1::CusumState* out);
absl::StatusOr<BernoulliCusum> LoadCusum(const v1::CusumState& in,
                                         absl::string_view where);

void SaveFix(const FixConfirmation& f, v1::FixConfirmationState* out);
absl::StatusOr<FixConfirmation> LoadFix(const v1::FixConfirmationState& in,
                                        absl::string_view where);

// Whether a detector in `state` has an episode (and so a fix test).
bool InEpisode(v1::VerdictState state);

// OK when `key` has the shape the detectors of `kind` use (see
// verdict_engine.h): region and target set; a mode except for
// MODE_DIFFERENCE; a byte size class for STREAM_HEALTH and MODE_DIFFERENCE,
// none otherwise.
absl::Status CheckStateKey(const v1::StreamKey& key, v1::VerdictKind kind,
                           absl::string_view where);

}  // namespace fleetcanary::analysis::detectors

#endif  // FLEETCANARY_ANALYSIS_DETECTORS_STATE_IO_H_
