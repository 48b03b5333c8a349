#include "agent/adhoc/adhoc.h"

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"

namespace fleetcanary {
namespace agent {
namespace {

struct Job {
  v1::AdhocProbe probe;
  // Probes in the job (count x sizes x urls); request i is built when it
  // starts (MakeRequestLocked), so a large job costs nothing up front and
  // never blocks the session thread that hands it over.
  uint64_t total = 0;
  uint64_t next = 0;
  uint64_t in_flight = 0;
  uint32_t concurrency = 1;
  bool cancelled = false;
};

class AdhocExecutorImpl : public AdhocExecutor {
 public:
  AdhocExecutorImpl(const AdhocExecutorOptions& options, ProbeEngine* engine,
                    Outbox* outbox, std::function<void()> on_outcome,
                    ResultSink send_result)
      : options_(options),
        engine_(engine),
        outbox_(outbox),
        on_outcome_(std::move(on_outcome)),
        send_result_(std::move(send_result)),
        rng_(options.seed) {}
  ~AdhocExecutorImpl() override {
    Stop();
    WaitIdle(absl::Seconds(30));
  }

  void OnAdhocProbe(const v1::AdhocProbe& p) override {
    std::vector<ProbeRequest> start;
    bool finished_now = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = jobs_.find(p.adhoc_id());
      if (p.cancel()) {
        if (it == jobs_.end() || it->second.cancelled) return;
        it->second.cancelled = true;
        ++stats_.jobs_cancelled_total;
        LogInfo("adhoc_cancel",
                {{"adhoc_id", p.adhoc_id()},
                 {"in_flight", absl::StrCat(it->second.in_flight)}});
        if (it->second.in_flight == 0) {
          jobs_.erase(it);
          finished_now = true;
        }
      } else {
        if (it != jobs_.end()) return;  // Already running.
        absl::Status ok = CheckLocked(p);
        if (!ok.ok()) {
          ++stats_.jobs_refused_total;
          LogWarning("adhoc_refused",
                     {{"adhoc_id", p.adhoc_id()}, {"error", ok.ToString()}});
          finished_now = true;
        } else {
          Job& job = jobs_[p.adhoc_id()];
          job.probe = p;
          job.concurrency = std::clamp<uint32_t>(p.concurrency(), 1,
                                                 options_.max_concurrency);
          // Round by round: every URL (mode) x size once per round.
          job.total =
              static_cast<uint64_t>(p.count()) * p.sizes_size() * p.urls_size();
          ++stats_.jobs_total;
          LogInfo("adhoc_start",
                  {{"adhoc_id", p.adhoc_id()},
                   {"probes", absl::StrCat(job.total)},
                   {"concurrency", absl::StrCat(job.concurrency)}});
          TakeLocked(&job, &start);
        }
      }
    }
    if (finished_now) {
      v1::AdhocResult r;
      r.set_adhoc_id(p.adhoc_id());
      r.set_done(true);
      send_result_(std::move(r));
    }
    StartAll(std::move(start));
  }

  void Stop() override {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) job.cancelled = true;
  }

