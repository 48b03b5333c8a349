#include "agent/agent_app.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/adhoc/adhoc.h"
#include "agent/agent_app_credentials.h"
#include "agent/agent_app_metrics.h"
#include "agent/agent_app_sinks.h"
#include "agent/platform/cloudwatch_client.h"
#include "agent/platform/metrics_reader.h"
#include "agent/platform/platform_loop.h"
#include "agent/probe/probe_engine.h"
#include "common/aws/credentials.h"
#include "common/aws/http.h"
#include "common/aws/partition.h"
#include "common/build/build_info.h"
#include "common/log/log.h"
#include "common/metrics/metrics_export.h"
#include "common/metrics/process_metrics.h"
#include "common/proto/time_convert.h"
#include "common/sigv4/sigv4.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace agent {
namespace {

TargetGuardOptions GuardOptions(const v1::AgentConfig& c) {
  TargetGuardOptions o;
  o.allowed_hosts.assign(c.target_allow_hosts().begin(),
                         c.target_allow_hosts().end());
  if (c.target_allow_loopback()) {
    for (const char* h : {"localhost", "127.0.0.1", "::1"}) {
      o.allowed_hosts.push_back(h);
    }
  }
  o.allow_loopback = c.target_allow_loopback();
  o.allow_private = c.target_allow_private();
  return o;
}

// Fails with INVALID_ARGUMENT naming the first missing required field.
absl::Status ValidateConfig(const v1::AgentConfig& c) {
  if (c.agent_id().empty()) {
    return absl::InvalidArgumentError("agent_id: required");
  }
  if (c.region().empty()) return absl::InvalidArgumentError("region: required");
  if (c.controller_address().empty()) {
    return absl::InvalidArgumentError("controller_address: required");
  }
  if (c.data_dir().empty()) {
    return absl::InvalidArgumentError("data_dir: required");
  }
  return absl::OkStatus();
}

class AgentAppImpl : public AgentApp {
 public:
  AgentAppImpl(const AgentAppOptions& options, Clock* clock)
      : options_(options), clock_(clock) {}
  ~AgentAppImpl() override { Drain(absl::Seconds(5)); }

  // Builds and starts the parts in data-flow order; the first failure is
  // returned (what was started is stopped by the destructor's Drain).
  absl::Status Start() {
    const v1::AgentConfig& c = options_.config;
    FC_RETURN_IF_ERROR(ValidateConfig(c));
    FC_RETURN_IF_ERROR(OpenOutbox());
    FC_RETURN_IF_ERROR(MakeCredentials());
    FC_RETURN_IF_ERROR(MakeEngine());
    FC_RETURN_IF_ERROR(MakeRunners());
    fan_out_.Add(credentials_demand_.get());
    fan_out_.Add(runner_.get());
    FC_RETURN_IF_ERROR(StartPlatform());
    FC_RETURN_IF_ERROR(StartSession());
    FC_RETURN_IF_ERROR(StartHttp());
    LogInfo("agent_started", {{"agent", c.agent_id()},
                              {"region", c.region()},
                              {"controller", c.controller_address()},
                              {"http", http_address()}});
    return absl::OkStatus();
  }

  std::string http_address() const override {
    return http_ ? http_->address() : "";
  }

