#include "common/sqlite/sqlite_util.h"

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

class SqliteUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() +
            ".db";
    std::remove(path_.c_str());
  }

  sqlite3* Open() {
    absl::StatusOr<sqlite3*> db = OpenSqlite(path_, "test db");
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? *db : nullptr;
  }

  static int UserVersion(sqlite3* db) {
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, nullptr);
    int v = -1;
    if (sqlite3_step(q) == SQLITE_ROW) v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
  }

  static int Count(sqlite3* db, const char* table) {
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db,
                       (std::string("SELECT COUNT(*) FROM ") + table).c_str(),
                       -1, &q, nullptr);
    int n = -1;
    if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return n;
  }

  std::string path_;
};

const char* const kTwoMigrations[] = {
    "CREATE TABLE a(x INTEGER);",
    "CREATE TABLE b(y INTEGER); INSERT INTO b VALUES(1);",
};

TEST_F(SqliteUtilTest, OpenFailureNamesTheDatabaseAndPath) {
  const std::string bad = ::testing::TempDir() + "/no/such/dir/x.db";
  absl::StatusOr<sqlite3*> db = OpenSqlite(bad, "outbox");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(
      absl::StartsWith(db.status().message(), "opening outbox " + bad + ": "))
      << db.status();
}

TEST_F(SqliteUtilTest, ExecReportsSqliteMessageWithPrefix) {
  sqlite3* db = Open();
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(
      SqliteExec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", "test")
          .ok());
  absl::Status s = SqliteExec(db, "SELECT * FROM missing", "test");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StartsWith(s.message(), "test: ")) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing"));
  sqlite3_close_v2(db);
}

TEST_F(SqliteUtilTest, MigratesOnceAndIsIdempotent) {
  sqlite3* db = Open();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(MigrateSqlite(db, kTwoMigrations, "test", "test").ok());
  EXPECT_EQ(UserVersion(db), 2);
  EXPECT_EQ(Count(db, "b"), 1);
  ASSERT_TRUE(MigrateSqlite(db, kTwoMigrations, "test", "test").ok());
  EXPECT_EQ(Count(db, "b"), 1);  // Not applied twice.
  sqlite3_close_v2(db);
}

TEST_F(SqliteUtilTest, MigratesFromAnOlderVersion) {
  sqlite3* db = Open();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(
      MigrateSqlite(db, absl::MakeConstSpan(kTwoMigrations, 1), "test", "test")
          .ok());
  EXPECT_EQ(UserVersion(db), 1);
  ASSERT_TRUE(MigrateSqlite(db, kTwoMigrations, "test", "test").ok());
  EXPECT_EQ(UserVersion(db), 2);
  sqlite3_close_v2(db);
}

TEST_F(SqliteUtilTest, RefusesANewerSchema) {
  sqlite3* db = Open();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(MigrateSqlite(db, kTwoMigrations, "store", "test").ok());
  absl::Status s = MigrateSqlite(db, absl::MakeConstSpan(kTwoMigrations, 1),
                                 "store", "test");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "store schema version 2 is newer than this binary's 1");
  sqlite3_close_v2(db);
}

TEST_F(SqliteUtilTest, FailedMigrationRollsBack) {
  const char* const broken[] = {
      "CREATE TABLE a(x INTEGER);",
      "CREATE TABLE c(z INTEGER); THIS IS NOT SQL;",
  };
  sqlite3* db = Open();
  ASSERT_NE(db, nullptr);
  absl::Status s = MigrateSqlite(db, broken, "store", "test");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("migrating store to version 2"));
  EXPECT_EQ(UserVersion(db), 1);
  EXPECT_EQ(Count(db, "c"), -1);  // Table c was rolled back.
  sqlite3_close_v2(db);
}

}  // namespace
}  // namespace fleetcanary
