// canaryctl probe --direct, run in-process against the fault server.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/app.h"
#include "common/build/build_info.h"
#include "common/config/loader.h"
#include "fleetcanary/v1/admin.pb.h"
#include "fleetcanary/v1/verdict.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/fault_server.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace cli {
namespace {

using testing::FaultServer;
using testing::FaultSpec;

class ProbeDirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FaultServer::Create(testing::FaultServerOptions());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ctx_.out = &out_;
    ctx_.err = &err_;
    ctx_.clock = Clock::Real();
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), "canaryctl");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return RunCanaryctl(static_cast<int>(argv.size()), argv.data(), &ctx_);
  }

  std::string Stream() {
    FaultSpec s;
    s.framing = FaultSpec::Framing::kChunked;
    return server_->BaseUrl(s);
  }

  std::unique_ptr<FaultServer> server_;
  std::ostringstream out_, err_;
  CliContext ctx_;
};

TEST_F(ProbeDirectTest, HealthyEndpointsGiveATableAndExitZero) {
  const int code =
      Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(),
           "--url-stream", Stream(), "--sizes", "2,1Ki,64Ki", "--count", "20",
           "--concurrency", "8", "--fresh-connections"});
  EXPECT_EQ(code, 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_TRUE(absl::StrContains(out, "MODE")) << out;
  EXPECT_TRUE(absl::StrContains(out, "TTFB P50")) << out;
  EXPECT_TRUE(absl::StrContains(out, "stream    64KiB      20  20  -")) << out;
  EXPECT_TRUE(absl::StrContains(out, "buffered     2B      20  20  -")) << out;
  EXPECT_TRUE(absl::StrContains(out, "120 probes")) << out;
  EXPECT_EQ(server_->connections_accepted(), 120);  // Fresh connections.
  EXPECT_EQ(err_.str(), "");  // No TTY, no --progress: no bar.
}

TEST_F(ProbeDirectTest, JsonOutputIsAProbeSummaryDocument) {
  const std::string outcomes =
      absl::StrCat(::testing::TempDir(), "/probe_direct_outcomes.jsonl");
  FaultSpec truncating;
  truncating.framing = FaultSpec::Framing::kChunked;
  truncating.close_at = 100;
  const int code =
      Run({"probe", "--direct", "--url", server_->BaseUrl(truncating), "--mode",
           "stream", "--sizes", "2,1Ki", "--count", "10", "--output", "json",
           "--max-error-rate", "0.5", "--outcomes", outcomes, "--seed", "42",
           "--progress"});
  EXPECT_EQ(code, 2);
  v1::RunProbeEvent::Done done;
  ASSERT_TRUE(JsonToMessage(out_.str(), &done).ok()) << out_.str();
  ASSERT_EQ(done.summaries_size(), 2);
  EXPECT_EQ(done.total_probes(), 20u);
  EXPECT_EQ(done.summaries(0).size_bytes(), 2u);
  EXPECT_EQ(done.summaries(0).by_class().at("OK"), 10u);
  EXPECT_EQ(done.summaries(1).by_class().at("TRUNCATED"), 10u);
  EXPECT_DOUBLE_EQ(done.summaries(1).error_rate(), 1.0);
  EXPECT_TRUE(absl::StrContains(err_.str(), "stream 1KiB error rate 100.00%"))
      << err_.str();
  EXPECT_TRUE(absl::StrContains(err_.str(), "20/20")) << err_.str();  // Bar.
  // The outcomes file is `analyze` input: {"outcome": ...} lines in start
  // time order.
  std::ifstream f(outcomes);
  int lines = 0;
  int64_t last = 0;
  for (std::string line; std::getline(f, line);) {
    v1::AnalysisInputLine l;
    ASSERT_TRUE(JsonToMessage(line, &l).ok()) << line;
    ASSERT_TRUE(l.has_outcome()) << line;
    const int64_t t = l.outcome().start_time().seconds() * 1000000000 +
                      l.outcome().start_time().nanos();
    EXPECT_GE(t, last);
    last = t;
    ++lines;
  }
  EXPECT_EQ(lines, 20);
  out_.str("");
  err_.str("");
  EXPECT_EQ(Run({"analyze", outcomes, "-o", "json"}), 0) << err_.str();
  v1::AnalysisReport report;
  ASSERT_TRUE(JsonToMessage(out_.str(), &report).ok()) << out_.str();
  EXPECT_EQ(report.outcomes(), 20u) << out_.str();
}

