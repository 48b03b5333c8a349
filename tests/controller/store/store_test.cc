#include "controller/store/store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres_server.h"

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

enum class Impl { kMemory, kSqlite, kPostgres };

// The same contract, run against every implementation.
class StoreTest : public ::testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    const std::string name =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    path_ = TempPath(name);
    for (char& c : path_) {
      if (c == '/' && &c > &path_[::testing::TempDir().size()]) c = '_';
    }
    RemoveDb(path_);
    if (GetParam() == Impl::kPostgres) {
      testing::PostgresServer* pg = testing::SharedPostgresServer();
      ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
      std::string db =
          ("store_" + name.substr(0, name.find('/'))).substr(0, 60);
      for (char& c : db) c = std::isalnum(c) ? std::tolower(c) : '_';
      auto url = pg->CreateDatabase(db);
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    }
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    RemoveDb(path_);
  }
  Impl impl() const { return GetParam(); }
  std::unique_ptr<Store> Open() {
    switch (impl()) {
      case Impl::kMemory:
        return CreateMemoryStore();
      case Impl::kSqlite: {
        auto s = CreateSqliteStore({path_});
        EXPECT_TRUE(s.ok()) << s.status();
        return s.ok() ? std::move(*s) : nullptr;
      }
      case Impl::kPostgres: {
        auto s = CreatePostgresStore({url_});
        EXPECT_TRUE(s.ok()) << s.status();
        return s.ok() ? std::move(*s) : nullptr;
      }
    }
    return nullptr;
  }
  // Closes and reopens the database (no-op for memory).
  void Reopen() {
    if (impl() == Impl::kMemory) return;
    store_.reset();
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }

  std::string path_;
  std::string url_;
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
  retention.raw_retention = absl::Seconds(5700);
  retention.aggregate_retention = absl::Seconds(3000);
  auto pruned = store_->Prune(absl::FromUnixSeconds(7300), retention);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->verdicts_deleted, 1);  // updated 1000 < 1600.
  EXPECT_EQ(pruned->failures_deleted, 1);
  // Minute 0's hour ended before 4300 s; minute 100's (hour 1) did not.
  EXPECT_EQ(pruned->minutes_deleted, 1);
  auto verdicts = store_->ListVerdicts(absl::UnixEpoch(), 10);
  ASSERT_TRUE(verdicts.ok());
  EXPECT_EQ(verdicts->size(), 2u);
  // Totals are never pruned.
  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ((*totals)[0].stats.probes(), 2u);
}

// Bytes of every value (NUL and high bytes included), some of them repeated
// past a page so that large blobs round-trip too.
std::string DetectorBlob(size_t n, unsigned seed) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<char>((i * 131 + seed) & 0xff);
  }
  return out;
}

TEST_P(StoreTest, DetectorStateSaveLoadReplace) {
  auto none = store_->LoadDetectorState();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound) << none.status();
  const std::string first = DetectorBlob(300, 7);
  ASSERT_TRUE(store_->SaveDetectorState(first).ok());
  Reopen();
  auto loaded = store_->LoadDetectorState();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, first);
  // Replaced as a whole, by a longer and then by a shorter (empty) blob.
  const std::string second = DetectorBlob(1 << 20, 3);
  ASSERT_TRUE(store_->SaveDetectorState(second).ok());
  Reopen();
  loaded = store_->LoadDetectorState();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->size(), second.size());
  EXPECT_TRUE(*loaded == second);
  ASSERT_TRUE(store_->SaveDetectorState("").ok());
  loaded = store_->LoadDetectorState();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, "");
}

StreamStats StatsOf(int ok, int failed) {
  StreamStats s;
  for (int i = 0; i < ok; ++i) s.Add(MakeOutcome(1, v1::OK, 0));
  for (int i = 0; i < failed; ++i) s.Add(MakeOutcome(1, v1::HTTP_5XX, 0));
  return s;
}

// Sums of latencies are added in another order by a store than by the test:
// equal up to rounding; every count exactly.
void ExpectSameStats(const StreamStats& a, const StreamStats& b) {
  EXPECT_EQ(a.counts, b.counts);
  EXPECT_EQ(a.ttfb.buckets, b.ttfb.buckets);
  EXPECT_EQ(a.duration.buckets, b.duration.buckets);
  EXPECT_EQ(a.received_bytes, b.received_bytes);
  EXPECT_NEAR(a.ttfb.sum, b.ttfb.sum, 1e-9 * (1 + b.ttfb.sum));
  EXPECT_NEAR(a.duration.sum, b.duration.sum, 1e-9 * (1 + b.duration.sum));
}

