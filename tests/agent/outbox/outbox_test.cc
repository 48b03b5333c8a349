#include "agent/outbox/outbox.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace agent {
namespace {

v1::Outcome Make(int i, size_t detail_bytes = 0) {
  v1::Outcome o;
  o.set_probe_id(absl::StrCat("probe-", i));
  o.set_outcome_class(i % 3 ? v1::OK : v1::HTTP_5XX);
  o.set_detail(std::string(detail_bytes, 'x'));
  return o;
}

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    path_ = absl::StrCat(::testing::TempDir(), "/outbox_", getpid(), "_", name,
                         ".db");
    journal_ = path_ + ".journal";
    Cleanup();
  }
  void TearDown() override { Cleanup(); }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm", ".lost"}) {
      std::remove((path_ + suffix).c_str());
    }
    std::remove(journal_.c_str());
  }
  std::unique_ptr<Outbox> Open(uint64_t max_bytes = 0) {
    OutboxOptions o;
    o.path = path_;
    o.max_bytes = max_bytes;
    o.journal_path = journal_;
    auto box = Outbox::Create(o);
    EXPECT_TRUE(box.ok()) << box.status();
    return box.ok() ? std::move(*box) : nullptr;
  }
  std::string path_, journal_;
};

TEST_F(OutboxTest, SequencesReadAckAndSurviveRestart) {
  {
    auto box = Open();
    for (int i = 1; i <= 10; ++i) {
      auto seq = box->Append(Make(i));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, static_cast<uint64_t>(i));
    }
    auto read = box->ReadAfter(3, 4, 1 << 20);
    ASSERT_TRUE(read.ok());
    ASSERT_EQ(read->size(), 4u);
    EXPECT_EQ((*read)[0].sequence(), 4u);
    EXPECT_EQ((*read)[0].probe_id(), "probe-4");
    ASSERT_TRUE(box->Ack(6).ok());
    ASSERT_TRUE(box->Ack(2).ok());  // Lower: ignored.
    EXPECT_EQ(box->stats().depth, 4u);
    EXPECT_EQ(box->stats().acked_sequence, 6u);
  }
  auto box = Open();
  OutboxStats s = box->stats();
  EXPECT_EQ(s.depth, 4u);
  EXPECT_EQ(s.last_sequence, 10u);
  EXPECT_EQ(s.acked_sequence, 6u);
  auto seq = box->Append(Make(11));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 11u);  // The counter survived the restart.
  auto read = box->ReadAfter(0, 100, 1 << 20);
  ASSERT_EQ(read->size(), 5u);
  EXPECT_EQ(read->front().sequence(), 7u);
  // Everything acknowledged: the counter still survives an empty outbox.
  ASSERT_TRUE(box->Ack(11).ok());
  box.reset();
  box = Open();
  EXPECT_EQ(*box->Append(Make(12)), 12u);
}

TEST_F(OutboxTest, BoundDropsOldestAndCountsPersistently) {
  {
    auto box = Open(/*max_bytes=*/10000);
    box->ResetSent(0);  // As after a Welcome with nothing committed.
    for (int i = 1; i <= 100; ++i) ASSERT_TRUE(box->Append(Make(i, 500)).ok());
    OutboxStats s = box->stats();
    EXPECT_LE(s.bytes, 10000u);
    EXPECT_GT(s.dropped_total, 70u);
    EXPECT_EQ(s.depth + s.dropped_total, 100u);
    auto read = box->ReadAfter(0, 1000, 1 << 20);
    ASSERT_EQ(read->size(), s.depth);
    EXPECT_EQ(read->back().sequence(), 100u);
    EXPECT_EQ(read->front().sequence(), s.dropped_total + 1);  // Oldest gone.
  }
  auto box = Open(10000);
  OutboxStats s = box->stats();
  EXPECT_EQ(s.depth + s.dropped_total, 100u);
}