TEST_F(ProbeDirectTest, JsonIsFriendlyToScripts) {
  ASSERT_EQ(Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(),
                 "--sizes", "64Ki,2,1Ki", "--count", "3", "-o", "json"}),
            0)
      << err_.str();
  const std::string out = out_.str();
  // Numbers as numbers, zeros present, no placeholder times.
  EXPECT_TRUE(absl::StrContains(out, "\"total_probes\": 9")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"probes\": 3")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"error_rate\": 0.0")) << out;
  EXPECT_FALSE(absl::StrContains(out, "1970-01-01")) << out;
  EXPECT_FALSE(absl::StrContains(out, "e-1")) << out;  // No float noise.
  // Sizes by value, not as text.
  v1::RunProbeEvent::Done done;
  ASSERT_TRUE(JsonToMessage(out, &done).ok()) << out;
  ASSERT_EQ(done.summaries_size(), 3);
  EXPECT_EQ(done.summaries(0).size_bytes(), 2u);
  EXPECT_EQ(done.summaries(1).size_bytes(), 1024u);
  EXPECT_EQ(done.summaries(2).size_bytes(), 65536u);
}

TEST_F(ProbeDirectTest, CtrlCPrintsThePartialSummaryAndExits130) {
  std::thread interrupter([this] {
    // Once the run is under way (some requests served), Ctrl-C.
    testing::WaitUntil([this] { return server_->requests() >= 3; });
    kill(getpid(), SIGINT);
  });
  const int code =
      Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(), "--sizes",
           "2", "--count", "100000", "--rate", "200"});
  interrupter.join();
  EXPECT_EQ(code, 130) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "interrupted by Ctrl-C"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "buffered")) << out_.str();
  EXPECT_LT(server_->requests(), 100000);
}

TEST_F(ProbeDirectTest, OldFlagSpellingsStillWork) {
  // --mode (with --url) and its earlier spelling --modes; -o for --output.
  EXPECT_EQ(Run({"probe", "--direct", "--url", server_->BaseUrl(), "--modes",
                 "buffered", "--sizes", "2", "--count", "2", "-o", "json"}),
            0)
      << err_.str();
  err_.str("");
  EXPECT_EQ(Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(),
                 "--region", "a,b"}),
            1);
  EXPECT_TRUE(absl::StrContains(err_.str(), "--region: one region"))
      << err_.str();
  // Hidden aliases are not advertised.
  out_.str("");
  EXPECT_EQ(Run({"probe", "--help"}), 0);
  EXPECT_FALSE(absl::StrContains(out_.str(), "--regions")) << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "--region")) << out_.str();
}

TEST_F(ProbeDirectTest, VersionPrintsVersionAndRevision) {
  EXPECT_EQ(Run({"version"}), 0);
  EXPECT_EQ(out_.str(), VersionLine("canaryctl") + "\n");
  out_.str("");
  EXPECT_EQ(Run({"--version"}), 0);
  EXPECT_EQ(out_.str(), VersionLine("canaryctl") + "\n");
}

// Real bash is the oracle: the script parses, and completing works.
std::string Bash(const std::string& script_path, const std::string& line,
                 int cword) {
  const std::string cmd = absl::StrCat(
      "bash -c 'source ", script_path, "; COMP_WORDS=(", line,
      "); COMP_CWORD=", cword, "; _canaryctl; echo \"${COMPREPLY[*]}\"'");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST_F(ProbeDirectTest, CompletionScriptsCompleteCommandsAndFlags) {
  ASSERT_EQ(Run({"completion", "bash"}), 0) << err_.str();
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/canaryctl_completion.bash");
  std::ofstream(path) << out_.str();
  EXPECT_EQ(Bash(path, "canaryctl pro", 1), "probe\n");
  EXPECT_EQ(Bash(path, "canaryctl schedules ap", 2), "apply\n");
  const std::string out_flags = Bash(path, "canaryctl probe --out", 2);
  EXPECT_TRUE(absl::StrContains(out_flags, "--outcomes")) << out_flags;
  EXPECT_TRUE(absl::StrContains(out_flags, "--output")) << out_flags;
  EXPECT_TRUE(absl::StrContains(Bash(path, "canaryctl schedules apply --f", 3),
                                "--file"));
  EXPECT_FALSE(
      absl::StrContains(Bash(path, "canaryctl probe --reg", 2), "--regions"));
  out_.str("");
  ASSERT_EQ(Run({"completion", "zsh"}), 0);
  EXPECT_TRUE(absl::StartsWith(out_.str(), "#compdef canaryctl")) << out_.str();
  EXPECT_EQ(Run({"completion", "fish"}), 1);
}

TEST_F(ProbeDirectTest, RatePacesTheRun) {
  const absl::Time start = absl::Now();
  EXPECT_EQ(Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(),
                 "--sizes", "1Ki", "--count", "11", "--rate", "50"}),
            0)
      << err_.str();
  // 11 probes at 50/s: the last starts 200 ms after the first.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