// Per-minute aggregates of hours that ended before now - aggregate_retention
// move into hourly aggregates (same counts and histograms), in transactions
// of at most max_rows_per_transaction rows; late minutes of a rolled hour
// are added at the next run; hourly aggregates go after hourly_retention.
TEST_P(StoreTest, RetentionRollsMinutesUpIntoHoursInBoundedTransactions) {
  StreamKey other = Key();
  other.mode = v1::BUFFERED;
  std::map<std::pair<StreamKey, int64_t>, StreamStats> want_hours;
  StreamStats total;
  for (int64_t minute = 0; minute < 200; minute += 10) {
    WriteBatch b;
    for (int64_t m = minute; m < minute + 10; ++m) {
      const StreamStats s = StatsOf(1 + m % 3, m % 7 == 0 ? 1 : 0);
      b.minutes.push_back({Key(), m, s});
      total.Merge(s);
      if (m < 180) want_hours[{Key(), m / 60}].Merge(s);
    }
    ASSERT_TRUE(store_->Commit(b, nullptr).ok());
  }
  WriteBatch b2;
  for (int64_t m : {61, 62, 119}) {
    b2.minutes.push_back({other, m, StatsOf(2, 1)});
    want_hours[{other, 1}].Merge(StatsOf(2, 1));
  }
  ASSERT_TRUE(store_->Commit(b2, nullptr).ok());

  RetentionOptions retention;
  retention.raw_retention = absl::Hours(1000);
  retention.aggregate_retention = absl::Hours(1);
  retention.max_rows_per_transaction = 7;
  // now - 1 h falls in hour 3 (minute 185): hours 0-2 are complete.
  const absl::Time now = absl::FromUnixSeconds(185 * 60) + absl::Hours(1);
  auto pruned = store_->Prune(now, retention);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->minutes_deleted, 183);
  EXPECT_EQ(pruned->hours_deleted, 0);
  if (impl() == Impl::kMemory) {
    EXPECT_EQ(pruned->transactions, 1);
  } else {
    // 183 rows in 7s: 26 full transactions and a last one of 1, then one
    // (empty) transaction per delete step.
    EXPECT_EQ(pruned->transactions, 27 + 4);
  }
  Reopen();
  auto hours = store_->QueryStreamHours(INT64_MIN, INT64_MAX);
  ASSERT_TRUE(hours.ok()) << hours.status();
  ASSERT_EQ(hours->size(), want_hours.size());
  for (const StreamHour& h : *hours) {
    auto it = want_hours.find({h.key, h.hour});
    ASSERT_NE(it, want_hours.end()) << h.hour;
    SCOPED_TRACE(h.hour);
    ExpectSameStats(h.stats, it->second);
  }
  auto minutes = store_->QueryStreamMinutes(INT64_MIN, INT64_MAX);
  ASSERT_TRUE(minutes.ok());
  ASSERT_EQ(minutes->size(), 20u);  // 180..199.
  EXPECT_EQ(minutes->front().minute, 180);
  // Totals are never touched.
  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  for (const StreamTotal& t : *totals) {
    if (t.key == Key()) ExpectSameStats(t.stats, total);
  }

  // A late minute of hour 0 (an outbox drained late) joins its hour at the
  // next run; a second run with nothing to do changes nothing.
  WriteBatch late;
  late.minutes.push_back({Key(), 5, StatsOf(4, 0)});
  ASSERT_TRUE(store_->Commit(late, nullptr).ok());
  pruned = store_->Prune(now, retention);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->minutes_deleted, 1);
  hours = store_->QueryStreamHours(0, 1);
  ASSERT_TRUE(hours.ok());
  ASSERT_EQ(hours->size(), 1u);
  StreamStats hour0 = want_hours[{Key(), 0}];
  hour0.Merge(StatsOf(4, 0));
  ExpectSameStats((*hours)[0].stats, hour0);
  pruned = store_->Prune(now, retention);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->rows_deleted(), 0);

  // Hourly retention: hours that ended before now - hourly_retention go.
  retention.hourly_retention = now - absl::FromUnixSeconds(2 * 3600 + 10);
  pruned = store_->Prune(now, retention);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->hours_deleted, 3);  // Key's hours 0, 1; other's hour 1.
  hours = store_->QueryStreamHours(INT64_MIN, INT64_MAX);
  ASSERT_TRUE(hours.ok());
  ASSERT_EQ(hours->size(), 1u);
  EXPECT_EQ((*hours)[0].hour, 2);
}

