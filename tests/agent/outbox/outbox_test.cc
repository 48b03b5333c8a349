#include "agent/outbox/outbox.h"

#include <unistd.h>

#include <cstdio>
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
    for (const char* suffix : {"", "-wal", "-shm"}) {
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

}  // namespace
}  // namespace agent
}  // namespace fleetcanary