  bool Drain(absl::Duration timeout) override {
    {
      absl::MutexLock lock(&drain_mu_);
      if (drained_) return flushed_;
      drained_ = true;
    }
    const absl::Duration deadline = clock_->MonotonicNow() + timeout;
    if (runner_) {
      runner_->Stop();
      runner_->WaitIdle(deadline - clock_->MonotonicNow());
    }
    if (adhoc_) {
      adhoc_->Stop();
      adhoc_->WaitIdle(
          std::max(absl::ZeroDuration(), deadline - clock_->MonotonicNow()));
    }
    bool flushed = false;
    bool goodbye = false;
    SessionClient* session;
    {
      absl::MutexLock lock(&mu_);
      session = session_.get();
    }
    if (platform_loop_) platform_loop_->Stop();
    if (session) {
      flushed = session->WaitForFlush(
          std::max(absl::ZeroDuration(), deadline - clock_->MonotonicNow()));
      // Goodbye even when the flush timed out: what is left stays in the
      // (durable) outbox and is resent when this agent id comes back.
      goodbye = session->Goodbye(
          "shutdown",
          std::max(absl::Seconds(1), deadline - clock_->MonotonicNow()));
      session->Shutdown();
    }
    if (engine_) engine_->Shutdown();
    LogInfo(
        "agent_drained",
        {{"flushed", flushed ? "true" : "false"},
         {"goodbye", goodbye ? "true" : "false"},
         {"outbox_depth", absl::StrCat(outbox_ ? outbox_->stats().depth : 0)}});
    absl::MutexLock lock(&drain_mu_);
    flushed_ = flushed;
    return flushed;
  }

  OutboxStats outbox_stats() override { return outbox_->stats(); }
  SessionClientStats session_stats() override {
    absl::MutexLock lock(&mu_);
    return session_ ? session_->stats() : SessionClientStats();
  }
  RunnerStats runner_stats() override { return runner_->stats(); }

 private:
  // Creates data_dir if needed and opens <data_dir>/outbox.db.
  // FAILED_PRECONDITION when the directory cannot be made.
  absl::Status OpenOutbox() {
    const v1::AgentConfig& c = options_.config;
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir(), ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data_dir: cannot create ", c.data_dir(), ": ", ec.message()));
    }
    OutboxOptions oo;
    oo.path = (std::filesystem::path(c.data_dir()) / "outbox.db").string();
    oo.max_bytes = c.outbox_max_bytes();
    oo.journal_path = options_.outcome_journal;
    FC_ASSIGN_OR_RETURN(outbox_, Outbox::Create(oo));
    return absl::OkStatus();
  }

  // AWS credentials: the SDK-order chain, refreshed in the background, and
  // the targets' roles. Probes and CloudWatch reads take what is held (never
  // wait on STS); nothing is fetched until an assignment needs it.
  absl::Status MakeCredentials() {
    const v1::AgentConfig& c = options_.config;
    aws::ProviderOptions po;
    po.env = options_.aws_env ? options_.aws_env : aws::ProcessEnvironment();
    po.clock = clock_;
    po.region = c.region();
    po.session_name = absl::StrCat("fleetcanary-", c.agent_id()).substr(0, 64);
    aws_env_ = po.env;
    FC_ASSIGN_OR_RETURN(auto chain, aws::NewDefaultChain(po));
    aws::CacheOptions cache_options;
    cache_options.start_now = false;  // CredentialsDemandSink starts it.
    FC_ASSIGN_OR_RETURN(
        credentials_,
        aws::CredentialsCache::Create(std::move(chain), clock_, cache_options));
    roles_ = std::make_unique<RoleCredentials>(po, credentials_.get(), clock_);
    credentials_demand_ = std::make_unique<CredentialsDemandSink>(
        credentials_.get(), roles_.get(), c.cloudwatch_unsigned());
    return absl::OkStatus();
  }

  // The probe engine, signing with the held credentials and probing through
  // the agent's target guard.
  absl::Status MakeEngine() {
    const v1::AgentConfig& c = options_.config;
    ProbeEngineOptions eo;
    if (c.max_in_flight() > 0) eo.max_in_flight = c.max_in_flight();
    aws::CredentialsCache* cache = credentials_.get();
    eo.credentials = [cache] { return cache->Get(); };
    RoleCredentials* roles = roles_.get();
    eo.role_credentials = [roles](const std::string& role_arn) {
      return roles->Get(role_arn);
    };
    FC_ASSIGN_OR_RETURN(eo.guard, AgentTargetGuard(c));
    FC_ASSIGN_OR_RETURN(engine_, ProbeEngine::Create(eo, clock_));
    return absl::OkStatus();
  }