  bool WaitIdle(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](AdhocExecutorImpl* e)
                 ABSL_NO_THREAD_SAFETY_ANALYSIS { return e->in_flight_ == 0; },
            this),
        timeout);
  }

  AdhocExecutorStats stats() override {
    absl::MutexLock lock(&mu_);
    AdhocExecutorStats s = stats_;
    s.running_jobs = static_cast<int>(jobs_.size());
    return s;
  }

 private:
  absl::Status CheckLocked(const v1::AdhocProbe& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_) return absl::UnavailableError("agent stopping");
    if (p.adhoc_id().empty())
      return absl::InvalidArgumentError("adhoc_id: required");
    if (p.urls().empty() || p.sizes().empty() || p.count() == 0) {
      return absl::InvalidArgumentError("urls, sizes and count: required");
    }
    if (static_cast<int>(jobs_.size()) >= options_.max_jobs) {
      return absl::ResourceExhaustedError("too many ad-hoc jobs");
    }
    const uint64_t total =
        static_cast<uint64_t>(p.count()) * p.sizes_size() * p.urls_size();
    if (total > options_.max_probes_per_job) {
      return absl::InvalidArgumentError(
          absl::StrCat(total, " probes above the per-job limit"));
    }
    return absl::OkStatus();
  }

  ProbeRequest MakeRequestLocked(const v1::AdhocProbe& p,
                                 const v1::FunctionUrl& u, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ProbeRequest r;
    r.url = u.url();
    r.mode = u.mode();
    r.auth = u.auth() == v1::AWS_IAM ? v1::AWS_IAM : v1::NONE;
    r.size_bytes = size;
    r.seed = rng_();
    r.probe_id = absl::StrFormat("%016x%016x", rng_(), rng_());
    r.limits = p.limits();
    r.transport = p.transport();
    r.agent_id = options_.agent_id;
    r.region = options_.region;
    r.target = p.target();
    r.role_arn = p.role_arn();
    r.adhoc_id = p.adhoc_id();
    return r;
  }

  // Moves up to the job's free concurrency of pending requests to `out`.
  void TakeLocked(Job* job, std::vector<ProbeRequest>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!job->cancelled && job->next < job->total &&
           job->in_flight < job->concurrency) {
      // Index -> (round, size, url), urls fastest: the order of a round.
      const uint64_t i = job->next++;
      const uint64_t per_round =
          static_cast<uint64_t>(job->probe.sizes_size()) *
          job->probe.urls_size();
      const uint64_t in_round = i % per_round;
      const int size_index =
          static_cast<int>(in_round / job->probe.urls_size());
      const int url_index = static_cast<int>(in_round % job->probe.urls_size());
      out->push_back(MakeRequestLocked(job->probe, job->probe.urls(url_index),
                                       job->probe.sizes(size_index)));
      ++job->in_flight;
      ++in_flight_;
      ++stats_.probes_started_total;
    }
  }

  // Starts `requests`. A probe whose start cannot be recorded (a full disk)
  // is not run: it ends at once as an AGENT_ERROR outcome, and the probes
  // that frees are started in the same loop (no recursion).
  void StartAll(std::vector<ProbeRequest> requests) {
    std::deque<ProbeRequest> queue(std::make_move_iterator(requests.begin()),
                                   std::make_move_iterator(requests.end()));
    while (!queue.empty()) {
      ProbeRequest r = std::move(queue.front());
      queue.pop_front();
      std::string id = r.adhoc_id;
      absl::Status marked = outbox_->MarkStarted(StartedSkeleton(r));
      if (!marked.ok()) {
        LogError("probe_not_run",
                 {{"adhoc_id", id},
                  {"reason", "its start could not be recorded"},
                  {"error", marked.ToString()}});
        for (ProbeRequest& next : Complete(id, NotRunOutcome(r, marked))) {
          queue.push_back(std::move(next));
        }
        continue;
      }
      engine_->Start(std::move(r),
                     [this, id](v1::Outcome o) { OnDone(id, std::move(o)); });
    }
  }

  // Engine loop thread.
  void OnDone(const std::string& id, v1::Outcome outcome) {
    StartAll(Complete(id, std::move(outcome)));
  }

  // Stores a finished probe's outcome, reports it, and returns the probes of
  // its run that may start now.
  std::vector<ProbeRequest> Complete(const std::string& id,
                                     v1::Outcome outcome) {
    absl::StatusOr<uint64_t> seq = outbox_->Append(outcome);
    if (seq.ok()) {
      outcome.set_sequence(*seq);
      if (on_outcome_) on_outcome_();
    } else {
      LogError("outbox_append_failed", {{"error", seq.status().ToString()}});
    }
    std::vector<ProbeRequest> start;
    bool done = false;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      ++stats_.probes_done_total;
      auto it = jobs_.find(id);
      if (it != jobs_.end()) {
        Job& job = it->second;
        --job.in_flight;
        TakeLocked(&job, &start);
        if (job.in_flight == 0 && (job.cancelled || job.next >= job.total)) {
          done = true;
          LogInfo("adhoc_done",
                  {{"adhoc_id", id},
                   {"started", absl::StrCat(job.next)},
                   {"cancelled", job.cancelled ? "true" : "false"}});
          jobs_.erase(it);
        }
      }
    }
    v1::AdhocResult r;
    r.set_adhoc_id(id);
    *r.mutable_outcome() = std::move(outcome);
    r.set_done(done);
    send_result_(std::move(r));
    return start;
  }

  const AdhocExecutorOptions options_;
  ProbeEngine* const engine_;
  Outbox* const outbox_;
  const std::function<void()> on_outcome_;
  const ResultSink send_result_;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  AdhocExecutorStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<AdhocExecutor>> AdhocExecutor::Create(
    const AdhocExecutorOptions& options, ProbeEngine* engine, Outbox* outbox,
    std::function<void()> on_outcome, ResultSink send_result) {
  if (!engine || !outbox || !send_result) {
    return absl::InvalidArgumentError("adhoc executor: missing dependency");
  }
  return std::unique_ptr<AdhocExecutor>(new AdhocExecutorImpl(
      options, engine, outbox, std::move(on_outcome), std::move(send_result)));
}

}  // namespace agent
}  // namespace fleetcanary