TEST_F(OutboxTest, NeverDropsWhatMayHaveBeenSent) {
  auto box = Open(/*max_bytes=*/5000);
  box->ResetSent(0);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(box->Append(Make(i, 500)).ok());
  box->MarkSent(5);  // In flight to the controller.
  for (int i = 6; i <= 30; ++i) ASSERT_TRUE(box->Append(Make(i, 500)).ok());
  auto read = box->ReadAfter(0, 1000, 1 << 20);
  ASSERT_TRUE(read.ok());
  // 1..5 kept; the drops are the oldest unsent ones, right after 5.
  for (int i = 0; i < 5; ++i) EXPECT_EQ((*read)[i].sequence(), i + 1u);
  const OutboxStats s = box->stats();
  EXPECT_GT(s.dropped_total, 0u);
  EXPECT_EQ((*read)[5].sequence(), 6 + s.dropped_total);
  EXPECT_EQ(read->back().sequence(), 30u);
  // A restart protects everything stored until the session's Welcome (only
  // the new, never-sent outcome can go).
  box.reset();
  box = Open(5000);
  const uint64_t dropped = box->stats().dropped_total;
  const size_t stored = box->ReadAfter(0, 1000, 1 << 20)->size();
  ASSERT_TRUE(box->Append(Make(31, 500)).ok());
  auto after = box->ReadAfter(0, 1000, 1 << 20);
  ASSERT_GE(after->size(), stored);
  EXPECT_EQ(after->front().sequence(), 1u);
  EXPECT_LE(box->stats().dropped_total, dropped + 1);
  box->ResetSent(0);
  const uint64_t before = box->stats().dropped_total;
  ASSERT_TRUE(box->Append(Make(32, 500)).ok());
  EXPECT_GT(box->stats().dropped_total, before);
  EXPECT_NE(box->ReadAfter(0, 1, 1 << 20)->front().sequence(), 1u);
}

// When everything stored is in flight, the bound drops the outcome just
// appended: it is never sent, so a flush waits for the last *stored*
// sequence, not the last assigned one (the drain used to time out).
TEST_F(OutboxTest, NewestDroppedWhenAllStoredAreInFlight) {
  auto box = Open(/*max_bytes=*/5000);
  box->ResetSent(0);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(box->Append(Make(i, 200)).ok());
  ASSERT_EQ(box->stats().dropped_total, 0u);
  auto sent = box->ReadForSend(0, 1000, 1 << 20);
  ASSERT_TRUE(sent.ok());
  const uint64_t in_flight = sent->back().sequence();
  ASSERT_TRUE(box->Append(Make(100, 6000)).ok());  // Over the bound alone.
  OutboxStats s = box->stats();
  EXPECT_EQ(s.last_sequence, in_flight + 1);
  EXPECT_EQ(s.dropped_total, 1u);
  EXPECT_EQ(s.last_stored_sequence, in_flight);
  ASSERT_TRUE(box->Ack(in_flight).ok());
  s = box->stats();
  EXPECT_EQ(s.depth, 0u);
  EXPECT_EQ(s.last_stored_sequence, in_flight);  // = acked: nothing to wait.
  EXPECT_LT(s.last_stored_sequence, s.last_sequence);
}

TEST_F(OutboxTest, AckBeyondLastSequenceNeverReusesSequences) {
  auto box = Open();
  ASSERT_TRUE(box->Append(Make(1)).ok());
  // The controller knows this agent id up to 500 (data dir was lost).
  ASSERT_TRUE(box->Ack(500).ok());
  EXPECT_EQ(*box->Append(Make(2)), 501u);
}

TEST_F(OutboxTest, JournalRecordsEveryAppend) {
  auto box = Open();
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(box->Append(Make(i)).ok());
  std::ifstream in(journal_);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    EXPECT_EQ(line.substr(0, line.find(' ')), absl::StrCat(n));
  }
  EXPECT_EQ(n, 5);
}

