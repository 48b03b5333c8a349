#include "common/proto/invoke_mode.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

TEST(InvokeModeNameTest, NamesBothModes) {
  EXPECT_EQ(InvokeModeName(v1::BUFFERED), "buffered");
  EXPECT_EQ(InvokeModeName(v1::RESPONSE_STREAM), "stream");
  EXPECT_EQ(InvokeModeName(v1::RESPONSE_STREAM, "-"), "stream");
}

TEST(InvokeModeNameTest, AnythingElseIsTheCallersWord) {
  EXPECT_EQ(InvokeModeName(v1::INVOKE_MODE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(InvokeModeName(v1::INVOKE_MODE_UNSPECIFIED, "-"), "-");
  EXPECT_EQ(InvokeModeName(static_cast<v1::InvokeMode>(7), "all modes"),
            "all modes");
  EXPECT_EQ(InvokeModeName(v1::INVOKE_MODE_UNSPECIFIED, ""), "");
}

}  // namespace
}  // namespace fleetcanary
