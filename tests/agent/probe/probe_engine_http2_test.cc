// HTTP/2 success paths of the probe engine against a real HTTP/2 server:
// nghttpd (Debian package nghttp2-server) serving canary bodies made with
// common/payload from a document root, over h2c with prior knowledge and over
// TLS with ALPN. (The emulator speaks HTTP/1.1 only; see
// probe_engine_emulator_test.cc for the ALPN fallback.)
//
// nghttpd cannot echo x-canary-probe-id or declare x-canary-bytes, so these
// probes carry no probe id and rely on Content-Length; the body is still
// verified byte for byte.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/probe/probe_engine.h"
#include "common/payload/payload.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/probe_test_support.h"
#include "tests/testing/pki.h"
#include "tests/testing/wait.h"

extern char** environ;

namespace fleetcanary {
namespace {

using testing::Describe;
using testing::FromProto;
using testing::SetDuration;

// Finds an executable in PATH (or the sbin directories nghttpd lives in).
std::string FindProgram(const std::string& name) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/usr/local/sbin:/sbin";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Socket inodes of the process's open descriptors.
std::vector<std::string> SocketInodes(pid_t pid) {
  std::vector<std::string> inodes;
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return inodes;
  while (dirent* e = readdir(d)) {
    char target[256];
    const std::string link = absl::StrCat(dir, "/", e->d_name);
    const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    absl::string_view t(target, static_cast<size_t>(n));
    if (absl::ConsumePrefix(&t, "socket:[") && absl::ConsumeSuffix(&t, "]")) {
      inodes.emplace_back(t);
    }
  }
  closedir(d);
  return inodes;
}

// The TCP port `pid` listens on (0 if none yet), from /proc/net/tcp.
int ListeningPort(pid_t pid) {
  const std::vector<std::string> inodes = SocketInodes(pid);
  std::ifstream f(absl::StrCat("/proc/", pid, "/net/tcp"));
  std::string line;
  std::getline(f, line);  // Header.
  while (std::getline(f, line)) {
    std::vector<std::string> cols =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    // sl local_address rem_address st ... inode (column 9).
    if (cols.size() < 10 || cols[3] != "0A") continue;
    if (std::find(inodes.begin(), inodes.end(), cols[9]) == inodes.end()) {
      continue;
    }
    const size_t colon = cols[1].find(':');
    int port = 0;
    if (colon != std::string::npos &&
        absl::SimpleHexAtoi(cols[1].substr(colon + 1), &port)) {
      return port;
    }
  }
  return 0;
}

// nghttpd on 127.0.0.1, port 0 (read back from /proc), killed on destruction.
class Nghttpd {
 public:
  ~Nghttpd() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

  // `tls_key`/`tls_cert` empty = h2c (--no-tls).
  absl::Status Start(const std::string& docroot, const std::string& tls_key,
                     const std::string& tls_cert) {
    const std::string program = FindProgram("nghttpd");
    if (program.empty()) {
      return absl::FailedPreconditionError(
          "nghttpd not found (Debian package nghttp2-server; "
          "scripts/install-deps.sh installs it)");
    }
    std::vector<std::string> argv = {program, "--address=127.0.0.1",
                                     absl::StrCat("--htdocs=", docroot)};
    if (tls_key.empty()) {
      argv.push_back("--no-tls");
      argv.push_back("0");
    } else {
      argv.push_back("0");
      argv.push_back(tls_key);
      argv.push_back(tls_cert);
    }
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null",
                                     O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, program.c_str(), &actions, nullptr,
                               args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = 0;
      return absl::InternalError(absl::StrCat("cannot start nghttpd: ", rc));
    }
    // nghttpd says nothing when it listens: watch its sockets (bounded).
    bool exited = false;
    testing::WaitUntil([&] {
      port_ = ListeningPort(pid_);
      int status = 0;
      exited = port_ == 0 && waitpid(pid_, &status, WNOHANG) == pid_;
      return port_ > 0 || exited;
    });
    if (port_ > 0) return absl::OkStatus();
    if (exited) {
      pid_ = 0;
      return absl::InternalError("nghttpd exited at start");
    }
    return absl::DeadlineExceededError("nghttpd did not listen within 60 s");
  }