  // The schedule runner and the ad-hoc executor: both probe through the
  // engine into the outbox and wake the session when outcomes are stored.
  absl::Status MakeRunners() {
    const v1::AgentConfig& c = options_.config;
    RunnerOptions ro;
    ro.agent_id = c.agent_id();
    ro.region = c.region();
    ro.seed = options_.seed;
    FC_ASSIGN_OR_RETURN(runner_,
                        Runner::Create(ro, engine_.get(), outbox_.get(), clock_,
                                       [this] { NotifySession(); }));

    AdhocExecutorOptions ao;
    ao.agent_id = c.agent_id();
    ao.region = c.region();
    ao.seed = options_.seed ^ 0xad40c;
    FC_ASSIGN_OR_RETURN(adhoc_, AdhocExecutor::Create(
                                    ao, engine_.get(), outbox_.get(),
                                    [this] { NotifySession(); },
                                    [this](v1::AdhocResult r) {
                                      absl::MutexLock lock(&mu_);
                                      if (session_)
                                        session_->SendAdhocResult(std::move(r));
                                    }));
    return absl::OkStatus();
  }

  // What the session sends in Hello, its timing, and where ad-hoc probes go
  // (their role's credentials are ensured first).
  SessionClientOptions SessionOptions() {
    const v1::AgentConfig& c = options_.config;
    SessionClientOptions so;
    so.controller_address = c.controller_address();
    so.tls = options_.tls;
    v1::Hello& h = so.hello;
    h.set_agent_id(c.agent_id());
    h.set_region(c.region());
    h.set_zone(c.zone());
    h.mutable_labels()->insert(c.labels().begin(), c.labels().end());
    h.set_version(BuildVersion());
    h.add_capabilities("http2");
    h.add_capabilities("aws_iam");
    so.heartbeat_interval =
        DurationFromProtoOr(c.heartbeat_interval(), absl::Seconds(10));
    so.reconnect_min =
        DurationFromProtoOr(c.reconnect_min(), absl::Milliseconds(100));
    so.reconnect_max =
        DurationFromProtoOr(c.reconnect_max(), absl::Seconds(30));
    so.seed = options_.seed ^ 0x5eed;
    ProbeEngine* engine = engine_.get();
    so.in_flight = [engine] {
      return static_cast<uint32_t>(engine->in_flight());
    };
    AdhocExecutor* adhoc = adhoc_.get();
    RoleCredentials* roles = roles_.get();
    so.on_adhoc_probe = [adhoc, roles](const v1::AdhocProbe& p) {
      if (!p.cancel()) roles->Ensure(p.role_arn());
      adhoc->OnAdhocProbe(p);
    };
    return so;
  }

  // The session with the controller: drains the outbox, feeds assignments
  // to fan_out_, and carries the platform loop's samples.
  absl::Status StartSession() {
    FC_ASSIGN_OR_RETURN(auto session,
                        SessionClient::Create(SessionOptions(), outbox_.get(),
                                              &fan_out_, clock_));
    if (platform_loop_) platform_loop_->SetSession(session.get());
    absl::MutexLock lock(&mu_);
    session_ = std::move(session);
    return absl::OkStatus();
  }

