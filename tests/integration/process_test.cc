// Process: a child that ends by itself mid-test is never silent.
#include "tests/integration/process.h"

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace testing {
namespace {

// Whether `pid` has exited and waits to be reaped (state Z in
// /proc/<pid>/stat), which leaves it for Process to notice.
bool IsZombie(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  const std::string stat((std::istreambuf_iterator<char>(in)),
                         std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] == 'Z';
}

// Starts `script` under /bin/sh and waits until it has ended by itself.
std::unique_ptr<Process> EndedShell(const std::string& script) {
  auto p = Process::Spawn("/bin/sh", {"-c", script}, "/dev/null");
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nullptr;
  const pid_t pid = (*p)->pid();
  EXPECT_TRUE(WaitUntil([&] { return IsZombie(pid); }, absl::Seconds(30)));
  return std::move(*p);
}

TEST(ProcessTest, ACrashNobodyCausedFailsTheTest) {
  std::unique_ptr<Process> p = EndedShell("kill -SEGV $$");
  ASSERT_NE(p, nullptr);
  EXPECT_NONFATAL_FAILURE(p.reset(), "ended by itself during the test");
}

TEST(ProcessTest, AnExitNobodyCausedIsReportedWithoutFailing) {
  std::unique_ptr<Process> p = EndedShell("exit 3");
  ASSERT_NE(p, nullptr);
  p.reset();  // A note on stderr ("exit code 3"), no failure.
}

TEST(ProcessTest, EndsTheTestCausedAreNotReported) {
  auto p =
      Process::Spawn("/bin/sh", {"-c", "echo up; exec sleep 600"}, "/dev/null");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->WaitForLine("up", absl::Seconds(30)).ok());
  (*p)->Signal(SIGABRT);
  const pid_t pid = (*p)->pid();
  ASSERT_TRUE(WaitUntil([&] { return IsZombie(pid); }, absl::Seconds(30)));
  p->reset();  // Signalled by the test: no failure.
}

}  // namespace
}  // namespace testing
}  // namespace fleetcanary