  int port() const { return port_; }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
};

constexpr uint64_t kSeed = 0x68327631;
constexpr size_t kSize = 300000;
constexpr size_t kBadOffset = 123457;

class Http2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        absl::StrCat(::testing::TempDir(), "/probe-h2-", getpid()));
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_ + "/docroot/bad");
    // <docroot>/canary: the canary body; <docroot>/bad/canary: one byte off.
    std::string body = MakePayload(kSeed, kSize);
    std::ofstream(*dir_ + "/docroot/canary", std::ios::binary) << body;
    body[kBadOffset] ^= 0x01;
    std::ofstream(*dir_ + "/docroot/bad/canary", std::ios::binary) << body;
    absl::StatusOr<testing::TestPki> pki =
        testing::TestPki::Create(*dir_ + "/pki");
    ASSERT_TRUE(pki.ok()) << pki.status();
    ASSERT_TRUE(pki->Leaf("server", "DNS:localhost,IP:127.0.0.1").ok());
    pki_ = new testing::TestPki(*pki);
  }

  void SetUp() override {
    auto engine = ProbeEngine::Create(ProbeEngineOptions(), Clock::Real());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  ProbeRequest Request(const std::string& base) {
    ProbeRequest r;
    r.url = base;
    r.mode = v1::BUFFERED;
    r.size_bytes = kSize;
    r.seed = kSeed;
    r.transport.set_http_version("2");
    // Far beyond what the slowest machine needs (half as fast, under a
    // sanitizer, with another test in parallel): every probe here must end
    // by itself, never by a limit.
    SetDuration(absl::Seconds(60), r.limits.mutable_timeout());
    SetDuration(absl::Seconds(30), r.limits.mutable_stall_limit());
    SetDuration(absl::Seconds(30), r.limits.mutable_connect_timeout());
    return r;
  }

  v1::Outcome Run(ProbeRequest request) {
    return testing::RunProbe(engine_.get(), std::move(request),
                             absl::Seconds(120));
  }

  static std::string* dir_;
  static testing::TestPki* pki_;
  std::unique_ptr<ProbeEngine> engine_;
};

std::string* Http2Test::dir_ = nullptr;
testing::TestPki* Http2Test::pki_ = nullptr;

TEST_F(Http2Test, CleartextPriorKnowledgeIsOkOverHttp2) {
  Nghttpd server;
  ASSERT_TRUE(server.Start(*dir_ + "/docroot", "", "").ok());
  const std::string base =
      absl::StrCat("http://127.0.0.1:", server.port(), "/");
  const v1::Outcome o = Run(Request(base));
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_EQ(o.http_version(), "2");
  EXPECT_EQ(o.status(), 200);
  EXPECT_EQ(o.received_bytes(), kSize);
  EXPECT_EQ(o.transfer_end(), v1::COMPLETE);
  EXPECT_FALSE(o.timings().has_tls());
  EXPECT_LE(FromProto(o.timings().headers_received()),
            FromProto(o.timings().first_body_byte()));

  // The same bytes with one flipped: verification runs on the HTTP/2 path.
  const v1::Outcome bad = Run(Request(base + "bad/"));
  EXPECT_EQ(bad.outcome_class(), v1::INTEGRITY) << Describe(bad);
  EXPECT_EQ(bad.first_bad_offset(), static_cast<int64_t>(kBadOffset));
  EXPECT_EQ(bad.http_version(), "2");

  // A probe id that does not come back breaks the contract over h2 too.
  ProbeRequest with_id = Request(base);
  with_id.probe_id = "h2-probe";
  const v1::Outcome no_echo = Run(with_id);
  EXPECT_EQ(no_echo.outcome_class(), v1::INTEGRITY) << Describe(no_echo);
  EXPECT_TRUE(absl::StrContains(no_echo.detail(), "x-canary-probe-id"));

  // Missing file: a 404 over HTTP/2.
  const v1::Outcome missing = Run(Request(base + "nowhere/"));
  EXPECT_EQ(missing.outcome_class(), v1::HTTP_4XX) << Describe(missing);
  EXPECT_EQ(missing.status(), 404);
}

TEST_F(Http2Test, TlsWithAlpnIsOkOverHttp2) {
  Nghttpd server;
  ASSERT_TRUE(server
                  .Start(*dir_ + "/docroot", pki_->Path("server", "key"),
                         pki_->Path("server", "pem"))
                  .ok());
  const std::string base =
      absl::StrCat("https://127.0.0.1:", server.port(), "/");
  ProbeRequest r = Request(base);
  r.transport.set_ca_file(pki_->ca());
  const v1::Outcome o = Run(r);
  ASSERT_EQ(o.outcome_class(), v1::OK) << Describe(o);
  EXPECT_EQ(o.http_version(), "2");
  EXPECT_EQ(o.received_bytes(), kSize);
  ASSERT_TRUE(o.timings().has_tls());
  EXPECT_GT(FromProto(o.timings().tls()), FromProto(o.timings().connect()));
}

}  // namespace
}  // namespace fleetcanary
