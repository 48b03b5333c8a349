// `fleetcanary-controller migrate` end to end: the binary copies a SQLite
// store into a real PostgreSQL database and back, and the contents are the
// same; bad invocations exit non-zero naming the flag.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/testing/postgres_server.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::Process;

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/migrate_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  // Runs migrate; returns its exit code, stdout's "migrated" line in *line.
  int Migrate(const std::string& from, const std::string& to,
              std::string* line = nullptr) {
    std::vector<std::string> args = {"migrate"};
    if (!from.empty()) args.push_back("--from=" + from);
    if (!to.empty()) args.push_back("--to=" + to);
    auto p =
        Process::Spawn(BinaryPath("controller/server/fleetcanary-controller"),
                       args, dir_ + "/migrate.log");
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return -1;
    if (line != nullptr) {
      auto l = (*p)->WaitForLine("migrated ", absl::Seconds(60));
      if (l.ok()) *line = *l;
    }
    return (*p)->Wait(absl::Seconds(60)).value_or(-1);
  }
  std::string Log() {
    std::FILE* f = std::fopen((dir_ + "/migrate.log").c_str(), "r");
    std::string out;
    if (f == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
  }
  std::string dir_;
};

std::string Dump(controller::Store* s) {
  std::string out;
  // Locals: a range-for over a temporary StatusOr's value() would dangle.
  const auto agents = s->LoadAgents().value();
  for (const auto& a : agents) {
    absl::StrAppend(&out, "agent ", a.agent_id, " ", a.applied_sequence, "\n");
  }
  const auto totals = s->LoadStreamTotals().value();
  for (const auto& t : totals) {
    absl::StrAppend(&out, "total ", t.key.region, " ", t.key.size_bytes, " ",
                    t.stats.probes(), " ", t.stats.ttfb.sum, "\n");
  }
  const auto minutes = s->QueryStreamMinutes(INT64_MIN, INT64_MAX).value();
  for (const auto& m : minutes) {
    absl::StrAppend(&out, "minute ", m.minute, " ", m.stats.probes(), "\n");
  }
  const auto counters = s->LoadCounters().value();
  for (const auto& [k, v] : counters) {
    absl::StrAppend(&out, "counter ", k, " ", v, "\n");
  }
  const auto failures = s->QueryFailures(absl::InfinitePast(), 1 << 20).value();
  for (const auto& f : failures) {
    absl::StrAppend(&out, "failure ", f.probe_id(), "\n");
  }
  absl::StrAppend(&out, "fleet ", s->LoadFleet().value().ShortDebugString());
  return out;
}

TEST_F(MigrateTest, SqliteToPostgresAndBack) {
  testing::PostgresServer* pg = testing::SharedPostgresServer();
  ASSERT_NE(pg, nullptr) << testing::SharedPostgresServerError();
  const std::string src = dir_ + "/src.db";
  {
    auto store = controller::CreateSqliteStore({src});
    ASSERT_TRUE(store.ok());
    for (uint64_t seq = 1; seq <= 20; ++seq) {
      controller::WriteBatch b;
      v1::Outcome o;
      o.set_probe_id(absl::StrCat("p", seq));
      o.set_outcome_class(seq % 3 ? v1::OK : v1::RESET);
      o.mutable_start_time()->set_seconds(60 * seq);
      controller::StreamStats s;
      s.Add(o);
      b.minutes.push_back({{"r1", "t", v1::BUFFERED, 64 * seq % 3, false},
                           static_cast<int64_t>(seq),
                           s});
      if (o.outcome_class() != v1::OK) b.failures.push_back(o);
      b.agents.push_back({"a1", "r1", seq, 0, absl::FromUnixSeconds(seq)});
      b.counter_deltas["ingest_outcomes_total"] = 1;
      ASSERT_TRUE((*store)->Commit(b, nullptr).ok());
    }
    v1::Target t;
    t.set_name("canary");
    ASSERT_TRUE((*store)->SaveFleet({t}, {}, {}).ok());
  }
  auto url = pg->CreateDatabase("migrate_e2e");
  ASSERT_TRUE(url.ok()) << url.status();
  std::string line;
  ASSERT_EQ(Migrate("sqlite://" + src, *url, &line), 0) << Log();
  EXPECT_NE(line.find("agents=1 "), std::string::npos) << line;
  EXPECT_NE(line.find("minutes=20 "), std::string::npos) << line;
  const std::string back = dir_ + "/back.db";
  ASSERT_EQ(Migrate(*url, "sqlite://" + back), 0) << Log();
  // Into a database that already has data: refused.
  EXPECT_EQ(Migrate("sqlite://" + src, *url), 1);

  auto a = controller::CreateSqliteStore({src});
  auto m = controller::CreatePostgresStore({*url});
  auto b = controller::CreateSqliteStore({back});
  ASSERT_TRUE(a.ok() && m.ok() && b.ok());
  const std::string original = Dump(a->get());
  EXPECT_NE(original.find("failure p3"), std::string::npos);
  EXPECT_EQ(Dump(m->get()), original);
  EXPECT_EQ(Dump(b->get()), original);
}

TEST_F(MigrateTest, BadInvocationsNameTheFlag) {
  EXPECT_EQ(Migrate("sqlite://" + dir_ + "/x.db", ""), 1);
  EXPECT_NE(Log().find("--to"), std::string::npos) << Log();
  EXPECT_EQ(Migrate("sqlite://" + dir_ + "/x.db", "mysql://h/db"), 1);
  EXPECT_NE(Log().find("--to: unsupported store URL"), std::string::npos)
      << Log();
}

}  // namespace
}  // namespace fleetcanary
