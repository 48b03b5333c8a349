#include "common/metrics/process_metrics.h"

#include <fcntl.h>
#include <gnu/libc-version.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/build/build_info.h"
#include "common/flags/daemon_flags.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

std::optional<double> Value(const std::vector<prometheus::MetricFamily>& fs,
                            const std::string& name) {
  for (const auto& f : fs) {
    if (f.name != name || f.metric.empty()) continue;
    return f.type == prometheus::MetricType::Counter ? f.metric[0].counter.value
                                                     : f.metric[0].gauge.value;
  }
  return std::nullopt;
}

void Write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat(
            "proc-", getpid(), "-",
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
  }
  std::filesystem::path root_;
};

TEST_F(FakeProc, ReadsTheStandardFieldsFromProcfs) {
  // comm with a space and a ')' must not shift the fields.
  // Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime(15) cutime cstime priority nice threads
  // itrealvalue starttime(22) vsize(23) rss(24).
  Write(root_ / "42" / "stat",
        "42 (evil) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 7 7 20 0 "
        "3 0 5000 123456789 1000 18446744073709551615\n");
  Write(root_ / "stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n");
  Write(root_ / "42" / "limits",
        "Limit                     Soft Limit           Hard Limit           "
        "Units     \n"
        "Max open files            4096                 524288               "
        "files     \n");
  for (int i = 0; i < 5; ++i)
    Write(root_ / "42" / "fd" / std::to_string(i), "");

  ProcessMetricsOptions o;
  o.program = "fleetcanary-test";
  o.proc_root = root_.string();
  o.pid = "42";
  o.ticks_per_second = 100;
  o.page_size = 4096;
  const auto fs = CollectProcessMetrics(o);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_cpu_seconds_total"), 4.0);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_start_time_seconds"), 1700000050.0);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_virtual_memory_bytes"), 123456789.0);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_resident_memory_bytes"), 1000.0 * 4096);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_max_fds"), 4096.0);
  EXPECT_DOUBLE_EQ(*Value(fs, "process_open_fds"), 5.0);
}

TEST_F(FakeProc, MissingFilesLeaveTheirMetricsOutButKeepBuildInfo) {
  ProcessMetricsOptions o;
  o.program = "p";
  o.proc_root = root_.string();
  o.pid = "1";
  const auto fs = CollectProcessMetrics(o);
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].name, "fleetcanary_build_info");
}

TEST(ProcessMetrics, BuildInfoCarriesVersionRevisionAndProgram) {
  const auto fs = CollectProcessMetrics({"fleetcanary-agent"});
  ASSERT_FALSE(fs.empty());
  ASSERT_EQ(fs[0].name, "fleetcanary_build_info");
  ASSERT_EQ(fs[0].metric.size(), 1u);
  std::map<std::string, std::string> labels;
  for (const auto& l : fs[0].metric[0].label) labels[l.name] = l.value;
  EXPECT_EQ(labels["program"], "fleetcanary-agent");
  EXPECT_EQ(labels["version"], BuildVersion());
  EXPECT_EQ(labels["revision"], BuildRevision());
  // This test binary is not linked with jemalloc: glibc's, with its version.
  EXPECT_EQ(labels["allocator"],
            absl::StrCat("glibc ", gnu_get_libc_version()));
  EXPECT_EQ(fs[0].metric[0].gauge.value, 1);
  EXPECT_FALSE(std::string(BuildVersion()).empty());
  EXPECT_NE(std::string(BuildVersion()), "Debug build");
}

TEST(ProcessMetrics, OwnProcessMatchesIndependentReadings) {
  auto collectable = NewProcessMetrics({"t"});
  const auto before = collectable->Collect();
  const double fds_before = *Value(before, "process_open_fds");
  int fds[3];
  for (int& fd : fds) fd = open("/dev/null", O_RDONLY);
  const auto after = collectable->Collect();
  for (int fd : fds) close(fd);
  EXPECT_EQ(*Value(after, "process_open_fds"), fds_before + 3);

  rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(*Value(after, "process_max_fds"),
            static_cast<double>(limit.rlim_cur));
  // Started after boot and not in the future.
  const double start = *Value(after, "process_start_time_seconds");
  EXPECT_LE(start, static_cast<double>(std::time(nullptr)) + 1);
  EXPECT_GT(start, 1.5e9);
  EXPECT_GT(*Value(after, "process_resident_memory_bytes"), 0);
  EXPECT_GE(*Value(after, "process_cpu_seconds_total"),
            *Value(before, "process_cpu_seconds_total"));
}

TEST(DaemonFlags, OwnFlagsAreThoseOfMainFiles) {
  EXPECT_TRUE(IsDaemonFlagFile("controller/server/main.cc"));
  EXPECT_TRUE(IsDaemonFlagFile("/src/agent/main.cc"));
  EXPECT_TRUE(IsDaemonFlagFile("main.cc"));
  EXPECT_FALSE(IsDaemonFlagFile("absl/flags/internal/usage.cc"));
  EXPECT_FALSE(IsDaemonFlagFile("bench/domain.cc"));
}

TEST(DaemonFlags, VersionLineNamesProgramVersionAndRevision) {
  EXPECT_EQ(VersionLine("fleetcanary-agent"),
            absl::StrCat("fleetcanary-agent ", BuildVersion(), " (revision ",
                         BuildRevision(), ")"));
}

}  // namespace
}  // namespace fleetcanary