// Readers over old periods (Analyze, reports, the status page) see rolled-up
// hours as one row at the hour's first minute, beside the minutes still
// kept: the counts over any range are the stream's, nothing lost or doubled.
TEST_P(StoreTest, StreamCountsJoinRolledUpHoursAndMinutes) {
  WriteBatch b;
  StreamStats total, from_minute_30;
  for (int64_t m = 0; m < 120; ++m) {
    const StreamStats s = StatsOf(2, m % 5 == 0 ? 1 : 0);
    b.minutes.push_back({Key(), m, s});
    total.Merge(s);
    if (m >= 30) from_minute_30.Merge(s);
  }
  ASSERT_TRUE(store_->Commit(b, nullptr).ok());
  RetentionOptions retention;
  retention.raw_retention = absl::Hours(1000);
  retention.aggregate_retention = absl::Hours(1);
  // now - 1 h falls in hour 1: hour 0 rolls up, hour 1 stays in minutes.
  ASSERT_TRUE(
      store_->Prune(absl::FromUnixSeconds(90 * 60) + absl::Hours(1), retention)
          .ok());

  auto all = QueryStreamCounts(store_.get(), INT64_MIN / 2, INT64_MAX / 2);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 61u);  // Hour 0 as one row, minutes 60..119.
  EXPECT_EQ(all->front().minute, 0);
  EXPECT_EQ((*all)[1].minute, 60);
  StreamStats sum;
  for (const StreamMinute& m : *all) sum.Merge(m.stats);
  ExpectSameStats(sum, total);

  // A range starting inside the rolled-up hour takes the whole hour.
  auto part = QueryStreamCounts(store_.get(), 30, 120);
  ASSERT_TRUE(part.ok());
  ASSERT_EQ(part->size(), 61u);
  StreamStats part_sum;
  for (const StreamMinute& m : *part) part_sum.Merge(m.stats);
  EXPECT_GE(part_sum.probes(), from_minute_30.probes());
  ExpectSameStats(part_sum, total);
  // Only minutes: exactly the per-minute rows.
  auto late = QueryStreamCounts(store_.get(), 100, 110);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->size(), 10u);
}

TEST_P(StoreTest, LeaseTakeRenewExpire) {
  const absl::Time t0 = absl::FromUnixSeconds(10000);
  const absl::Duration ttl = absl::Seconds(10);
  auto a = store_->AcquireLease("a", "a:1", t0, ttl);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->holder, "a");
  EXPECT_EQ(a->address, "a:1");
  EXPECT_EQ(a->epoch, 1);
  EXPECT_EQ(a->expires, t0 + ttl);
  // Held: another replica does not get it, and learns who has it.
  auto b = store_->AcquireLease("b", "b:1", t0 + absl::Seconds(5), ttl);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->holder, "a");
  EXPECT_EQ(b->address, "a:1");
  // Renewal keeps the epoch.
  a = store_->AcquireLease("a", "a:1", t0 + absl::Seconds(9), ttl);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->epoch, 1);
  EXPECT_EQ(a->expires, t0 + absl::Seconds(19));
  // Expired: taken over, epoch + 1.
  b = store_->AcquireLease("b", "b:1", t0 + absl::Seconds(19), ttl);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->holder, "b");
  EXPECT_EQ(b->epoch, 2);
  Reopen();
  auto read = store_->ReadLease();
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->holder, "b");
  EXPECT_EQ(read->epoch, 2);
  // Released: the next taker need not wait, and gets a new epoch.
  ASSERT_TRUE(store_->ReleaseLease("b").ok());
  a = store_->AcquireLease("a", "a:2", t0 + absl::Seconds(20), ttl);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->holder, "a");
  EXPECT_EQ(a->epoch, 3);
}

