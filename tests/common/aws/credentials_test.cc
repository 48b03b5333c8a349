// The credential provider chain and the refreshing cache, against the
// emulator's STS, IMDSv2 and container endpoints over real sockets, and
// against hostile endpoints (malformed answers, expired credentials, a token
// file that disappears). Time is a SimulatedClock shared by the emulator and
// the chain; nothing sleeps to let time pass.
#include "common/aws/credentials.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/aws/sts.h"
#include "common/time/clock.h"
#include "emulator/emulator.h"
#include "emulator/server/http_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/wait.h"

namespace fleetcanary {
namespace aws {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kStart = absl::FromUnixSeconds(1706659200);
constexpr char kRole[] = "arn:aws:iam::123456789012:role/canary";

// Waits for the event (bounded far beyond what a slow machine needs).
bool WaitFor(const std::function<bool()>& done) {
  return testing::WaitUntil(done, absl::Seconds(60));
}

class Env {
 public:
  void Set(const std::string& k, const std::string& v) {
    absl::MutexLock lock(&mu_);
    vars_[k] = v;
  }
  EnvLookup lookup() {
    return [this](absl::string_view k) {
      absl::MutexLock lock(&mu_);
      auto it = vars_.find(std::string(k));
      return it == vars_.end() ? std::string() : it->second;
    };
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> vars_;
};

std::string TempPath(const std::string& name) {
  static std::atomic<int> n{0};
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              absl::StrCat("aws_creds_", getpid(), "_", n++);
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

class ChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emulator::EmulatorOptions o;
    o.config.add_regions()->set_name("us-east-1");
    o.config.set_monitoring_auth(v1::AWS_IAM);
    v1::EmulatorCredential* c = o.config.add_credentials();
    c->set_access_key_id("AKIDSTATIC");
    c->set_secret_access_key("static-secret");
    o.config.mutable_identity()->add_web_identity_tokens("good-token");
    o.config.mutable_identity()->mutable_credential_lifetime()->set_seconds(
        900);
    o.config.mutable_identity()->set_container_authorization_token(
        "container-secret");
    auto emu = emulator::Emulator::Create(o, &clock_);
    ASSERT_TRUE(emu.ok()) << emu.status();
    emu_ = *std::move(emu);
    env_.Set("HOME", TempPath("home"));
    env_.Set("AWS_EC2_METADATA_DISABLED", "true");
    env_.Set("AWS_ENDPOINT_URL_STS", emu_->sts_url());
  }

  ProviderOptions Options() {
    ProviderOptions o;
    o.env = env_.lookup();
    o.clock = &clock_;
    o.region = "us-east-1";
    o.http_timeout = absl::Seconds(10);
    return o;
  }

  void UseWebIdentity(const std::string& token) {
    token_file_ = TempPath("token");
    WriteFile(token_file_, token);
    env_.Set("AWS_ROLE_ARN", kRole);
    env_.Set("AWS_WEB_IDENTITY_TOKEN_FILE", token_file_);
  }

  SimulatedClock clock_{kStart};
  Env env_;
  std::unique_ptr<emulator::Emulator> emu_;
  std::string token_file_;
};

TEST_F(ChainTest, EnvironmentComesFirst) {
  env_.Set("AWS_ACCESS_KEY_ID", "AKIDENV");
  env_.Set("AWS_SECRET_ACCESS_KEY", "env-secret");
  UseWebIdentity("good-token");
  auto chain = NewDefaultChain(Options());
  ASSERT_TRUE(chain.ok());
  auto c = (*chain)->Fetch();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->provider, "environment");
  EXPECT_EQ(c->keys.access_key_id, "AKIDENV");
  EXPECT_EQ(c->expiration, absl::InfiniteFuture());
}

TEST_F(ChainTest, HalfSetEnvironmentIsAnErrorNamingIt) {
  env_.Set("AWS_ACCESS_KEY_ID", "AKIDENV");
  auto c = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), StartsWith("environment:"));
}