TEST_F(OutboxTest, BadPathIsAnError) {
  OutboxOptions o;
  EXPECT_EQ(Outbox::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.path = "/nonexistent-dir/x/outbox.db";
  EXPECT_FALSE(Outbox::Create(o).ok());
}

// A probe is recorded as started before it runs; if the agent dies before
// its outcome is appended, the next open turns the record into an
// AGENT_ERROR "interrupted" outcome, so the probe never vanishes.
TEST_F(OutboxTest, ProbeInterruptedByACrashBecomesAnAgentError) {
  {
    auto box = Open();
    v1::Outcome a = Make(1);
    a.set_target("canary");
    a.set_requested_bytes(1024);
    v1::Outcome b = Make(2);
    ASSERT_TRUE(box->MarkStarted(a).ok());
    ASSERT_TRUE(box->MarkStarted(b).ok());
    ASSERT_TRUE(box->Append(b).ok());  // b finished; a was running.
  }
  auto box = Open();
  auto read = box->ReadAfter(0, 100, 1 << 20);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].probe_id(), "probe-2");
  const v1::Outcome& interrupted = (*read)[1];
  EXPECT_EQ(interrupted.probe_id(), "probe-1");
  EXPECT_EQ(interrupted.outcome_class(), v1::AGENT_ERROR);
  EXPECT_EQ(interrupted.target(), "canary");
  EXPECT_EQ(interrupted.requested_bytes(), 1024u);
  EXPECT_NE(interrupted.detail().find("interrupted"), std::string::npos);
  // Only once.
  box.reset();
  box = Open();
  EXPECT_EQ(box->stats().depth, 2u);
}

// The WAL is checkpointed within its share of the bound: on a 1 MiB outbox
// it never grows past a quarter of it (SQLite's default lets it reach 4 MB).
TEST_F(OutboxTest, WalStaysWithinItsShareOfTheBound) {
  auto box = Open(/*max_bytes=*/1 << 20);
  uint64_t max_wal = 0;
  for (int i = 1; i <= 3000; ++i) {
    auto seq = box->Append(Make(i, 1000));
    ASSERT_TRUE(seq.ok());
    if (i % 10 == 0) {
      ASSERT_TRUE(box->Ack(*seq).ok());
    }
    struct stat st;
    if (stat((path_ + "-wal").c_str(), &st) == 0) {
      max_wal = std::max<uint64_t>(max_wal, st.st_size);
    }
  }
  EXPECT_LE(max_wal, (1u << 20) / 4) << "WAL bytes";
  EXPECT_EQ(box->stats().dropped_total, 0u);
}

// A full disk: outcomes that cannot be stored are counted in a counter
// that survives restarts and is part of dropped_total (what the controller
// is told), so appended = stored + counted. Uses a 512 KiB tmpfs (root).
TEST_F(OutboxTest, DiskFullLosesNothingUncounted) {
  const std::string dir = path_ + ".mnt";
  std::filesystem::create_directories(dir);
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=512k") != 0) {
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << "cannot mount a tmpfs (needs root)";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() {
      umount2(dir.c_str(), MNT_DETACH);
      std::filesystem::remove_all(dir);
    }
  } unmount{dir};
  OutboxOptions o;
  o.path = dir + "/outbox.db";  // Default bound (256 MiB): the disk fills.
  uint64_t served = 0, failed = 0;
  {
    auto box = Outbox::Create(o);
    ASSERT_TRUE(box.ok()) << box.status();
    for (int i = 1; i <= 400; ++i) {
      ++served;
      if (!(*box)->Append(Make(i, 4000)).ok()) ++failed;
    }
    ASSERT_GT(failed, 0u) << "the disk never filled";
    const OutboxStats s = (*box)->stats();
    EXPECT_EQ(s.lost_total, failed);
    EXPECT_EQ(s.depth + s.dropped_total, served);
  }
  auto box = Outbox::Create(o);
  ASSERT_TRUE(box.ok()) << box.status();
  const OutboxStats s = (*box)->stats();
  EXPECT_EQ(s.lost_total, failed);
  EXPECT_EQ(s.depth + s.dropped_total, served);
  std::printf("disk full: %llu served, %llu stored, %llu counted lost\n",
              static_cast<unsigned long long>(served),
              static_cast<unsigned long long>(s.depth),
              static_cast<unsigned long long>(s.lost_total));
}

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