// A stalled old leader wakes up after a successor took the lease: every one
// of its writes is refused and nothing of them is applied.
TEST_P(StoreTest, FencedWritesOfAnOldLeaderAreRefused) {
  const absl::Time t0 = absl::FromUnixSeconds(10000);
  const absl::Duration ttl = absl::Seconds(10);
  // The old leader's own connection (a second Store on the same database,
  // except for the memory store, which is one object).
  std::unique_ptr<Store> second = impl() == Impl::kMemory ? nullptr : Open();
  Store* old_leader = second ? second.get() : store_.get();
  auto a = old_leader->AcquireLease("old", "old:1", t0, ttl);
  ASSERT_TRUE(a.ok()) << a.status();
  old_leader->SetFencingEpoch(a->epoch);
  WriteBatch b;
  StreamStats s;
  s.Add(MakeOutcome(1, v1::OK, 120));
  b.minutes.push_back({Key(), 2, s});
  b.agents.push_back({"a1", "r1", 1, 0, absl::FromUnixSeconds(5)});
  ASSERT_TRUE(old_leader->Commit(b, nullptr).ok());

  // The old leader stalls past its lease; a successor takes over.
  auto n = store_->AcquireLease("new", "new:1", t0 + ttl, ttl);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(n->holder, "new");
  ASSERT_EQ(n->epoch, a->epoch + 1);

  b.agents[0].applied_sequence = 2;
  absl::Status st = old_leader->Commit(b, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(old_leader->SaveFleet({}, {}, {"x"}).code(),
            absl::StatusCode::kFailedPrecondition);
  v1::Verdict v;
  v.mutable_updated()->set_seconds(5);
  EXPECT_EQ(old_leader->AppendVerdict(v).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(old_leader->Prune(t0, RetentionOptions()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(old_leader->SaveDetectorState("stale").code(),
            absl::StatusCode::kFailedPrecondition);
  // It cannot renew either: the lease names the successor.
  auto again = old_leader->AcquireLease("old", "old:1", t0 + ttl, ttl);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->holder, "new");

  // Only the first commit is in the data.
  auto agents = store_->LoadAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_EQ((*agents)[0].applied_sequence, 1u);
  auto totals = store_->LoadStreamTotals();
  ASSERT_TRUE(totals.ok());
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_EQ((*totals)[0].stats.probes(), 1u);
  auto verdicts = store_->ListVerdicts(absl::UnixEpoch(), 10);
  ASSERT_TRUE(verdicts.ok());
  EXPECT_TRUE(verdicts->empty());
  EXPECT_EQ(store_->LoadDetectorState().status().code(),
            absl::StatusCode::kNotFound);

  // The successor, fenced at its own epoch, writes fine.
  store_->SetFencingEpoch(n->epoch);
  b.agents[0].applied_sequence = 2;
  EXPECT_TRUE(store_->Commit(b, nullptr).ok());
  EXPECT_TRUE(store_->SaveDetectorState("fresh").ok());
  auto state = old_leader->LoadDetectorState();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, "fresh");
}

// The state the old leader saved while it led stays until the successor
// replaces it: a refused save does not clear it.
TEST_P(StoreTest, FencedDetectorStateSaveKeepsThePreviousState) {
  const absl::Time t0 = absl::FromUnixSeconds(20000);
  const absl::Duration ttl = absl::Seconds(10);
  std::unique_ptr<Store> second = impl() == Impl::kMemory ? nullptr : Open();
  Store* old_leader = second ? second.get() : store_.get();
  auto a = old_leader->AcquireLease("old", "old:1", t0, ttl);
  ASSERT_TRUE(a.ok()) << a.status();
  old_leader->SetFencingEpoch(a->epoch);
  ASSERT_TRUE(old_leader->SaveDetectorState("epoch-1").ok());
  auto n = store_->AcquireLease("new", "new:1", t0 + ttl, ttl);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(n->holder, "new");
  absl::Status st = old_leader->SaveDetectorState("stale-epoch-1");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("fenced"), absl::string_view::npos) << st;
  auto state = store_->LoadDetectorState();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, "epoch-1");
}

TEST_P(StoreTest, PingAnswers) { EXPECT_TRUE(store_->Ping().ok()); }

