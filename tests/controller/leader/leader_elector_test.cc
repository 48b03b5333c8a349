#include "controller/leader/leader_elector.h"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace controller {
namespace {

// Two replicas: two Store objects (connections) on one SQLite file, each
// with its own elector, on one simulated clock.
class LeaderElectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(
        ::testing::TempDir(), "/leader_", getpid(), "_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".db");
    Remove();
    for (auto* s : {&store_a_, &store_b_}) {
      auto opened = CreateSqliteStore({path_});
      ASSERT_TRUE(opened.ok()) << opened.status();
      *s = std::move(*opened);
    }
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    store_a_.reset();
    store_b_.reset();
    Remove();
  }
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::remove((path_ + suffix).c_str());
    }
  }
  std::unique_ptr<LeaderElector> Elector(const std::string& id, Store* store,
                                         ControllerMetrics* metrics,
                                         std::function<void()> on_lost = {}) {
    LeaderElectorOptions o;
    o.replica_id = id;
    o.address = id + ":7443";
    o.lease = absl::Seconds(10);
    o.renew_interval = absl::Seconds(2);
    o.on_lost = std::move(on_lost);
    auto e = LeaderElector::Create(o, store, metrics, &clock_);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  static WriteBatch Batch(uint64_t seq) {
    WriteBatch b;
    b.agents.push_back({"agent", "r1", seq, 0, absl::FromUnixSeconds(1)});
    return b;
  }

  SimulatedClock clock_{absl::FromUnixSeconds(100000)};
  std::string path_;
  std::unique_ptr<Store> store_a_, store_b_;
  ControllerMetrics metrics_a_, metrics_b_;
  std::unique_ptr<LeaderElector> a_, b_;
};

TEST_F(LeaderElectorTest, OneLeaderStandbyTakesOverOnRelease) {
  a_ = Elector("a", store_a_.get(), &metrics_a_);
  auto lease = a_->AwaitLeadership();
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->epoch, 1);
  b_ = Elector("b", store_b_.get(), &metrics_b_);
  // b reads the lease at once: it learns who leads (what it tells agents)
  // and stays a standby.
  ASSERT_TRUE(testing::WaitUntil([&] { return b_->lease().holder == "a"; }));
  EXPECT_FALSE(b_->is_leader());
  EXPECT_EQ(b_->lease().address, "a:7443");
  EXPECT_TRUE(store_a_->Commit(Batch(1), nullptr).ok());

  a_->Shutdown();  // Releases the lease.
  absl::Notification led;
  std::thread waiter([&] {
    ASSERT_TRUE(b_->AwaitLeadership().ok());
    led.Notify();
  });
  // Time moves (b retries every 2 s) until b leads. b's thread may be busy
  // in the store when a step lands, so time is moved by hand until the event.
  ASSERT_TRUE(testing::WaitUntil([&] {
    clock_.AdvanceTime(absl::Seconds(1));
    return led.HasBeenNotified();
  }));
  waiter.join();
  EXPECT_EQ(b_->lease().epoch, 2);
  // The old leader's writes are fenced; the new leader's are not.
  EXPECT_EQ(store_a_->Commit(Batch(2), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_b_->Commit(Batch(3), nullptr).ok());
  auto agents = store_b_->LoadAgents();
  ASSERT_TRUE(agents.ok());
  EXPECT_EQ((*agents)[0].applied_sequence, 3u);
}

// Another replica took the lease (as after this one stalled past it): the
// elector gives leadership up once, and its store stays fenced.
TEST_F(LeaderElectorTest, LosingTheLeaseCallsOnLost) {
  absl::Notification lost;
  a_ = Elector("a", store_a_.get(), &metrics_a_, [&] { lost.Notify(); });
  ASSERT_TRUE(a_->AwaitLeadership().ok());
  // "b" takes the lease at a time when a's lease has run out.
  auto taken = store_b_->AcquireLease(
      "b", "b:7443", clock_.Now() + absl::Hours(1), absl::Hours(2));
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->holder, "b");
  // a's next renewal finds the lease taken (its thread then ends, so time
  // is moved by hand rather than stepped and settled).
  ASSERT_TRUE(testing::WaitUntil([&] {
    clock_.AdvanceTime(absl::Seconds(1));
    return lost.HasBeenNotified();
  }));
  EXPECT_FALSE(a_->is_leader());
  EXPECT_EQ(a_->lease().holder, "b");
  EXPECT_EQ(store_a_->Commit(Batch(1), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeaderElectorTest, RejectsBadOptions) {
  LeaderElectorOptions o;
  EXPECT_EQ(LeaderElector::Create(o, store_a_.get(), &metrics_a_, &clock_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  o.replica_id = "a";
  o.address = "a:1";
  o.lease = absl::ZeroDuration();
  EXPECT_EQ(LeaderElector::Create(o, store_a_.get(), &metrics_a_, &clock_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