TEST_F(ChainTest, NothingConfiguredIsNotFoundListingEveryProvider) {
  auto c = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  for (const char* p :
       {"environment", "web-identity", "profile", "container", "imds"}) {
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(p));
  }
}

TEST_F(ChainTest, WebIdentityAssumesTheRoleAtSts) {
  UseWebIdentity("good-token\n");
  auto c = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->provider, "web-identity");
  EXPECT_THAT(c->keys.access_key_id, StartsWith("ASIA"));
  EXPECT_FALSE(c->keys.session_token.empty());
  EXPECT_EQ(c->expiration, kStart + absl::Seconds(900));
  // The emulator accepts them for SigV4 until they expire.
  EXPECT_TRUE(emu_->issuer()->Lookup(c->keys.access_key_id).ok());
  clock_.AdvanceTime(absl::Seconds(900));
  auto expired = emu_->issuer()->Lookup(c->keys.access_key_id);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(expired.status().message()),
              StartsWith("ExpiredToken"));
}

TEST_F(ChainTest, WebIdentityRejectedTokenIsPermissionDenied) {
  UseWebIdentity("forged-token");
  auto c = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(c.status().message()), StartsWith("web-identity:"));
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("InvalidIdentityToken"));
}

TEST_F(ChainTest, WebIdentityMissingTokenFileNamesProviderAndFile) {
  UseWebIdentity("good-token");
  std::filesystem::remove(token_file_);
  auto c = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), StartsWith("web-identity:"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(token_file_));
}

TEST_F(ChainTest, ProfileStaticKeysAndAssumeRoleWithSourceProfile) {
  const std::string creds = TempPath("credentials");
  WriteFile(creds,
            "[base]\naws_access_key_id = AKIDSTATIC\n"
            "aws_secret_access_key = static-secret\n");
  const std::string config = TempPath("config");
  WriteFile(config, "[profile canary]\nrole_arn = " + std::string(kRole) +
                        "\nsource_profile = base\nregion = us-east-1\n");
  env_.Set("AWS_SHARED_CREDENTIALS_FILE", creds);
  env_.Set("AWS_CONFIG_FILE", config);

  env_.Set("AWS_PROFILE", "base");
  auto base = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->keys.access_key_id, "AKIDSTATIC");
  EXPECT_EQ(base->provider, "profile base");

  env_.Set("AWS_PROFILE", "canary");
  auto assumed = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(assumed.ok()) << assumed.status();
  EXPECT_EQ(assumed->provider, "profile canary");
  EXPECT_THAT(assumed->keys.access_key_id, StartsWith("ASIA"));

  env_.Set("AWS_PROFILE", "missing");
  auto missing = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing"));
}

TEST_F(ChainTest, ProfileCredentialProcess) {
  const std::string config = TempPath("config");
  WriteFile(config,
            "[default]\ncredential_process = printf "
            "'{\"Version\":1,\"AccessKeyId\":\"AKIDPROC\",\"SecretAccessKey\":"
            "\"s\",\"SessionToken\":\"t\",\"Expiration\":\"2024-01-31T12:00:"
            "00Z\"}'\n");
  env_.Set("AWS_CONFIG_FILE", config);
  auto c = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->keys.access_key_id, "AKIDPROC");
  EXPECT_EQ(c->keys.session_token, "t");
  EXPECT_EQ(c->expiration, absl::FromUnixSeconds(1706702400));

  WriteFile(config, "[default]\ncredential_process = exit 3\n");
  auto failed = (*NewDefaultChain(Options()))->Fetch();
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()),
              StartsWith("profile default:"));
}

