// OutsideOpsHold: who removes the hold, and when.
#include "common/grpc/outside_ops_hold.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

TEST(OutsideOpsHoldTest, TheEndReleasesWhenNothingIsBeingStarted) {
  OutsideOpsHold hold;
  ASSERT_TRUE(hold.Begin());
  EXPECT_FALSE(hold.End());  // The stream goes on: keep the hold.
  EXPECT_TRUE(hold.Ended());
  EXPECT_FALSE(hold.Begin());  // Nothing is started after the end.
  EXPECT_FALSE(hold.Ended());  // Released once only.
}

TEST(OutsideOpsHoldTest, AnOperationStartedAcrossTheEndReleasesAfterIt) {
  OutsideOpsHold hold;
  ASSERT_TRUE(hold.Begin());
  ASSERT_TRUE(hold.Begin());
  EXPECT_FALSE(hold.Ended());  // Two writes are being started.
  EXPECT_FALSE(hold.Begin());
  EXPECT_FALSE(hold.End());
  EXPECT_TRUE(hold.End());  // The last of them removes the hold.
  EXPECT_FALSE(hold.Begin());
}

}  // namespace
}  // namespace fleetcanary