  // The agent's HTTP port (unless metrics_listen is empty): /metrics,
  // /healthz, /readyz and the process metrics.
  absl::Status StartHttp() {
    const v1::AgentConfig& c = options_.config;
    if (c.metrics_listen().empty()) return absl::OkStatus();
    FC_ASSIGN_OR_RETURN(http_, MetricsHttpServer::Create(c.metrics_listen()));
    collectable_ =
        std::make_shared<FunctionCollectable>([this] { return Collect(); });
    http_->Register(collectable_);
    http_->AddPage("/healthz", [this] { return HealthPage(); });
    http_->AddPage("/readyz", [this] { return ReadyPage(); });
    process_metrics_ = NewProcessMetrics({"fleetcanary-agent"});
    http_->Register(process_metrics_);
    return absl::OkStatus();
  }
  // The platform-metrics reader. Requests are signed with the credential
  // chain's current credentials (or unsigned with cloudwatch_unsigned, an
  // emulator that does not check signatures). While no valid credentials
  // are held, reads fail (counted, logged) and
  // fleetcanary_agent_platform_metrics_enabled is 0.
  absl::Status StartPlatform() {
    const v1::AgentConfig& c = options_.config;
    platform::CloudWatchClientOptions co;
    co.clock = clock_;
    co.default_endpoint = aws_env_("AWS_ENDPOINT_URL_CLOUDWATCH");
    if (co.default_endpoint.empty()) {
      co.default_endpoint = aws_env_("AWS_ENDPOINT_URL");
    }
    if (c.cloudwatch_unsigned()) {
      co.sign = false;
    } else {
      aws::CredentialsCache* cache = credentials_.get();
      co.credentials_source = [cache] { return cache->Get(); };
      RoleCredentials* roles = roles_.get();
      co.role_credentials = [roles](const std::string& role_arn) {
        return roles->Get(role_arn);
      };
    }
    FC_ASSIGN_OR_RETURN(cloudwatch_, platform::CreateCloudWatchClient(co));
    platform::PlatformMetricsReaderOptions ro;
    ro.period = DurationFromProtoOr(c.metrics_period(), absl::Seconds(60));
    ro.ingestion_delay = DurationFromProtoOr(
        c.metrics_ingestion_delay(), std::min(absl::Minutes(5), 5 * ro.period));
    FC_ASSIGN_OR_RETURN(reader_, platform::PlatformMetricsReader::Create(
                                     ro, cloudwatch_.get(), clock_));
    FC_ASSIGN_OR_RETURN(platform_loop_,
                        PlatformLoop::Create(reader_.get(), clock_));
    // CloudWatch endpoints: monitoring.<region>.amazonaws.com, or the
    // configured hosts (an emulator); checked by name here (the CloudWatch
    // client resolves names itself, so the address check does not apply).
    TargetGuardOptions go = GuardOptions(c);
    go.host_patterns.assign(std::begin(aws::kCloudWatchHostPatterns),
                            std::end(aws::kCloudWatchHostPatterns));
    if (!co.default_endpoint.empty()) {
      // The operator's own override (AWS_ENDPOINT_URL_CLOUDWATCH) is trusted.
      FC_ASSIGN_OR_RETURN(aws::ParsedUrl u,
                          aws::ParseHttpUrl(co.default_endpoint,
                                            "AWS_ENDPOINT_URL_CLOUDWATCH"));
      go.allowed_hosts.push_back(u.host);
    }
    FC_ASSIGN_OR_RETURN(auto platform_guard, TargetGuard::Create(go));
    platform_guard_sink_ = std::make_unique<PlatformGuardSink>(
        std::move(platform_guard), platform_loop_.get(), co.default_endpoint);
    fan_out_.Add(platform_guard_sink_.get());
    return absl::OkStatus();
  }

  // GET /healthz (liveness): the process serves HTTP, has not stopped, and
  // its probe timer is not stuck. Losing the controller is not a reason to
  // restart the agent: its outbox keeps the outcomes and the session
  // reconnects by itself.
  HttpPage HealthPage() {
    {
      absl::MutexLock lock(&drain_mu_);
      if (drained_) {
        return HttpPage{"text/plain; charset=utf-8", "stopping\n", 503};
      }
    }
    // The probe timer wakes at least every minute; three minutes without a
    // wake-up means it is stuck (a restart is the remedy).
    const absl::Duration last_tick = runner_->stats().last_tick;
    const absl::Duration since = clock_->MonotonicNow() - last_tick;
    if (last_tick > absl::ZeroDuration() && since > absl::Minutes(3)) {
      LogError("probe_loop_stalled", {{"since", absl::FormatDuration(since)}});
      return HttpPage{"text/plain; charset=utf-8",
                      absl::StrCat("probe loop stalled for ",
                                   absl::FormatDuration(since), "\n"),
                      503};
    }
    return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
  }

