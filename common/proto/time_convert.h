// Conversions between the protobuf well-known time types
// (google.protobuf.Timestamp, google.protobuf.Duration) and absl::Time /
// absl::Duration: the one place fleetcanary turns one into the other.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_COMMON_PROTO_TIME_CONVERT_H_
#define FLEETCANARY_COMMON_PROTO_TIME_CONVERT_H_

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace fleetcanary {

// The instant `ts` names, exact to the nanosecond. An unset (all-zero)
// Timestamp is the Unix epoch.
absl::Time TimeFromProto(const google::protobuf::Timestamp& ts);

// `t` as a normalized Timestamp (0 <= nanos < 1e9), rounded down to the
// nanosecond. Times beyond the int64 nanosecond range (about year 1678 to
// 2262), absl::InfinitePast() and absl::InfiniteFuture() included, saturate
// to its ends.
google::protobuf::Timestamp TimeToProto(absl::Time t);

// Whether `ts` differs from the default (all-zero) Timestamp, the value of a
// field that was never set.
bool IsSet(const google::protobuf::Timestamp& ts);

// Microseconds since the Unix epoch, rounded toward zero (the unit the
// stores key rows by).
int64_t TimestampToUnixMicros(const google::protobuf::Timestamp& ts);

// The length `d` names, exact to the nanosecond.
absl::Duration DurationFromProto(const google::protobuf::Duration& d);

// Like DurationFromProto, but `fallback` when `d` is zero (an unset field).
absl::Duration DurationFromProtoOr(const google::protobuf::Duration& d,
                                   absl::Duration fallback);

// `d` as a Duration (seconds and nanos share its sign), truncated toward zero
// to the nanosecond. Lengths beyond the int64 nanosecond range (about 292
// years), absl::InfiniteDuration() included, saturate to its ends.
google::protobuf::Duration DurationToProto(absl::Duration d);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_PROTO_TIME_CONVERT_H_
