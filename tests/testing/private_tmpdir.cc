// Gives every test process a temporary directory of its own.
//
// ctest runs each test case as its own process, many at once, and tests name
// their files under ::testing::TempDir() ("fleet.yaml", "canaryctl.token"):
// with the shared /tmp/ two cases overwrite each other's files. Linked into
// every test binary (fleetcanary_cc_test), this points TEST_TMPDIR, which
// TempDir() reads, at a fresh mkdtemp directory before the first test runs,
// removes it when every test passed, and otherwise says where it was kept.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace fleetcanary::testing {
namespace {

class PrivateTmpDir : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base && *base ? base : "/tmp") + "/fleetcanary-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      // Fall back to the shared directory, and say so: a test that names a
      // file there may then race with another process.
      std::fprintf(stderr, "private_tmpdir: mkdtemp(%s) failed; using %s\n",
                   tmpl.c_str(), ::testing::TempDir().c_str());
      return;
    }
    dir_ = tmpl;
    setenv("TEST_TMPDIR", dir_.c_str(), /*overwrite=*/1);
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (::testing::UnitTest::GetInstance()->Passed()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    } else {
      std::fprintf(stderr, "test files kept in %s\n", dir_.c_str());
    }
  }

 private:
  std::string dir_;
};

// Registered before main(): gtest owns and deletes the environment.
[[maybe_unused]] ::testing::Environment* const kPrivateTmpDir =
    ::testing::AddGlobalTestEnvironment(new PrivateTmpDir);

}  // namespace
}  // namespace fleetcanary::testing
