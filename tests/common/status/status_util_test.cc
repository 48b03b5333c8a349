#include "common/status/status_util.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  FC_ASSIGN_OR_RETURN(int half, Half(x));
  FC_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  FC_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusUtilTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(StatusUtilTest, GrpcRoundTripKeepsCodeAndMessage) {
  for (auto code :
       {absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
        absl::StatusCode::kFailedPrecondition,
        absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kUnauthenticated}) {
    absl::Status s(code, "field x: bad");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(code));
    EXPECT_EQ(g.error_message(), "field x: bad");
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusUtilTest, AnnotatePrefixes) {
  EXPECT_EQ(Annotate(absl::NotFoundError("x"), "loading f").message(),
            "loading f: x");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

}  // namespace
}  // namespace fleetcanary