TEST_F(ChainTest, ContainerWithTokenFile) {
  const std::string token = TempPath("container-token");
  WriteFile(token, "container-secret\n");
  env_.Set("AWS_CONTAINER_CREDENTIALS_FULL_URI", emu_->container_url());
  env_.Set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token);
  auto c = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->provider, "container");
  EXPECT_TRUE(emu_->issuer()->Lookup(c->keys.access_key_id).ok());

  WriteFile(token, "wrong");
  auto denied = NewContainerProvider(Options())->Fetch();
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.status().message()), StartsWith("container:"));
}

TEST_F(ChainTest, ContainerRefusesPlainHttpToOtherHosts) {
  env_.Set("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds");
  auto c = NewContainerProvider(Options())->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), StartsWith("container:"));
}

TEST_F(ChainTest, ImdsV2TokenFirst) {
  env_.Set("AWS_EC2_METADATA_DISABLED", "");
  env_.Set("AWS_EC2_METADATA_SERVICE_ENDPOINT", emu_->imds_url());
  auto c = (*NewDefaultChain(Options()))->Fetch();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->provider, "imds");
  EXPECT_EQ(c->expiration, kStart + absl::Seconds(900));
}

TEST_F(ChainTest, AssumeRoleWithExpiredSessionIsRefused) {
  const emulator::IssuedCredentials issued =
      emu_->issuer()->Issue(kRole, absl::Seconds(60));
  StsOptions so;
  so.endpoint = emu_->sts_url();
  so.clock = &clock_;
  auto ok = AssumeRole(so, issued.keys, kRole, "s");
  EXPECT_TRUE(ok.ok()) << ok.status();
  clock_.AdvanceTime(absl::Seconds(61));
  auto expired = AssumeRole(so, issued.keys, kRole, "s");
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(expired.status().message()),
              HasSubstr("ExpiredToken"));
  sigv4::Credentials forged = issued.keys;
  forged.access_key_id = "ASIANEVERISSUED0000";
  auto unknown = AssumeRole(so, forged, kRole, "s");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("InvalidClientTokenId"));
}

// ---------------------------------------------------------------------------
// The cache: refresh before expiry without a gap; failures keep the old
// credentials until they expire.

TEST_F(ChainTest, CacheRefreshesBeforeExpiryWithoutGap) {
  UseWebIdentity("good-token");
  auto cache = CredentialsCache::Create(*NewDefaultChain(Options()), &clock_);
  ASSERT_TRUE(cache.ok());
  CredentialsCache& c = **cache;
  ASSERT_TRUE(WaitFor([&] { return c.stats().refreshes_total == 1; }));
  auto first = c.Get();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(c.stats().expiration, kStart + absl::Seconds(900));
  ASSERT_TRUE(WaitFor([&] { return clock_.waiters() >= 1; }));
  // 15 min lifetime: refresh 5 min before expiry, at +10 min.
  clock_.AdvanceTime(absl::Minutes(10) - absl::Seconds(1));
  EXPECT_EQ(c.stats().refreshes_total, 1u);
  clock_.AdvanceTime(absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return c.stats().refreshes_total == 2; }));
  auto second = c.Get();
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->access_key_id, first->access_key_id);
  EXPECT_EQ(c.stats().expiration, kStart + absl::Minutes(25));
  EXPECT_EQ(c.stats().refresh_failures_total, 0u);
}