INSTANTIATE_TEST_SUITE_P(Impl, StoreTest,
                         ::testing::Values(Impl::kMemory, Impl::kSqlite,
                                           Impl::kPostgres),
                         [](const ::testing::TestParamInfo<Impl>& info) {
                           switch (info.param) {
                             case Impl::kMemory:
                               return "Memory";
                             case Impl::kSqlite:
                               return "Sqlite";
                             case Impl::kPostgres:
                               return "Postgres";
                           }
                           return "Unknown";
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

// A file written by an older schema (no detector_state nor stream_hours
// table) gains the tables on open and keeps its data.
TEST(SqliteStoreTest, MigratesVersion2FileForward) {
  const std::string path = TempPath("v2");
  RemoveDb(path);
  {
    auto s = CreateSqliteStore({path});
    ASSERT_TRUE(s.ok());
    v1::Target t;
    t.set_name("kept");
    ASSERT_TRUE((*s)->SaveFleet({t}, {}, {}).ok());
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "DROP TABLE detector_state; DROP TABLE stream_hours; "
                     "PRAGMA user_version=2",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = CreateSqliteStore({path});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->LoadDetectorState().status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE((*s)->SaveDetectorState("x").ok());
  EXPECT_EQ((*s)->LoadFleet()->targets(0).name(), "kept");
  RemoveDb(path);
}

WriteBatch OneOutcome(uint64_t seq) {
  WriteBatch b;
  StreamStats s;
  s.Add(MakeOutcome(seq, v1::OK, 120));
  b.minutes.push_back({Key(), 2, s});
  b.agents.push_back({"a1", "r1", seq, 0, absl::FromUnixSeconds(5)});
  return b;
}

uint64_t Probes(Store* store) {
  auto totals = store->LoadStreamTotals();
  if (!totals.ok() || totals->empty()) return 0;
  return (*totals)[0].stats.probes();
}

TEST(PostgresStoreTest, BadUrlAndUnreachableServer) {
  EXPECT_EQ(CreatePostgresStore({"mysql://x/y"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A server that was stopped: nothing listens on its port any more.
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  const std::string url = (*pg)->Url();
  ASSERT_TRUE((*pg)->Stop().ok());
  auto s = CreatePostgresStore({url, absl::Seconds(2)});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
}

// The server stops under a live store: every call fails UNAVAILABLE and
// applies nothing; after a restart the store reconnects by itself.
TEST(PostgresStoreTest, ServerStopAndRestart) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto url = (*pg)->CreateDatabase("faults");
  ASSERT_TRUE(url.ok()) << url.status();
  auto store = CreatePostgresStore({*url});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Commit(OneOutcome(1), nullptr).ok());

  ASSERT_TRUE((*pg)->Stop("fast").ok());
  EXPECT_EQ((*store)->Commit(OneOutcome(2), nullptr).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*store)->Ping().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*store)->LoadAgents().status().code(),
            absl::StatusCode::kUnavailable);

  ASSERT_TRUE((*pg)->Restart().ok());
  EXPECT_TRUE((*store)->Ping().ok());
  EXPECT_EQ(Probes(store->get()), 1u);  // The failed commit left nothing.
  ASSERT_TRUE((*store)->Commit(OneOutcome(2), nullptr).ok());
  EXPECT_EQ(Probes(store->get()), 2u);
}

// A database switched to read-only (as during a failover to a standby):
// writes fail UNAVAILABLE with nothing applied, reads go on.
TEST(PostgresStoreTest, ReadOnlyDatabaseRefusesWrites) {
  testing::PostgresServer* pg = testing::SharedPostgresServer();
  ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
  auto url = pg->CreateDatabase("readonly");
  ASSERT_TRUE(url.ok()) << url.status();
  auto store = CreatePostgresStore({*url});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Commit(OneOutcome(1), nullptr).ok());
  auto set_read_only = [&](bool on) {
    ASSERT_TRUE(
        pg->Psql("postgres", absl::StrCat("ALTER DATABASE readonly SET "
                                          "default_transaction_read_only = ",
                                          on ? "on" : "off"))
            .ok());
    // Sessions pick the setting up when they start: end the store's.
    ASSERT_TRUE(pg->Psql("postgres",
                         "SELECT pg_terminate_backend(pid) FROM "
                         "pg_stat_activity WHERE datname = 'readonly'")
                    .ok());
  };
  set_read_only(true);
  // The first call finds the connection closed, the next one reconnects
  // into a read-only session: both fail UNAVAILABLE.
  for (int i = 0; i < 2; ++i) {
    absl::Status st = (*store)->Commit(OneOutcome(2), nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  }
  EXPECT_EQ(Probes(store->get()), 1u);
  // The health check sees it too (else readiness would flap between a
  // failed commit and a successful ping).
  EXPECT_EQ((*store)->Ping().code(), absl::StatusCode::kUnavailable);
  set_read_only(false);
  (*store)->Ping().IgnoreError();  // Reconnects after the termination.
  ASSERT_TRUE((*store)->Commit(OneOutcome(2), nullptr).ok());
  EXPECT_EQ(Probes(store->get()), 2u);
}

TEST(PostgresStoreTest, RefusesNewerSchema) {
  testing::PostgresServer* pg = testing::SharedPostgresServer();
  ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
  auto url = pg->CreateDatabase("newer");
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE(CreatePostgresStore({*url}).ok());
  ASSERT_TRUE(pg->Psql("newer", "UPDATE schema_version SET version = 99").ok());
  EXPECT_EQ(CreatePostgresStore({*url}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A replica stalled inside a transaction (SIGSTOP, a hung thread) keeps its
// row locks. Another replica's lock wait is bounded (UNAVAILABLE, retried),
// and the server ends the stalled session after the idle bound, releasing
// the lease row: a failover never waits forever on a stalled holder.
TEST(PostgresStoreTest, StalledTransactionCannotHoldTheLeaseForever) {
  testing::PostgresServer* pg = testing::SharedPostgresServer();
  ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
  auto url = pg->CreateDatabase("stalled_holder");
  ASSERT_TRUE(url.ok()) << url.status();
  PostgresStoreOptions options{*url};
  options.lock_timeout = absl::Milliseconds(200);
  // Long enough that the first blocked try below surely runs before the
  // server ends the stalled session, even on a loaded machine.
  options.idle_in_transaction_timeout = absl::Seconds(10);
  auto store = CreatePostgresStore(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const absl::Time t0 = absl::FromUnixSeconds(10000);
  const absl::Duration ttl = absl::Seconds(10);
  ASSERT_TRUE((*store)->AcquireLease("a", "a:1", t0, ttl).ok());

  // The stalled leader: a session with the store's own bounds that locks the
  // lease row in a transaction and then never speaks again.
  const std::string session = PostgresSessionOptions(options);
  const char* keys[] = {"dbname", "options", nullptr};
  const char* values[] = {url->c_str(), session.c_str(), nullptr};
  PGconn* stalled = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  ASSERT_EQ(PQstatus(stalled), CONNECTION_OK) << PQerrorMessage(stalled);
  PQclear(PQexec(stalled, "BEGIN"));
  PGresult* locked = PQexec(stalled,
                            "SELECT epoch FROM leases WHERE name = 'leader' "
                            "FOR UPDATE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_TUPLES_OK);
  PQclear(locked);

  // The lease expired long ago, but its row is locked: the wait is bounded.
  auto blocked = (*store)->AcquireLease("b", "b:1", t0 + ttl * 2, ttl);
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable)
      << blocked.status();
  EXPECT_NE(blocked.status().message().find("lock timeout"), std::string::npos)
      << blocked.status();
  // The server ends the stalled session (10 s idle); each try below waits at
  // most the 200 ms lock bound. 60 s bounds the loop on a slow machine.
  absl::StatusOr<LeaderLease> taken = blocked;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (!taken.ok() && absl::Now() < give_up) {
    taken = (*store)->AcquireLease("b", "b:1", t0 + ttl * 2, ttl);
  }
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->holder, "b");
  EXPECT_EQ(taken->epoch, 2);
  PGresult* after = PQexec(stalled, "SELECT 1");
  EXPECT_NE(PQresultStatus(after), PGRES_TUPLES_OK);
  EXPECT_NE(std::string(PQerrorMessage(stalled)).find("idle-in-transaction"),
            std::string::npos)
      << PQerrorMessage(stalled);
  PQclear(after);
  PQfinish(stalled);
}

// Everything a store holds, for comparing two stores.
struct Contents {
  std::vector<AgentRecord> agents;
  std::vector<StreamTotal> totals;
  std::vector<StreamMinute> minutes;
  std::vector<StreamHour> hours;
  std::map<std::string, double> counters;
  std::vector<std::string> failures, samples, verdicts;
  std::string fleet;
  std::string detector_state;
};

Contents Read(Store* s) {
  Contents c;
  c.agents = s->LoadAgents().value();
  c.totals = s->LoadStreamTotals().value();
  c.minutes = s->QueryStreamMinutes(INT64_MIN, INT64_MAX).value();
  c.hours = s->QueryStreamHours(INT64_MIN, INT64_MAX).value();
  c.counters = s->LoadCounters().value();
  const std::vector<v1::Outcome> failures =
      s->QueryFailures(absl::InfinitePast(), 1 << 20).value();
  for (const auto& f : failures) c.failures.push_back(f.SerializeAsString());
  const std::vector<v1::PlatformMetricSample> samples =
      s->QueryPlatformSamples(absl::InfinitePast(), absl::InfiniteFuture())
          .value();
  for (const auto& p : samples) c.samples.push_back(p.SerializeAsString());
  const std::vector<v1::Verdict> verdicts =
      s->ListVerdicts(absl::InfinitePast(), 1 << 20).value();
  for (const auto& v : verdicts) c.verdicts.push_back(v.SerializeAsString());
  c.fleet = s->LoadFleet().value().SerializeAsString();
  c.detector_state = s->LoadDetectorState().value_or("<none>");
  return c;
}

void ExpectSame(const Contents& a, const Contents& b) {
  ASSERT_EQ(a.agents.size(), b.agents.size());
  for (size_t i = 0; i < a.agents.size(); ++i) {
    EXPECT_EQ(a.agents[i].agent_id, b.agents[i].agent_id);
    EXPECT_EQ(a.agents[i].region, b.agents[i].region);
    EXPECT_EQ(a.agents[i].applied_sequence, b.agents[i].applied_sequence);
    EXPECT_EQ(a.agents[i].dropped_total, b.agents[i].dropped_total);
    EXPECT_EQ(a.agents[i].last_seen, b.agents[i].last_seen);
  }
  ASSERT_EQ(a.totals.size(), b.totals.size());
  for (size_t i = 0; i < a.totals.size(); ++i) {
    EXPECT_EQ(a.totals[i].key, b.totals[i].key);
    EXPECT_EQ(a.totals[i].stats, b.totals[i].stats);
  }
  ASSERT_EQ(a.minutes.size(), b.minutes.size());
  for (size_t i = 0; i < a.minutes.size(); ++i) {
    EXPECT_EQ(a.minutes[i].key, b.minutes[i].key);
    EXPECT_EQ(a.minutes[i].minute, b.minutes[i].minute);
    EXPECT_EQ(a.minutes[i].stats, b.minutes[i].stats);
  }
  ASSERT_EQ(a.hours.size(), b.hours.size());
  for (size_t i = 0; i < a.hours.size(); ++i) {
    EXPECT_EQ(a.hours[i].key, b.hours[i].key);
    EXPECT_EQ(a.hours[i].hour, b.hours[i].hour);
    EXPECT_EQ(a.hours[i].stats, b.hours[i].stats);
  }
  EXPECT_EQ(a.counters, b.counters);
  EXPECT_EQ(a.failures, b.failures);
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_EQ(a.verdicts, b.verdicts);
  EXPECT_EQ(a.fleet, b.fleet);
  EXPECT_TRUE(a.detector_state == b.detector_state);
}

// SQLite -> PostgreSQL -> SQLite: the same contents at every step, including
// totals that hold more than the (pruned) per-minute rows; small
// transactions; a non-empty destination is refused.
TEST(CopyStoreTest, RoundTripSqlitePostgresSqlite) {
  testing::PostgresServer* pg = testing::SharedPostgresServer();
  ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
  const std::string src_path = TempPath("copy_src");
  const std::string back_path = TempPath("copy_back");
  RemoveDb(src_path);
  RemoveDb(back_path);
  auto src = CreateSqliteStore({src_path});
  ASSERT_TRUE(src.ok());
  for (uint64_t seq = 1; seq <= 90; ++seq) {
    WriteBatch b;
    StreamStats s;
    const v1::Outcome o =
        MakeOutcome(seq, seq % 4 == 0 ? v1::HTTP_5XX : v1::OK, 60 * seq + 7);
    s.Add(o);
    StreamKey k = Key();
    k.size_bytes = 1024 << (seq % 3);
    k.adhoc = seq % 5 == 0;
    b.minutes.push_back({k, MinuteOf(absl::FromUnixSeconds(60 * seq)), s});
    if (o.outcome_class() != v1::OK) b.failures.push_back(o);
    b.agents.push_back({"a1", "r1", seq, seq / 10, absl::FromUnixSeconds(seq)});
    b.counter_deltas["ingest_outcomes_total"] = 1;
    b.counter_deltas["phantom|r1|t|x"] = 0.25;
    v1::PlatformMetricSample p;
    p.set_region("r1");
    p.set_target("t");
    p.set_metric("Errors");
    p.set_stat("Sum");
    p.mutable_period_start()->set_seconds(60 * (seq % 7));
    p.set_value(seq);
    b.platform_samples.push_back(p);
    ASSERT_TRUE((*src)->Commit(b, nullptr).ok());
  }
  v1::Target t;
  t.set_name("canary");
  v1::Schedule sch;
  sch.set_id("ladder");
  sch.set_target("canary");
  ASSERT_TRUE((*src)->SaveFleet({t}, {sch}, {}).ok());
  for (int i = 0; i < 3; ++i) {
    v1::Verdict v;
    v.set_kind(v1::STREAM_HEALTH);
    v.mutable_updated()->set_seconds(100 + i);
    ASSERT_TRUE((*src)->AppendVerdict(v).ok());
  }
  ASSERT_TRUE((*src)->SaveDetectorState(DetectorBlob(5000, 11)).ok());
  // Roll the first hour's minutes up: totals now hold more than the
  // minutes, and the hourly aggregates hold the rest.
  RetentionOptions retention;
  retention.aggregate_retention = absl::Seconds(60 * 20);
  retention.raw_retention = absl::Hours(1000);
  ASSERT_TRUE((*src)->Prune(absl::FromUnixSeconds(60 * 81), retention).ok());
  const Contents original = Read(src->get());
  ASSERT_GT(original.minutes.size(), 5u);
  ASSERT_GT(original.hours.size(), 1u);

  auto url = pg->CreateDatabase("copy_round_trip");
  ASSERT_TRUE(url.ok()) << url.status();
  auto mid = CreatePostgresStore({*url});
  ASSERT_TRUE(mid.ok());
  auto copied = CopyStore(src->get(), mid->get(), /*rows_per_commit=*/7);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->minutes, static_cast<int64_t>(original.minutes.size()));
  EXPECT_EQ(copied->hours, static_cast<int64_t>(original.hours.size()));
  EXPECT_EQ(copied->verdicts, 3);
  EXPECT_EQ(copied->detector_states, 1);
  ASSERT_EQ(original.detector_state.size(), 5000u);
  ExpectSame(original, Read(mid->get()));
  // Into a store that already has data: refused, nothing changed.
  EXPECT_EQ(CopyStore(src->get(), mid->get()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  auto back = CreateSqliteStore({back_path});
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(CopyStore(mid->get(), back->get(), 1000).ok());
  ExpectSame(original, Read(back->get()));
  RemoveDb(src_path);
  RemoveDb(back_path);
}

TEST(OpenStoreTest, SelectsByUrl) {
  const std::string path = TempPath("open");
  RemoveDb(path);
  EXPECT_TRUE(OpenStore("sqlite://" + path, "--store").ok());
  EXPECT_TRUE(OpenStore("memory:", "--store").ok());
  auto bad = OpenStore("mysql://x", "--store");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--store"), std::string::npos);
  EXPECT_EQ(RedactStoreUrl("postgresql://u:secret@h:5/db"),
            "postgresql://u:***@h:5/db");
  EXPECT_EQ(RedactStoreUrl("postgresql://u@h/db"), "postgresql://u@h/db");
  RemoveDb(path);
}

}  // namespace
}  // namespace controller
}  // namespace fleetcanary