TEST_F(ProbeDirectTest, UsageErrorsSayWhatToFix) {
  struct Case {
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"probe", "--direct"}, "--url-buffered"},
      {{"probe", "--direct", "--url", "http://x/"}, "--mode buffered"},
      {{"probe", "--direct", "--url-stream", "http://x/", "--sizes", "1Kx"},
       "--sizes: \"1Kx\""},
      {{"probe", "--direct", "--url-stream", "http://x/", "--timeout", "soon"},
       "--timeout"},
      {{"probe", "--direct", "--url-stream", "http://x/", "--auth", "basic"},
       "--auth"},
      {{"probe", "--direct", "--url-stream", "http://x/", "--max-error-rate",
        "5"},
       "--max-error-rate"},
      {{"probe", "--direct", "--url-stream", "http://x/", "--output", "xml"},
       "--output"},
      {{"probe", "--direct", "--url-stream", "http://x/", "--count", "abc"},
       "--count"},
      // Without --direct the probes go through the controller, where
      // direct-only flags are refused.
      {{"probe", "--url-stream", "http://x/", "--rate", "5"}, "--direct"},
      {{"nonsense"}, "nonsense"},
      {{}, "subcommand"},
  };
  for (const Case& c : cases) {
    err_.str("");
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    EXPECT_EQ(Run(c.args), 1);
    EXPECT_TRUE(absl::StrContains(err_.str(), c.want)) << err_.str();
  }
  EXPECT_EQ(server_->requests(), 0);
}

TEST_F(ProbeDirectTest, NothingMeasuredExitsThree) {
  // IAM auth without credentials anywhere in the chain: every probe is ours.
  // The chain's last resort, the instance metadata service, stays off: tests
  // reach nothing but loopback.
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_ROLE_ARN");
  unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
  unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  setenv("AWS_CONFIG_FILE", "/nonexistent/fleetcanary-test-config", 1);
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/fleetcanary-test-creds",
         1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  EXPECT_EQ(
      Run({"probe", "--direct", "--url-buffered", server_->BaseUrl(), "--sizes",
           "2", "--count", "3", "--auth", "iam", "--region", "us-east-1"}),
      3);
  // Refused before any probe, naming every provider the chain tried.
  EXPECT_TRUE(absl::StrContains(err_.str(), "no AWS credentials"))
      << err_.str();
  EXPECT_TRUE(absl::StrContains(err_.str(), "web-identity")) << err_.str();
  EXPECT_TRUE(absl::StrContains(err_.str(), "imds")) << err_.str();
  EXPECT_EQ(server_->requests(), 0);
}

TEST_F(ProbeDirectTest, HelpExitsZero) {
  EXPECT_EQ(Run({"probe", "--help"}), 0);
  EXPECT_TRUE(absl::StrContains(out_.str(), "--url-stream")) << out_.str();
  // --auth iam uses the whole credential chain, not just AWS_* variables.
  for (const char* provider : {"credential chain", "web identity",
                               "AWS_PROFILE", "container", "IMDSv2"}) {
    EXPECT_TRUE(absl::StrContains(out_.str(), provider)) << provider;
  }
  EXPECT_FALSE(absl::StrContains(out_.str(), "AWS_* environment credentials"));
}

}  // namespace
}  // namespace cli
}  // namespace fleetcanary