TEST_F(ChainTest, CacheKeepsOldCredentialsWhenTokenFileDisappears) {
  UseWebIdentity("good-token");
  CacheOptions co;
  co.retry_interval = absl::Seconds(30);
  auto cache =
      CredentialsCache::Create(*NewDefaultChain(Options()), &clock_, co);
  ASSERT_TRUE(cache.ok());
  CredentialsCache& c = **cache;
  ASSERT_TRUE(WaitFor([&] { return c.stats().refreshes_total == 1; }));
  const sigv4::Credentials held = *c.Get();
  std::filesystem::remove(token_file_);
  ASSERT_TRUE(WaitFor([&] { return clock_.waiters() >= 1; }));
  clock_.AdvanceTime(absl::Minutes(10));
  ASSERT_TRUE(WaitFor([&] { return c.stats().refresh_failures_total >= 1; }));
  // Still the old credentials: they have not expired.
  auto still = c.Get();
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->access_key_id, held.access_key_id);
  EXPECT_THAT(c.stats().last_error, HasSubstr("web-identity"));
  EXPECT_THAT(c.stats().last_error, HasSubstr(token_file_));
  // Past expiry: a clear error naming the provider and the cause.
  ASSERT_TRUE(WaitFor([&] { return clock_.waiters() >= 1; }));
  clock_.AdvanceTime(absl::Minutes(5));
  auto gone = c.Get();
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("web-identity"));
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("expired"));
  // The retry due at +10m30s ran (and failed) when time jumped to +15m.
  ASSERT_TRUE(WaitFor([&] { return c.stats().refresh_failures_total >= 2; }));
  // The file comes back: the next retry, 30s later, recovers.
  WriteFile(token_file_, "good-token");
  const uint64_t before = c.stats().refreshes_total;
  clock_.AdvanceTime(absl::Seconds(30));
  ASSERT_TRUE(WaitFor([&] { return c.stats().refreshes_total > before; }));
  EXPECT_TRUE(c.Get().ok());
}

// ---------------------------------------------------------------------------
// Hostile endpoints: malformed answers are errors naming the provider.

class HostileEndpoint {
 public:
  explicit HostileEndpoint(
      std::function<void(const emulator::HttpRequest&, emulator::ResponsePlan*)>
          handler) {
    auto server = emulator::HttpServer::Create({});
    EXPECT_TRUE(server.ok());
    server_ = *std::move(server);
    port_ = *server_->AddListener(0, false, std::move(handler));
    EXPECT_TRUE(server_->Start().ok());
  }
  ~HostileEndpoint() { server_->Stop(); }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }

 private:
  std::unique_ptr<emulator::HttpServer> server_;
  int port_ = 0;
};

void Answer(emulator::ResponsePlan* plan, int status, std::string body) {
  plan->status = status;
  plan->body = std::move(body);
}

TEST_F(ChainTest, MalformedStsAnswers) {
  for (std::string body : {std::string("not xml at all"), std::string("<x/>"),
                           std::string(300 * 1024, 'A')}) {
    HostileEndpoint sts(
        [body](const emulator::HttpRequest&, emulator::ResponsePlan* plan) {
          Answer(plan, 200, body);
        });
    UseWebIdentity("good-token");
    env_.Set("AWS_ENDPOINT_URL_STS", sts.url());
    auto c = (*NewDefaultChain(Options()))->Fetch();
    EXPECT_FALSE(c.ok());
    EXPECT_THAT(std::string(c.status().message()), StartsWith("web-identity:"));
  }
}

TEST_F(ChainTest, MalformedImdsAndContainerAnswers) {
  const std::string expired =
      R"({"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S",)"
      R"("Token":"T","Expiration":"2024-01-30T00:00:00Z"})";
  for (std::string body :
       {std::string("{not json"), std::string("[]"),
        std::string(R"({"AccessKeyId":"A"})"),
        std::string(R"({"AccessKeyId":"A","SecretAccessKey":"S","Token":"T"})"),
        expired}) {
    HostileEndpoint imds(
        [body](const emulator::HttpRequest& req, emulator::ResponsePlan* plan) {
          if (req.method == "PUT") return Answer(plan, 200, "token");
          if (req.Path() == "/latest/meta-data/iam/security-credentials/") {
            return Answer(plan, 200, "role");
          }
          Answer(plan, 200, body);
        });
    env_.Set("AWS_EC2_METADATA_DISABLED", "");
    env_.Set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url());
    auto c = NewImdsProvider(Options())->Fetch();
    EXPECT_FALSE(c.ok()) << body;
    EXPECT_THAT(std::string(c.status().message()), StartsWith("imds:")) << body;

    env_.Set("AWS_CONTAINER_CREDENTIALS_FULL_URI", imds.url() + "/creds");
    auto k = NewContainerProvider(Options())->Fetch();
    EXPECT_FALSE(k.ok()) << body;
    EXPECT_THAT(std::string(k.status().message()), StartsWith("container:"))
        << body;
  }
  // Credentials that expired before they arrived (clock skew) are refused
  // with a message saying so.
  HostileEndpoint skewed(
      [expired](const emulator::HttpRequest&, emulator::ResponsePlan* plan) {
        Answer(plan, 200, expired);
      });
  env_.Set("AWS_CONTAINER_CREDENTIALS_FULL_URI", skewed.url() + "/c");
  auto k = NewContainerProvider(Options())->Fetch();
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("clock skew"));
}

