// The probe engine with a target guard (SSRF): refused URLs and addresses are
// AGENT_ERROR "target guard: ..." and are never connected to.
//
// No traffic may leave loopback. The probes to 169.254.169.254 and 10.0.0.1
// run only after the same engine has proved, against a local listener, that
// its open-socket hook refuses an address before connecting; and the guard is
// checked directly to refuse them first. A connect timeout of a few seconds
// on those probes is defence in depth.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/probe/probe_engine.h"
#include "common/net/target_guard.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/probe_test_support.h"
#include "tests/testing/fault_server.h"
#include "tests/testing/ports.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace {

using testing::Describe;
using testing::SetDuration;

// A loopback server that reads requests and never answers, to tell whether
// anything connected.
std::unique_ptr<testing::FaultServer> SilentServer() {
  testing::FaultServerOptions options;
  options.default_spec.silent = true;
  absl::StatusOr<std::unique_ptr<testing::FaultServer>> server =
      testing::FaultServer::Create(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// Whether some connection reached `server` within `wait`.
bool Connected(const testing::FaultServer& server, absl::Duration wait) {
  return testing::WaitUntil([&] { return server.connections_accepted() > 0; },
                            wait);
}

class GuardTest : public ::testing::Test {
 protected:
  std::unique_ptr<ProbeEngine> Engine(TargetGuardOptions options) {
    absl::StatusOr<std::unique_ptr<TargetGuard>> guard =
        TargetGuard::Create(std::move(options));
    EXPECT_TRUE(guard.ok()) << guard.status();
    guard_ = std::move(*guard);
    ProbeEngineOptions engine_options;
    engine_options.guard = guard_;
    absl::StatusOr<std::unique_ptr<ProbeEngine>> engine =
        ProbeEngine::Create(engine_options, Clock::Real());
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  // Limits far beyond what the slowest machine needs (half as fast, under a
  // sanitizer, with another test in parallel): none of them may decide an
  // outcome here. A refusal by the guard happens before any connection and
  // does not depend on them either.
  static ProbeRequest Request(const std::string& url) {
    ProbeRequest r;
    r.url = url;
    r.size_bytes = 64;
    r.seed = 9;
    r.probe_id = "guarded";
    SetDuration(absl::Seconds(10), r.limits.mutable_connect_timeout());
    SetDuration(absl::Seconds(10), r.limits.mutable_stall_limit());
    SetDuration(absl::Seconds(60), r.limits.mutable_timeout());
    return r;
  }

  // A probe to an address off this machine, which the guard must refuse
  // before connecting. Should the hook ever fail to, the connect timeout
  // bounds what leaves the machine (defence in depth); it is still far
  // above the time from starting a transfer to its open-socket hook, so it
  // cannot fire before the guard refuses.
  static ProbeRequest OffMachineRequest(const std::string& url) {
    ProbeRequest r = Request(url);
    SetDuration(absl::Seconds(2), r.limits.mutable_connect_timeout());
    return r;
  }

  static v1::Outcome Run(ProbeEngine* engine, ProbeRequest request) {
    return testing::RunProbe(engine, std::move(request), absl::Seconds(120));
  }

  // Refused by our policy, without a connection.
  static void ExpectRefused(const v1::Outcome& o, const std::string& why) {
    EXPECT_EQ(o.outcome_class(), v1::AGENT_ERROR) << Describe(o);
    EXPECT_EQ(o.transfer_end(), v1::NOT_CONNECTED) << Describe(o);
    EXPECT_TRUE(absl::StartsWith(o.detail(), "target guard: ")) << o.detail();
    EXPECT_TRUE(absl::StrContains(o.detail(), why)) << o.detail();
    EXPECT_FALSE(o.timings().has_connect());
    EXPECT_EQ(o.status(), 0);
  }

  std::shared_ptr<TargetGuard> guard_;
};

TEST_F(GuardTest, RefusesForbiddenTargetsWithoutConnecting) {
  std::unique_ptr<testing::FaultServer> listener = SilentServer();
  ASSERT_NE(listener, nullptr);
  // 1. The host passes the allowlist; its address (after resolution) is
  //    loopback, which this guard refuses. The listener proves that no
  //    connection was made.
  TargetGuardOptions options;
  options.host_patterns = {"localhost", "*.lambda-url.*.on.aws"};
  options.allowed_hosts = {"127.0.0.1", "169.254.169.254", "10.0.0.1"};
  std::unique_ptr<ProbeEngine> engine = Engine(options);
  ASSERT_NE(engine, nullptr);
  ASSERT_FALSE(guard_->CheckAddressText("127.0.0.1").ok());

  v1::Outcome o =
      Run(engine.get(),
          Request(absl::StrCat("http://localhost:", listener->port(), "/")));
  ExpectRefused(o, "is loopback");
  o = Run(engine.get(),
          Request(absl::StrCat("http://127.0.0.1:", listener->port(), "/")));
  ExpectRefused(o, "address 127.0.0.1 is loopback");
  // Gate: if anything connected, the hook is broken; stop before probing
  // addresses off this machine.
  ASSERT_FALSE(Connected(*listener, absl::Milliseconds(50)))
      << "the engine connected to an address the guard refuses";
  ASSERT_EQ(o.outcome_class(), v1::AGENT_ERROR);

  // 2. Addresses off this machine, refused by the same open-socket hook (the
  //    hosts are allowlisted on purpose so that CheckUrl lets them through).
  ASSERT_FALSE(guard_->CheckAddressText("169.254.169.254").ok());
  ASSERT_FALSE(guard_->CheckAddressText("10.0.0.1").ok());
  o = Run(engine.get(), OffMachineRequest("http://169.254.169.254/latest/"));
  ExpectRefused(o, "169.254.169.254 is link-local (cloud metadata)");
  o = Run(engine.get(), OffMachineRequest("http://10.0.0.1:8080/"));
  ExpectRefused(o, "10.0.0.1 is private");

  // 3. Hosts outside the allowlist never get as far as name resolution.
  std::unique_ptr<ProbeEngine> strict = Engine(TargetGuardOptions());
  ASSERT_NE(strict, nullptr);
  o = Run(strict.get(),
          OffMachineRequest("http://169.254.169.254/latest/meta-data/"));
  ExpectRefused(o, "host 169.254.169.254 is not in the target allowlist");
  EXPECT_FALSE(o.timings().has_dns());
  o = Run(strict.get(), OffMachineRequest("https://10.0.0.1/"));
  ExpectRefused(o, "host 10.0.0.1 is not in the target allowlist");
  o = Run(strict.get(),
          Request(absl::StrCat("http://localhost:", listener->port(), "/")));
  ExpectRefused(o, "host localhost is not in the target allowlist");
  EXPECT_FALSE(Connected(*listener, absl::Milliseconds(20)));
}

// The control for the listener check above: with loopback allowed, the same
// probe does connect (and, unanswered, stalls).
TEST_F(GuardTest, AllowedLoopbackDoesConnect) {
  std::unique_ptr<testing::FaultServer> listener = SilentServer();
  ASSERT_NE(listener, nullptr);
  TargetGuardOptions options;
  options.host_patterns = {"localhost"};
  options.allow_loopback = true;
  std::unique_ptr<ProbeEngine> engine = Engine(options);
  ASSERT_NE(engine, nullptr);
  // The stall limit is the one limit under test: short, and far below the
  // total timeout, so a slow machine cannot make the deadline win.
  ProbeRequest r =
      Request(absl::StrCat("http://localhost:", listener->port(), "/"));
  SetDuration(absl::Milliseconds(500), r.limits.mutable_stall_limit());
  const v1::Outcome o = Run(engine.get(), r);
  EXPECT_EQ(o.outcome_class(), v1::STALLED) << Describe(o);
  // A bounded wait for an event, not a duration: the accept may lag the
  // probe's stall on a loaded machine.
  EXPECT_TRUE(Connected(*listener, absl::Seconds(60)));
}

TEST_F(GuardTest, AllowedTargetsProbeNormally) {
  auto server = testing::FaultServer::Create(testing::FaultServerOptions());
  ASSERT_TRUE(server.ok()) << server.status();
  TargetGuardOptions options;
  options.allowed_hosts = {"127.0.0.1"};
  options.allowed_networks = {"127.0.0.0/8"};
  std::unique_ptr<ProbeEngine> engine = Engine(options);
  ASSERT_NE(engine, nullptr);
  for (bool keep_alive : {false, true, true}) {
    ProbeRequest r = Request((*server)->BaseUrl());
    r.size_bytes = 100000;
    r.transport.set_keep_alive(keep_alive);
    const v1::Outcome o = Run(engine.get(), r);
    EXPECT_EQ(o.outcome_class(), v1::OK) << Describe(o);
    EXPECT_EQ(o.received_bytes(), 100000u);
  }
  // "localhost" may resolve to ::1 (refused: only 127.0.0.0/8 is allowed)
  // and 127.0.0.1 (allowed): the refusal of one address does not decide the
  // outcome when another was allowed.
  {
    TargetGuardOptions v4_only;
    v4_only.host_patterns = {"localhost"};
    v4_only.allowed_networks = {"127.0.0.0/8"};
    std::unique_ptr<ProbeEngine> v4 = Engine(v4_only);
    ASSERT_NE(v4, nullptr);
    ProbeRequest r =
        Request(absl::StrCat("http://localhost:", (*server)->port(), "/"));
    v1::Outcome o = Run(v4.get(), r);
    EXPECT_EQ(o.outcome_class(), v1::OK) << Describe(o);
    r.url =
        absl::StrCat("http://localhost:", testing::UnusedLoopbackPort(), "/");
    o = Run(v4.get(), r);
    EXPECT_EQ(o.outcome_class(), v1::CONNECT_ERROR) << Describe(o);
  }
  // An unparsable URL for the guard is still our error, named as the guard's.
  const v1::Outcome o = Run(
      engine.get(),
      Request(absl::StrCat("http://user@127.0.0.1:", (*server)->port(), "/")));
  EXPECT_EQ(o.outcome_class(), v1::AGENT_ERROR) << Describe(o);
  EXPECT_TRUE(absl::StartsWith(o.detail(), "target guard: ")) << o.detail();
}

// Without a guard (canaryctl probe --direct) everything is allowed.
TEST(NoGuardTest, NullGuardAllowsLoopback) {
  auto server = testing::FaultServer::Create(testing::FaultServerOptions());
  ASSERT_TRUE(server.ok()) << server.status();
  auto engine = ProbeEngine::Create(ProbeEngineOptions(), Clock::Real());
  ASSERT_TRUE(engine.ok());
  ProbeRequest r;
  r.url = (*server)->BaseUrl();
  r.size_bytes = 1000;
  absl::Notification done;
  v1::Outcome outcome;
  (*engine)->Start(r, [&](v1::Outcome o) {
    outcome = std::move(o);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(outcome.outcome_class(), v1::OK) << Describe(outcome);
}

}  // namespace
}  // namespace fleetcanary
