// A GoogleTest fixture for end-to-end tests of the real
// fleetcanary-controller binary over TLS: a fresh scratch directory per
// test, a throwaway CA with a "server" leaf for localhost and 127.0.0.1, and
// StartController() to run the binary and read back its addresses.
//
// Example:
//   class MyTest : public testing::ControllerProcessTest {
//    protected:
//     MyTest() : ControllerProcessTest("my_test_") {}
//   };
//   TEST_F(MyTest, Serves) {
//     StartController({"--insecure", "--data_dir=" + dir_ + "/c"});
//     EXPECT_FALSE(HttpGet(http_, "/metrics").empty());
//   }
//
// Thread-safety: use from the test's thread.
#ifndef FLEETCANARY_TESTS_TESTING_CONTROLLER_PROCESS_H_
#define FLEETCANARY_TESTS_TESTING_CONTROLLER_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/testing/pki.h"

namespace fleetcanary {
namespace testing {

class ControllerProcessTest : public ::testing::Test {
 protected:
  // dir_ will be <TempDir>/<prefix><test name>.
  explicit ControllerProcessTest(std::string prefix);

  // Empties dir_ and creates the PKI in dir_/pki with the "server" leaf;
  // a fatal failure when that fails (a subclass checks HasFatalFailure()).
  void SetUp() override;
  // Kills the controller if it still runs.
  void TearDown() override;

  // Runs the controller binary with `args` (stderr to dir_/controller.log)
  // and waits up to 60 s for its "listening" line; sets controller_, line_,
  // grpc_ and http_. On failure, a fatal failure in this function naming
  // the error with the log.
  void StartController(const std::vector<std::string>& args);

  std::string dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<Process> controller_;
  std::string line_;  // The controller's "listening ..." line.
  std::string grpc_;  // Its grpc= address.
  std::string http_;  // Its http= address.

 private:
  const std::string prefix_;
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_CONTROLLER_PROCESS_H_
