// The helpers daemons use around their flags (daemon_flags.h).
#include <signal.h>

#include <string>

#include "common/flags/daemon_flags.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

TEST(OverrideFromFlagTest, EmptyFlagKeepsTheConfigValue) {
  std::string field = "from-config";
  OverrideFromFlag("", &field);
  EXPECT_EQ(field, "from-config");
  OverrideFromFlag("from-flag", &field);
  EXPECT_EQ(field, "from-flag");
}

TEST(OverrideFromFlagTest, DurationFlag) {
  google::protobuf::Duration d;
  d.set_seconds(7);
  EXPECT_TRUE(OverrideFromFlag("", "heartbeat_interval", &d).ok());
  EXPECT_EQ(d.seconds(), 7);
  ASSERT_TRUE(OverrideFromFlag("1m30s", "heartbeat_interval", &d).ok());
  EXPECT_EQ(d.seconds(), 90);
  EXPECT_EQ(d.nanos(), 0);
  ASSERT_TRUE(OverrideFromFlag("250ms", "heartbeat_interval", &d).ok());
  EXPECT_EQ(d.seconds(), 0);
  EXPECT_EQ(d.nanos(), 250000000);
}

TEST(OverrideFromFlagTest, BadDurationNamesTheFlagAndKeepsTheField) {
  google::protobuf::Duration d;
  d.set_seconds(7);
  absl::Status s = OverrideFromFlag("soon", "reconnect_min", &d);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("--reconnect_min: ", 0), 0u) << s;
  EXPECT_EQ(d.seconds(), 7);
}

TEST(BlockStopSignalsTest, BlocksTermAndInt) {
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  const sigset_t set = BlockStopSignals();
  EXPECT_EQ(sigismember(&set, SIGTERM), 1);
  EXPECT_EQ(sigismember(&set, SIGINT), 1);
  EXPECT_EQ(sigismember(&set, SIGHUP), 0);
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, nullptr, &now);
  EXPECT_EQ(sigismember(&now, SIGTERM), 1);
  EXPECT_EQ(sigismember(&now, SIGINT), 1);
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

}  // namespace
}  // namespace fleetcanary
