#include "tests/testing/controller_process.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/integration/binaries.h"

namespace fleetcanary {
namespace testing {

ControllerProcessTest::ControllerProcessTest(std::string prefix)
    : prefix_(std::move(prefix)) {}

void ControllerProcessTest::SetUp() {
  dir_ = absl::StrCat(
      ::testing::TempDir(), "/", prefix_,
      ::testing::UnitTest::GetInstance()->current_test_info()->name());
  ASSERT_EQ(std::system(("rm -rf '" + dir_ + "'").c_str()), 0);
  auto pki = TestPki::Create(dir_ + "/pki");
  ASSERT_TRUE(pki.ok()) << pki.status();
  pki_ = std::make_unique<TestPki>(*std::move(pki));
  ASSERT_TRUE(pki_->Leaf("server", "DNS:localhost,IP:127.0.0.1").ok());
}

void ControllerProcessTest::TearDown() { controller_.reset(); }

void ControllerProcessTest::StartController(
    const std::vector<std::string>& args) {
  auto ctl = StartListening(BinaryPath(kControllerBinary), args,
                            dir_ + "/controller.log", absl::Seconds(60));
  ASSERT_TRUE(ctl.ok()) << ctl.status() << ReadFile(dir_ + "/controller.log");
  controller_ = std::move(ctl->process);
  line_ = ctl->line;
  grpc_ = ctl->grpc;
  http_ = ctl->http;
}

}  // namespace testing
}  // namespace fleetcanary