TEST_F(ChainTest, ImdsWithoutTokenSupportIsAnError) {
  HostileEndpoint imdsv1(
      [](const emulator::HttpRequest& req, emulator::ResponsePlan* plan) {
        Answer(plan, req.method == "PUT" ? 403 : 200, "role");
      });
  env_.Set("AWS_EC2_METADATA_DISABLED", "");
  env_.Set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsv1.url());
  auto c = NewImdsProvider(Options())->Fetch();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()), StartsWith("imds:"));
}

TEST_F(ChainTest, CacheCountsFailuresOfAHostileEndpoint) {
  HostileEndpoint sts(
      [](const emulator::HttpRequest&, emulator::ResponsePlan* plan) {
        Answer(plan, 500,
               "<ErrorResponse><Error><Code>InternalFailure</Code>"
               "</Error></ErrorResponse>");
      });
  UseWebIdentity("good-token");
  env_.Set("AWS_ENDPOINT_URL_STS", sts.url());
  auto cache = CredentialsCache::Create(*NewDefaultChain(Options()), &clock_);
  ASSERT_TRUE(cache.ok());
  ASSERT_TRUE(
      WaitFor([&] { return (*cache)->stats().refresh_failures_total == 1; }));
  auto c = (*cache)->Get();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("web-identity"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("InternalFailure"));
}

}  // namespace
}  // namespace aws
}  // namespace fleetcanary

namespace fleetcanary {
namespace aws {
namespace {

class CountingProvider : public CredentialsProvider {
 public:
  std::string name() const override { return "counting"; }
  absl::StatusOr<AwsCredentials> Fetch() override {
    ++fetches;
    AwsCredentials c;
    c.keys = {"AKIDCOUNT", "secret", ""};
    c.provider = name();
    return c;
  }
  std::atomic<int> fetches{0};
};

// A cache created without start_now touches nothing until Start(): an agent
// that never needs AWS never calls STS or instance metadata.
TEST(CredentialsCacheTest, LazyCacheFetchesOnlyAfterStart) {
  SimulatedClock clock(kStart);
  auto provider = std::make_unique<CountingProvider>();
  CountingProvider* counting = provider.get();
  CacheOptions o;
  o.start_now = false;
  auto cache = CredentialsCache::Create(std::move(provider), &clock, o);
  ASSERT_TRUE(cache.ok());
  auto before = (*cache)->Get();
  EXPECT_EQ(before.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(before.status().message()), HasSubstr("not needed"));
  EXPECT_EQ(counting->fetches, 0);
  (*cache)->Start();
  EXPECT_TRUE((*cache)->WaitForFirst(absl::Hours(1)).ok());
  EXPECT_EQ(counting->fetches, 1);
  EXPECT_EQ((*cache)->Get()->access_key_id, "AKIDCOUNT");
  // Long-term keys: never refreshed.
  EXPECT_EQ((*cache)->stats().expiration, absl::InfiniteFuture());
}

}  // namespace
}  // namespace aws
}  // namespace fleetcanary
