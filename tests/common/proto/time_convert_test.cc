#include "common/proto/time_convert.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

google::protobuf::Timestamp Ts(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(nanos);
  return ts;
}

google::protobuf::Duration Dur(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

TEST(TimeConvertTest, TimestampRoundTripsToTheNanosecond) {
  const absl::Time t =
      absl::FromUnixSeconds(1706745600) + absl::Nanoseconds(123456789);
  const google::protobuf::Timestamp ts = TimeToProto(t);
  EXPECT_EQ(ts.seconds(), 1706745600);
  EXPECT_EQ(ts.nanos(), 123456789);
  EXPECT_EQ(TimeFromProto(ts), t);
}

TEST(TimeConvertTest, TimestampBeforeEpochIsNormalized) {
  const google::protobuf::Timestamp ts =
      TimeToProto(absl::UnixEpoch() - absl::Milliseconds(1500));
  EXPECT_EQ(ts.seconds(), -2);
  EXPECT_EQ(ts.nanos(), 500000000);
  EXPECT_EQ(TimeFromProto(ts), absl::UnixEpoch() - absl::Milliseconds(1500));
}

TEST(TimeConvertTest, TimestampRoundsDownBelowANanosecond) {
  const google::protobuf::Timestamp ts =
      TimeToProto(absl::UnixEpoch() - absl::Nanoseconds(1) / 2);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999999999);
}

TEST(TimeConvertTest, InfiniteTimesSaturate) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  const int64_t min = std::numeric_limits<int64_t>::min();
  const google::protobuf::Timestamp future =
      TimeToProto(absl::InfiniteFuture());
  EXPECT_EQ(future.seconds(), max / 1000000000);
  EXPECT_EQ(future.nanos(), max % 1000000000);
  const google::protobuf::Timestamp past = TimeToProto(absl::InfinitePast());
  EXPECT_EQ(past.seconds(), min / 1000000000 - 1);
  EXPECT_EQ(past.nanos(), 1000000000 + min % 1000000000);
}

TEST(TimeConvertTest, TimestampFarOutsideNanosecondRangeIsExact) {
  // 9999-12-31T23:59:59Z, the largest valid Timestamp.
  EXPECT_EQ(TimeFromProto(Ts(253402300799, 0)),
            absl::FromUnixSeconds(253402300799));
}

TEST(TimeConvertTest, DefaultTimestampIsUnsetAndTheEpoch) {
  EXPECT_FALSE(IsSet(google::protobuf::Timestamp()));
  EXPECT_EQ(TimeFromProto(google::protobuf::Timestamp()), absl::UnixEpoch());
  EXPECT_TRUE(IsSet(Ts(0, 1)));
  EXPECT_TRUE(IsSet(Ts(-1, 0)));
}

TEST(TimeConvertTest, TimestampToUnixMicrosTruncates) {
  EXPECT_EQ(TimestampToUnixMicros(Ts(12, 345678999)), 12345678);
  EXPECT_EQ(TimestampToUnixMicros(Ts(-1, 999999)), -999001);
}

TEST(TimeConvertTest, DurationRoundTrips) {
  const absl::Duration d = absl::Seconds(90) + absl::Nanoseconds(7);
  const google::protobuf::Duration p = DurationToProto(d);
  EXPECT_EQ(p.seconds(), 90);
  EXPECT_EQ(p.nanos(), 7);
  EXPECT_EQ(DurationFromProto(p), d);
}

TEST(TimeConvertTest, NegativeDurationSharesItsSign) {
  const google::protobuf::Duration p =
      DurationToProto(-absl::Milliseconds(1500));
  EXPECT_EQ(p.seconds(), -1);
  EXPECT_EQ(p.nanos(), -500000000);
  EXPECT_EQ(DurationFromProto(p), -absl::Milliseconds(1500));
}

TEST(TimeConvertTest, InfiniteDurationSaturates) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  const google::protobuf::Duration p =
      DurationToProto(absl::InfiniteDuration());
  EXPECT_EQ(p.seconds(), max / 1000000000);
  EXPECT_EQ(p.nanos(), max % 1000000000);
}

TEST(TimeConvertTest, DurationFromProtoOrFallsBackOnZeroOnly) {
  EXPECT_EQ(DurationFromProtoOr(Dur(0, 0), absl::Seconds(5)), absl::Seconds(5));
  EXPECT_EQ(DurationFromProtoOr(Dur(0, 1), absl::Seconds(5)),
            absl::Nanoseconds(1));
  EXPECT_EQ(DurationFromProtoOr(Dur(-2, 0), absl::Seconds(5)),
            absl::Seconds(-2));
}

}  // namespace
}  // namespace fleetcanary
