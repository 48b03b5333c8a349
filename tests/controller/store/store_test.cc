#include "controller/store/store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace controller {
namespace {

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/store_test_", getpid(), "_", name,
                      ".db");
}

void RemoveDb(const std::string& path) {
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
}

v1::Outcome MakeOutcome(uint64_t seq, v1::OutcomeClass cls, int64_t start_s) {
  v1::Outcome o;
  o.set_sequence(seq);
  o.set_agent_id("a1");
  o.set_region("r1");
  o.set_target("t");
  o.set_mode(v1::RESPONSE_STREAM);
  o.set_requested_bytes(1024);
  o.set_probe_id(absl::StrCat("p", seq));
  o.mutable_start_time()->set_seconds(start_s);
  o.mutable_timings()->mutable_headers_received()->set_nanos(20000000);
  o.mutable_timings()->mutable_total()->set_nanos(120000000);
  o.set_received_bytes(cls == v1::OK ? 1024 : 10);
  o.set_outcome_class(cls);
  return o;
}

StreamKey Key() { return {"r1", "t", v1::RESPONSE_STREAM, 1024, false}; }

class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    path_ = TempPath(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : path_) {
      if (c == '/' && &c > &path_[::testing::TempDir().size()]) c = '_';
    }
    RemoveDb(path_);
    store_ = Open();
  }
  void TearDown() override {
    store_.reset();
    RemoveDb(path_);
  }
  bool sqlite() const { return GetParam(); }
  std::unique_ptr<Store> Open() {
    if (!sqlite()) return CreateMemoryStore();
    auto s = CreateSqliteStore({path_});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // Closes and reopens the SQLite file (no-op for memory).
  void Reopen() {
    if (!sqlite()) return;
    store_.reset();
    store_ = Open();
  }

  std::string path_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, CommitAddsAggregatesTotalsAndWatermarks) {
  WriteBatch b;
  StreamStats s;
  s.Add(MakeOutcome(1, v1::OK, 120));
  s.Add(MakeOutcome(2, v1::HTTP_5XX, 121));
  b.minutes.push_back({Key(), 2, s});
  b.failures.push_back(MakeOutcome(2, v1::HTTP_5XX, 121));
  b.agents.push_back({"a1", "r1", 2, 0, absl::FromUnixSeconds(5)});
  b.counter_deltas["ingest_batches_total"] = 1;
  ASSERT_TRUE(store_->Commit(b, nullptr).ok());
  WriteBatch b2;
  StreamStats s2;
  s2.Add(MakeOutcome(3, v1::OK, 185));
  b2.minutes.push_back({Key(), 3, s2});
  b2.agents.push_back({"a1", "r1", 3, 4, absl::FromUnixSeconds(6)});
  b2.counter_deltas["ingest_batches_total"] = 1;
  ASSERT_TRUE(store_->Commit(b2, nullptr).ok());
  Reopen();

  auto agents = store_->LoadAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_EQ((*agents)[0].applied_sequence, 3u);
  EXPECT_EQ((*agents)[0].dropped_total, 4u);

  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_EQ((*totals)[0].key, Key());
  EXPECT_EQ((*totals)[0].stats.counts[v1::OK], 2u);
  EXPECT_EQ((*totals)[0].stats.counts[v1::HTTP_5XX], 1u);
  EXPECT_EQ((*totals)[0].stats.ttfb.count(), 3u);
  EXPECT_EQ((*totals)[0].stats.received_bytes, 1024u * 2 + 10);
  StreamStats expected = s;
  expected.Merge(s2);
  EXPECT_EQ((*totals)[0].stats, expected);

  auto minutes = store_->QueryStreamMinutes(0, 100);
  ASSERT_TRUE(minutes.ok());
  ASSERT_EQ(minutes->size(), 2u);
  EXPECT_EQ((*minutes)[0].minute, 2);
  EXPECT_EQ((*minutes)[0].stats, s);
  EXPECT_EQ((*minutes)[1].minute, 3);

  auto failures = store_->QueryFailures(absl::UnixEpoch(), 10);
  ASSERT_TRUE(failures.ok());
  ASSERT_EQ(failures->size(), 1u);
  EXPECT_EQ((*failures)[0].probe_id(), "p2");

  auto counters = store_->LoadCounters();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ((*counters)["ingest_batches_total"], 2);
}

