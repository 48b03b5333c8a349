#include "common/grpc/write_queue.h"

#include <string>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using Queue = WriteQueue<std::string>;

TEST(WriteQueueTest, WritesOneAtATimeInOrder) {
  Queue q;
  Queue::Step step = q.Push("a");
  ASSERT_NE(step.write, nullptr);
  EXPECT_EQ(*step.write, "a");
  EXPECT_EQ(q.Push("b").write, nullptr);  // "a" is in flight.
  EXPECT_EQ(q.Push("c").write, nullptr);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.in_flight(), "a");

  step = q.WriteDone(true);
  ASSERT_NE(step.write, nullptr);
  EXPECT_EQ(*step.write, "b");
  EXPECT_FALSE(step.finish);
  step = q.WriteDone(true);
  ASSERT_NE(step.write, nullptr);
  EXPECT_EQ(*step.write, "c");
  step = q.WriteDone(true);
  EXPECT_EQ(step.write, nullptr);
  EXPECT_FALSE(step.finish);
  EXPECT_EQ(q.size(), 0u);

  // Idle again: the next message is written at once.
  step = q.Push("d");
  ASSERT_NE(step.write, nullptr);
  EXPECT_EQ(*step.write, "d");
}

TEST(WriteQueueTest, WritePointerSurvivesLaterPushes) {
  Queue q;
  const std::string* first = q.Push("first").write;
  for (int i = 0; i < 1000; ++i) q.Push(std::to_string(i));
  EXPECT_EQ(*first, "first");
}

TEST(WriteQueueTest, FinishWhenIdleIsImmediate) {
  Queue q;
  Queue::Step step = q.RequestFinish(grpc::Status::OK);
  EXPECT_TRUE(step.finish);
  EXPECT_TRUE(step.status.ok());
  EXPECT_TRUE(q.finish_requested());
  EXPECT_FALSE(q.accepting());
}

TEST(WriteQueueTest, FinishWaitsForQueuedWritesAndHappensOnce) {
  Queue q;
  q.Push("a");
  q.Push("b");
  Queue::Step step = q.RequestFinish(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow"));
  EXPECT_FALSE(step.finish);
  // Dropped after the request; what was queued before is still written.
  EXPECT_EQ(q.Push("c").write, nullptr);
  EXPECT_EQ(q.size(), 2u);

  step = q.WriteDone(true);
  ASSERT_NE(step.write, nullptr);
  EXPECT_EQ(*step.write, "b");
  EXPECT_FALSE(step.finish);
  step = q.WriteDone(true);
  EXPECT_EQ(step.write, nullptr);
  ASSERT_TRUE(step.finish);
  EXPECT_EQ(step.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // The first request's status wins, and Finish is never named twice.
  EXPECT_FALSE(q.RequestFinish(grpc::Status::OK).finish);
}

TEST(WriteQueueTest, FailedWriteFinishesWithUnavailable) {
  Queue q;
  q.Push("a");
  q.Push("b");
  Queue::Step step = q.WriteDone(false);
  EXPECT_EQ(step.write, nullptr);  // "b" is dropped.
  ASSERT_TRUE(step.finish);
  EXPECT_EQ(step.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(step.status.error_message(), "write failed");
  EXPECT_TRUE(q.broken());
  EXPECT_FALSE(q.accepting());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.Push("c").write, nullptr);
}

TEST(WriteQueueTest, FailedWriteKeepsAnEarlierFinishStatus) {
  Queue q;
  q.Push("a");
  q.RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  Queue::Step step = q.WriteDone(false);
  ASSERT_TRUE(step.finish);
  EXPECT_EQ(step.status.error_code(), grpc::StatusCode::CANCELLED);
}

TEST(WriteQueueTest, WaitPolicyLeavesFinishToTheOwner) {
  Queue q(Queue::OnBroken::kWait);
  q.Push("a");
  q.Push("b");
  Queue::Step step = q.WriteDone(false);
  EXPECT_EQ(step.write, nullptr);
  EXPECT_FALSE(step.finish);
  EXPECT_TRUE(q.broken());
  EXPECT_FALSE(q.finish_requested());
  EXPECT_FALSE(q.accepting());

  step = q.RequestFinish(grpc::Status::OK);
  EXPECT_TRUE(step.finish);
  EXPECT_TRUE(step.status.ok());
}

}  // namespace
}  // namespace fleetcanary
