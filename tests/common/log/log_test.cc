#include "common/log/log.h"

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

TEST(LogTest, FormatsOneStructuredLine) {
  EXPECT_EQ(FormatLogLine("agent_connected",
                          {{"agent", "a-1"}, {"region", "us-east-1"}}),
            "event=agent_connected agent=a-1 region=us-east-1");
}

TEST(LogTest, QuotesValuesThatNeedIt) {
  EXPECT_EQ(FormatLogLine("e", {{"msg", "two words"}, {"empty", ""}}),
            "event=e msg=\"two words\" empty=\"\"");
  EXPECT_EQ(FormatLogLine("e", {{"msg", "a\"b\nc"}}),
            "event=e msg=\"a\\\"b\\nc\"");
}

TEST(LogTest, LoggingDoesNotThrow) {
  SetLogLevel(LogLevel::kError);
  LogInfo("suppressed", {{"k", "v"}});
  LogError("written", {{"k", "v"}});
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace fleetcanary