TEST_P(StoreTest, PlatformSamplesUpsertAndReportPrevious) {
  v1::PlatformMetricSample s;
  s.set_region("r1");
  s.set_target("t");
  s.set_mode(v1::RESPONSE_STREAM);
  s.set_metric("Errors");
  s.set_stat("Sum");
  s.mutable_period_start()->set_seconds(600);
  s.set_value(3);
  WriteBatch b;
  b.platform_samples.push_back(s);
  CommitResult r;
  ASSERT_TRUE(store_->Commit(b, &r).ok());
  ASSERT_EQ(r.platform_previous.size(), 1u);
  EXPECT_EQ(r.platform_previous[0], 0);
  b.platform_samples[0].set_value(5);
  ASSERT_TRUE(store_->Commit(b, &r).ok());
  EXPECT_EQ(r.platform_previous[0], 3);
  Reopen();
  auto samples = store_->QueryPlatformSamples(absl::FromUnixSeconds(0),
                                              absl::FromUnixSeconds(601));
  ASSERT_TRUE(samples.ok());
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_EQ((*samples)[0].value(), 5);
}

TEST_P(StoreTest, FleetSaveLoadDelete) {
  v1::Target t;
  t.set_name("canary");
  t.add_regions()->set_region("r1");
  v1::Schedule s1, s2;
  s1.set_id("s1");
  s1.set_target("canary");
  s2.set_id("s2");
  s2.set_target("canary");
  ASSERT_TRUE(store_->SaveFleet({t}, {s1, s2}, {}).ok());
  ASSERT_TRUE(store_->SaveFleet({}, {}, {"s1"}).ok());
  Reopen();
  auto fleet = store_->LoadFleet();
  ASSERT_TRUE(fleet.ok());
  ASSERT_EQ(fleet->targets_size(), 1);
  ASSERT_EQ(fleet->schedules_size(), 1);
  EXPECT_EQ(fleet->schedules(0).id(), "s2");
}

TEST_P(StoreTest, VerdictHistoryAndPrune) {
  for (int i = 0; i < 3; ++i) {
    v1::Verdict v;
    v.set_kind(v1::STREAM_HEALTH);
    v.set_state(v1::SUSPECT);
    v.mutable_updated()->set_seconds(1000 + i * 1000);
    ASSERT_TRUE(store_->AppendVerdict(v).ok());
  }
  WriteBatch b;
  StreamStats s;
  s.Add(MakeOutcome(1, v1::RESET, 60));
  b.minutes.push_back({Key(), 0, s});
  b.minutes.push_back({Key(), 100, s});
  b.failures.push_back(MakeOutcome(1, v1::RESET, 60));
  b.failures.push_back(MakeOutcome(2, v1::RESET, 2900));
  ASSERT_TRUE(store_->Commit(b, nullptr).ok());

  RetentionOptions retention;
  retention.raw_retention = absl::Seconds(1500);
  retention.aggregate_retention = absl::Seconds(3000);
  auto pruned = store_->Prune(absl::FromUnixSeconds(3100), retention);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->verdicts_deleted, 1);  // updated 1000 < 1600.
  EXPECT_EQ(pruned->failures_deleted, 1);
  EXPECT_EQ(pruned->minutes_deleted, 1);  // Minute 0 < minute of 100 s.
  auto verdicts = store_->ListVerdicts(absl::UnixEpoch(), 10);
  ASSERT_TRUE(verdicts.ok());
  EXPECT_EQ(verdicts->size(), 2u);
  // Totals are never pruned.
  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ((*totals)[0].stats.probes(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Impl, StoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Sqlite" : "Memory";
                         });

TEST(SqliteStoreTest, RefusesNewerSchema) {
  const std::string path = TempPath("newer");
  RemoveDb(path);
  {
    auto s = CreateSqliteStore({path});
    ASSERT_TRUE(s.ok());
  }
  {
    // Bump user_version behind the store's back.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  EXPECT_EQ(CreateSqliteStore({path}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(CreateSqliteStore({"/nonexistent-dir/x/y.db"}).ok());
  EXPECT_EQ(CreateSqliteStore({""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  RemoveDb(path);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