  // GET /readyz: 200 once the session with the controller is up (Welcome
  // received on the current stream) and an AssignmentSet has been applied;
  // 503 naming what is missing otherwise, and while draining.
  HttpPage ReadyPage() {
    {
      absl::MutexLock lock(&drain_mu_);
      if (drained_) {
        return HttpPage{"text/plain; charset=utf-8", "draining\n", 503};
      }
    }
    if (!session_stats().connected) {
      return HttpPage{"text/plain; charset=utf-8",
                      "no session with the controller\n", 503};
    }
    if (fan_out_.applied() == 0) {
      return HttpPage{"text/plain; charset=utf-8",
                      "no assignments received yet\n", 503};
    }
    return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
  }

  void NotifySession() {
    absl::MutexLock lock(&mu_);
    if (session_) session_->Notify();
  }

  // /metrics: a snapshot of every part, shown by AgentMetricsView.
  std::vector<prometheus::MetricFamily> Collect() {
    AgentMetricsSnapshot s;
    s.region = options_.config.region();
    s.outbox = outbox_->stats();
    s.runner = runner_->stats();
    s.session = session_stats();
    s.in_flight = engine_->in_flight();
    if (platform_loop_) {
      s.platform_loop = true;
      s.platform_poll_errors_total = platform_loop_->poll_errors_total();
      s.platform_last_success = platform_loop_->last_success();
    }
    s.chain = credentials_->stats();
    if (platform_guard_sink_) {
      for (const auto& [key, allowed] : platform_guard_sink_->targets()) {
        // A target with a role reads with the role's credentials.
        const bool can_read =
            platform_loop_ != nullptr &&
            (options_.config.cloudwatch_unsigned() ||
             roles_->HeldFor(key.second, s.chain.has_credentials));
        s.platform_targets.push_back(
            {key.first, key.second, allowed && can_read});
      }
    }
    s.now = clock_->Now();
    std::tie(s.role_refreshes_total, s.role_refresh_failures_total) =
        roles_->totals();
    return AgentMetricsView(s);
  }

  AgentAppOptions options_;
  Clock* const clock_;
  std::unique_ptr<Outbox> outbox_;
  aws::EnvLookup aws_env_;
  std::unique_ptr<aws::CredentialsCache> credentials_;
  std::unique_ptr<RoleCredentials> roles_;
  std::unique_ptr<CredentialsDemandSink> credentials_demand_;
  std::unique_ptr<ProbeEngine> engine_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<AdhocExecutor> adhoc_;
  std::unique_ptr<platform::PlatformMetricsClient> cloudwatch_;
  std::unique_ptr<platform::PlatformMetricsReader> reader_;
  std::unique_ptr<PlatformLoop> platform_loop_;
  std::unique_ptr<PlatformGuardSink> platform_guard_sink_;
  FanOut fan_out_;
  std::unique_ptr<MetricsHttpServer> http_;
  std::shared_ptr<prometheus::Collectable> collectable_;
  std::shared_ptr<prometheus::Collectable> process_metrics_;

  absl::Mutex mu_;
  std::unique_ptr<SessionClient> session_ ABSL_GUARDED_BY(mu_);

  absl::Mutex drain_mu_;
  bool drained_ ABSL_GUARDED_BY(drain_mu_) = false;
  bool flushed_ ABSL_GUARDED_BY(drain_mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TargetGuard>> AgentTargetGuard(
    const v1::AgentConfig& config) {
  return TargetGuard::Create(GuardOptions(config));
}

absl::StatusOr<std::unique_ptr<AgentApp>> AgentApp::BuildAndStart(
    const AgentAppOptions& options, Clock* clock) {
  auto app = std::make_unique<AgentAppImpl>(options, clock);
  FC_RETURN_IF_ERROR(app->Start());
  return std::unique_ptr<AgentApp>(std::move(app));
}

}  // namespace agent
}  // namespace fleetcanary
