#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace {

constexpr int64_t kNanosPerSecond = 1000000000;

}  // namespace

absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

google::protobuf::Timestamp TimeToProto(absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  int64_t seconds = ns / kNanosPerSecond;
  int64_t nanos = ns % kNanosPerSecond;
  if (nanos < 0) {
    seconds -= 1;
    nanos += kNanosPerSecond;
  }
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(nanos));
  return out;
}

bool IsSet(const google::protobuf::Timestamp& ts) {
  return ts.seconds() != 0 || ts.nanos() != 0;
}

int64_t TimestampToUnixMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

absl::Duration DurationFromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::Duration DurationFromProtoOr(const google::protobuf::Duration& d,
                                   absl::Duration fallback) {
  if (d.seconds() == 0 && d.nanos() == 0) return fallback;
  return DurationFromProto(d);
}

google::protobuf::Duration DurationToProto(absl::Duration d) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  google::protobuf::Duration out;
  out.set_seconds(ns / kNanosPerSecond);
  out.set_nanos(static_cast<int32_t>(ns % kNanosPerSecond));
  return out;
}

}  // namespace fleetcanary
