#include "controller/api/admin_core.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "analysis/probe_summary.h"
#include "analysis/report/report_builder.h"
#include "common/config/loader.h"
#include "common/log/log.h"
#include "common/status/status_util.h"
#include "common/time/periodic_task.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::Duration kDefaultProbeTimeout = absl::Seconds(30);
// How long an agent that said "done" may still deliver outcomes through
// ingest (its live results were lost with a broken stream).
constexpr absl::Duration kDoneGrace = absl::Seconds(3);

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Nanoseconds(TimeUtil::DurationToNanoseconds(d));
}

bool ValidMode(v1::InvokeMode m) {
  return m == v1::BUFFERED || m == v1::RESPONSE_STREAM;
}

std::string ModeName(v1::InvokeMode m) { return v1::InvokeMode_Name(m); }

// [a-z0-9-]+, not starting or ending with '-'.
bool ValidName(const std::string& s) {
  if (s.empty() || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckLimits(const std::string& field, const v1::ProbeLimits& l) {
  for (const auto& [name, d] :
       std::vector<std::pair<const char*, const google::protobuf::Duration*>>{
           {"timeout", &l.timeout()},
           {"stall_limit", &l.stall_limit()},
           {"connect_timeout", &l.connect_timeout()}}) {
    if (d->seconds() < 0 || d->nanos() < 0) {
      return Invalid(absl::StrCat(field, ".", name), "must not be negative");
    }
    if (FromProto(*d) > absl::Hours(1)) {
      return Invalid(absl::StrCat(field, ".", name), "at most 1h");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(const std::string& field,
                            const v1::TransportOptions& t) {
  if (!t.http_version().empty() && t.http_version() != "1.1" &&
      t.http_version() != "2") {
    return Invalid(absl::StrCat(field, ".http_version"),
                   absl::StrCat("\"", t.http_version(), "\" is not 1.1 or 2"));
  }
  return absl::OkStatus();
}

absl::Status CheckSizes(const std::string& field,
                        const google::protobuf::RepeatedField<uint64_t>& sizes,
                        const v1::ProbeLimits& limits) {
  std::set<uint64_t> seen;
  for (int i = 0; i < sizes.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (sizes[i] == 0) return Invalid(f, "must be > 0");
    if (limits.max_body_bytes() != 0 && sizes[i] > limits.max_body_bytes()) {
      return Invalid(f,
                     absl::StrCat(sizes[i], " is above limits.max_body_bytes ",
                                  limits.max_body_bytes()));
    }
    if (!seen.insert(sizes[i]).second) {
      return Invalid(f, absl::StrCat("duplicate size ", sizes[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModes(const std::string& field,
                        const google::protobuf::RepeatedField<int>& modes) {
  std::set<int> seen;
  for (int i = 0; i < modes.size(); ++i) {
    const auto m = static_cast<v1::InvokeMode>(modes[i]);
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (!ValidMode(m)) return Invalid(f, "must be BUFFERED or RESPONSE_STREAM");
    if (!seen.insert(m).second) {
      return Invalid(f, absl::StrCat("duplicate mode ", ModeName(m)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRegionNames(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<std::string>& regions) {
  std::set<std::string> seen;
  for (int i = 0; i < regions.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    if (regions[i].empty()) return Invalid(f, "must not be empty");
    if (!seen.insert(regions[i]).second) {
      return Invalid(f, absl::StrCat("duplicate region \"", regions[i], "\""));
    }
  }
  return absl::OkStatus();
}

// URLs of one region: modes set, each at most once, parseable http(s).
absl::Status CheckUrls(
    const std::string& field,
    const google::protobuf::RepeatedPtrField<v1::FunctionUrl>& urls,
    const TargetGuard& guard) {
  std::set<int> modes;
  for (int i = 0; i < urls.size(); ++i) {
    const std::string f = absl::StrCat(field, "[", i, "]");
    const v1::FunctionUrl& u = urls[i];
    if (!ValidMode(u.mode())) {
      return Invalid(f + ".mode", "must be BUFFERED or RESPONSE_STREAM");
    }
    if (!modes.insert(u.mode()).second) {
      return Invalid(f + ".mode",
                     absl::StrCat("two URLs for ", ModeName(u.mode())));
    }
    absl::Status s = guard.CheckUrl(u.url());
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(f, ".url: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// The host of an http(s) URL, or "" (the guard has already parsed it).
std::string HostOf(const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return "";
  start += 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(
      start, end == std::string::npos ? std::string::npos : end - start);
  const size_t at = authority.rfind('@');
  if (at != std::string::npos) authority = authority.substr(at + 1);
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    return close == std::string::npos ? "" : authority.substr(1, close - 1);
  }
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos) authority = authority.substr(0, colon);
  return absl::AsciiStrToLower(authority);
}

struct AgentShare {
  std::string agent_id;
  std::string region;
  uint64_t expected = 0;
  uint64_t received = 0;
  bool done = false;  // Everything received (or the run no longer waits).
  bool lost = false;  // Session ended first.
  // The agent said it finished; outcomes may still come through ingest.
  bool reported_done = false;
  absl::Duration reported_at;
};

struct RegionPlan {
  std::string region;
  std::vector<v1::FunctionUrl> urls;
  std::vector<std::string> agents;
  // The registered target's role_arn (empty for explicit URLs).
  std::string role_arn;
};

using SendFn =
    std::function<absl::Status(const std::string&, const v1::AdhocProbe&)>;

// Cancels an agent may not have received: sent while it was LOST (its
// stream closed, or about to be) or when it had no session. An agent keeps
// probing an ad-hoc run across reconnects, so they are sent again when its
// next session is welcomed, until `ttl` (the longest a run may last) ends.
class PendingCancels {
 public:
  PendingCancels(Clock* clock, absl::Duration ttl) : clock_(clock), ttl_(ttl) {}

  void Add(const std::string& agent_id, const v1::AdhocProbe& cancel) {
    absl::MutexLock lock(&mu_);
    std::deque<Entry>& q = pending_[agent_id];
    for (const Entry& e : q) {
      if (e.cancel.adhoc_id() == cancel.adhoc_id()) return;
    }
    q.push_back({cancel, clock_->MonotonicNow() + ttl_});
    while (q.size() > kMaxPerAgent) {
      LogWarning("adhoc_cancel_forgotten",
                 {{"agent", agent_id},
                  {"adhoc_id", q.front().cancel.adhoc_id()},
                  {"reason", "too many pending cancels for this agent"}});
      q.pop_front();
    }
  }

  // Removes and returns the agent's unexpired pending cancels.
  std::vector<v1::AdhocProbe> Take(const std::string& agent_id) {
    absl::MutexLock lock(&mu_);
    std::vector<v1::AdhocProbe> out;
    auto it = pending_.find(agent_id);
    if (it == pending_.end()) return out;
    const absl::Duration now = clock_->MonotonicNow();
    for (Entry& e : it->second) {
      if (e.expires > now) out.push_back(std::move(e.cancel));
    }
    pending_.erase(it);
    return out;
  }

  size_t size() {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& [id, q] : pending_) n += q.size();
    return n;
  }

 private:
  static constexpr size_t kMaxPerAgent = 64;
  struct Entry {
    v1::AdhocProbe cancel;
    absl::Duration expires;
  };
  Clock* const clock_;
  const absl::Duration ttl_;
  absl::Mutex mu_;
  std::map<std::string, std::deque<Entry>> pending_ ABSL_GUARDED_BY(mu_);
};

class RunImpl : public ProbeRun {
 public:
  RunImpl(std::string id, const v1::RunProbeRequest& request,
          ProbeEventSink* sink, SendFn send, Clock* clock,
          std::shared_ptr<PendingCancels> pending)
      : id_(std::move(id)),
        request_(request),
        sink_(sink),
        send_(std::move(send)),
        clock_(clock),
        pending_(std::move(pending)) {}

  std::string id() const override { return id_; }
  bool finished() const { return finished_.load(); }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    SendCancelLocked();
    LogInfo("adhoc_cancelled", {{"adhoc_id", id_}});
    FinishLocked(
        absl::CancelledError(absl::StrCat("ad-hoc run ", id_, " cancelled")),
        /*cancelled=*/true);
  }

  // Sends every share and emits Dispatched events.
  void Dispatch(const std::vector<RegionPlan>& plan, uint32_t concurrency,
                absl::Duration max_duration) {
    absl::MutexLock lock(&mu_);
    const uint64_t per_agent_streams =
        static_cast<uint64_t>(request_.sizes_size());
    absl::Duration longest = absl::ZeroDuration();
    const absl::Duration per_probe =
        request_.limits().has_timeout() &&
                FromProto(request_.limits().timeout()) > absl::ZeroDuration()
            ? FromProto(request_.limits().timeout())
            : kDefaultProbeTimeout;
    for (const RegionPlan& r : plan) {
      region_order_.push_back(r.region);
      builders_.emplace(r.region, analysis::SummaryBuilder(r.region));
      const uint64_t n = r.agents.size();
      const uint32_t per_agent_conc = static_cast<uint32_t>(
          std::max<uint64_t>(1, (concurrency + n - 1) / n));
      v1::RunProbeEvent event;
      v1::RunProbeEvent::Dispatched* d = event.mutable_dispatched();
      d->set_adhoc_id(id_);
      d->set_region(r.region);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t share =
            request_.count() / n + (i < request_.count() % n ? 1 : 0);
        if (share == 0) continue;
        v1::AdhocProbe p;
        p.set_adhoc_id(id_);
        p.set_target(request_.target());
        p.set_region(r.region);
        for (const v1::FunctionUrl& u : r.urls) *p.add_urls() = u;
        p.set_role_arn(r.role_arn);
        *p.mutable_sizes() = request_.sizes();
        p.set_count(static_cast<uint32_t>(share));
        p.set_concurrency(per_agent_conc);
        *p.mutable_limits() = request_.limits();
        *p.mutable_transport() = request_.transport();
        AgentShare& s = shares_[r.agents[i]];
        s.agent_id = r.agents[i];
        s.region = r.region;
        s.expected = share * r.urls.size() * per_agent_streams;
        region_agents_[r.region].push_back(r.agents[i]);
        absl::Status sent = send_(r.agents[i], p);
        if (!sent.ok()) {
          LogWarning("adhoc_dispatch_failed", {{"adhoc_id", id_},
                                               {"agent", r.agents[i]},
                                               {"error", sent.ToString()}});
          s.lost = true;
          lost_.push_back(r.agents[i]);
          continue;
        }
        d->add_agent_ids(r.agents[i]);
        d->set_probes(d->probes() + s.expected);
        const uint64_t waves =
            (s.expected + per_agent_conc - 1) / per_agent_conc;
        longest = std::max(longest, static_cast<int64_t>(waves) * per_probe);
      }
      sink_->OnEvent(std::move(event));
      LogInfo("adhoc_dispatched",
              {{"adhoc_id", id_},
               {"region", r.region},
               {"agents", absl::StrJoin(d->agent_ids(), ",")},
               {"probes", absl::StrCat(d->probes())}});
    }
    deadline_ = clock_->MonotonicNow() +
                std::min(max_duration, longest + absl::Seconds(30));
    MaybeFinishLocked();
  }

  void AddOutcome(const std::string& agent_id, const v1::Outcome& o) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    auto it = shares_.find(agent_id);
    if (it == shares_.end()) return;
    if (!o.probe_id().empty() && !seen_.insert(o.probe_id()).second) return;
    AgentShare& s = it->second;
    ++s.received;
    builders_.at(s.region).Add(o);
    if (request_.stream_outcomes()) {
      v1::RunProbeEvent event;
      *event.mutable_outcome() = o;
      if (!sink_->OnEvent(std::move(event))) ++dropped_events_;
    }
    if (s.received >= s.expected) s.done = true;
    MaybeFinishLocked();
  }

  void OnResult(const std::string& agent_id, const v1::AdhocResult& r) {
    if (r.has_outcome()) AddOutcome(agent_id, r.outcome());
    if (!r.done()) return;
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    auto it = shares_.find(agent_id);
    if (it == shares_.end() || it->second.done) return;
    it->second.reported_done = true;
    it->second.reported_at = clock_->MonotonicNow();
  }

  // Timer: lost agents, agents done but short, the deadline.
  void Check(const std::map<std::string, v1::AgentState>& states,
             absl::Duration now) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    for (auto& [id, s] : shares_) {
      if (s.done || s.lost) continue;
      auto st = states.find(id);
      if (st == states.end() || st->second != v1::LIVE) {
        s.lost = true;
        lost_.push_back(id);
        LogWarning("adhoc_agent_lost", {{"adhoc_id", id_}, {"agent", id}});
        // Its share is given up: stop its probing if it still has a stream,
        // and again when it reconnects (its stream is being closed).
        v1::AdhocProbe p;
        p.set_adhoc_id(id_);
        p.set_region(s.region);
        p.set_cancel(true);
        send_(id, p).IgnoreError();
        pending_->Add(id, p);
      } else if (s.reported_done && now - s.reported_at >= kDoneGrace) {
        s.done = true;
      }
    }
    if (now >= deadline_) {
      SendCancelLocked();
      FinishLocked(absl::DeadlineExceededError(
                       absl::StrCat("ad-hoc run ", id_, ": ", MissingLocked(),
                                    " probes did not report in time")),
                   false);
      return;
    }
    MaybeFinishLocked();
  }

 private:
  uint64_t MissingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t missing = 0;
    for (const auto& [id, s] : shares_) {
      if (s.received < s.expected) missing += s.expected - s.received;
    }
    return missing;
  }

  void SendCancelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, s] : shares_) {
      // Lost agents too: one marked LOST may still be probing.
      if (s.done) continue;
      v1::AdhocProbe p;
      p.set_adhoc_id(id_);
      p.set_region(s.region);
      p.set_cancel(true);
      const absl::Status sent = send_(id, p);
      // Not reachable now, or LOST (its stream closed or about to be):
      // sent again when it reconnects.
      if (!sent.ok() || s.lost) pending_->Add(id, p);
    }
  }

  bool RegionDoneLocked(const std::string& region)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& a : region_agents_[region]) {
      const AgentShare& s = shares_.at(a);
      if (!s.done && !s.lost) return false;
    }
    return true;
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool all = true;
    for (const std::string& region : region_order_) {
      if (summarized_.count(region)) continue;
      if (!RegionDoneLocked(region)) {
        all = false;
        continue;
      }
      summarized_.insert(region);
      for (v1::ProbeSummary& s : builders_.at(region).Build()) {
        v1::RunProbeEvent event;
        *event.mutable_region_summary() = std::move(s);
        sink_->OnEvent(std::move(event));
      }
    }
    if (!all) return;
    const uint64_t missing = MissingLocked();
    absl::Status status = absl::OkStatus();
    if (missing > 0) {
      status = absl::UnavailableError(absl::StrCat(
          "ad-hoc run ", id_, ": ", missing, " probes did not report",
          lost_.empty()
              ? ""
              : absl::StrCat("; agents lost: ", absl::StrJoin(lost_, ", "))));
    }
    FinishLocked(status, false);
  }

  void FinishLocked(const absl::Status& status, bool cancelled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::RunProbeEvent event;
    v1::RunProbeEvent::Done* d = event.mutable_done();
    d->set_adhoc_id(id_);
    for (const std::string& region : region_order_) {
      for (v1::ProbeSummary& s : builders_.at(region).Build()) {
        *d->add_summaries() = std::move(s);
      }
    }
    d->set_total_probes(seen_.size());
    d->set_cancelled(cancelled);
    d->set_missing_probes(MissingLocked());
    for (const std::string& a : lost_) d->add_lost_agents(a);
    d->set_dropped_outcome_events(dropped_events_);
    finished_ = true;
    LogInfo("adhoc_done", {{"adhoc_id", id_},
                           {"probes", absl::StrCat(seen_.size())},
                           {"missing", absl::StrCat(d->missing_probes())},
                           {"status", status.ToString()}});
    sink_->OnEvent(std::move(event));
    sink_->OnDone(status);
  }

  const std::string id_;
  const v1::RunProbeRequest request_;
  ProbeEventSink* const sink_;
  const SendFn send_;
  Clock* const clock_;
  const std::shared_ptr<PendingCancels> pending_;
  std::atomic<bool> finished_{false};

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<std::string, AgentShare> shares_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> region_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> region_agents_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, analysis::SummaryBuilder> builders_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> summarized_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> lost_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_events_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
};

// Counts live watchers; forwards destruction to the source's subscription.
class CountedSubscription : public VerdictSource::Subscription {
 public:
  CountedSubscription(std::unique_ptr<VerdictSource::Subscription> inner,
                      std::atomic<int>* count)
      : inner_(std::move(inner)), count_(count) {}
  ~CountedSubscription() override {
    inner_.reset();
    --*count_;
  }

 private:
  std::unique_ptr<VerdictSource::Subscription> inner_;
  std::atomic<int>* count_;
};

class AdminCoreImpl : public AdminCore {
 public:
  AdminCoreImpl(const AdminCoreOptions& options, const AdminCoreDeps& deps)
      : options_(options),
        deps_(deps),
        rng_(options.seed != 0
                 ? options.seed
                 : static_cast<uint64_t>(absl::ToUnixNanos(deps.clock->Now()))),
        timer_(deps.clock, options.check_interval, [this] { CheckRuns(); }) {}
  ~AdminCoreImpl() override { Shutdown(); }

  absl::StatusOr<std::shared_ptr<ProbeRun>> RunProbe(
      const v1::RunProbeRequest& request, ProbeEventSink* sink) override {
    if (standby()) return NotLeader();
    std::vector<RegionPlan> plan;
    FC_RETURN_IF_ERROR(Plan(request, &plan));
    std::shared_ptr<RunImpl> run;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::UnavailableError("controller shutting down");
      int active = 0;
      for (const auto& [id, r] : runs_) active += r->finished() ? 0 : 1;
      if (active >= options_.max_active_runs) {
        return absl::ResourceExhaustedError(
            absl::StrCat("too many ad-hoc runs in progress (", active,
                         "); wait for one to finish"));
      }
      const std::string id =
          absl::StrFormat("adhoc-%012x", rng_() & 0xffffffffffffull);
      run = std::make_shared<RunImpl>(id, request, sink, deps_.send_adhoc,
                                      deps_.clock, pending_cancels_);
      runs_[id] = run;
    }
    const uint32_t concurrency = request.concurrency() > 0
                                     ? request.concurrency()
                                     : options_.default_concurrency;
    run->Dispatch(plan, concurrency, options_.max_run_duration);
    return std::shared_ptr<ProbeRun>(run);
  }

  absl::StatusOr<v1::ApplySchedulesResponse> ApplySchedules(
      const v1::ApplySchedulesRequest& request) override {
    if (standby()) return NotLeader();
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    std::unique_ptr<TargetGuard> syntax = TargetGuard::AllowAll();
    std::set<std::string> names;
    for (int i = 0; i < request.targets_size(); ++i) {
      const v1::Target& t = request.targets(i);
      const std::string f = absl::StrCat("targets[", i, "]");
      if (!ValidName(t.name())) {
        return Invalid(f + ".name",
                       absl::StrCat("\"", t.name(),
                                    "\" must be lowercase letters, digits "
                                    "and '-'"));
      }
      if (!names.insert(t.name()).second) {
        return Invalid(f + ".name",
                       absl::StrCat("duplicate target \"", t.name(), "\""));
      }
      std::set<std::string> regions;
      for (int r = 0; r < t.regions_size(); ++r) {
        const v1::RegionEndpoints& re = t.regions(r);
        const std::string rf = absl::StrCat(f, ".regions[", r, "]");
        if (!regions.insert(re.region()).second) {
          return Invalid(rf + ".region", absl::StrCat("duplicate region \"",
                                                      re.region(), "\""));
        }
        FC_RETURN_IF_ERROR(CheckUrls(rf + ".urls", re.urls(), *syntax));
      }
    }
    std::set<std::string> ids;
    for (int i = 0; i < request.schedules_size(); ++i) {
      const v1::Schedule& s = request.schedules(i);
      const std::string f = absl::StrCat("schedules[", i, "]");
      if (!ValidName(s.id())) {
        return Invalid(f + ".id",
                       absl::StrCat("\"", s.id(),
                                    "\" must be lowercase letters, digits "
                                    "and '-'"));
      }
      if (!ids.insert(s.id()).second) {
        return Invalid(f + ".id",
                       absl::StrCat("duplicate id \"", s.id(), "\""));
      }
      FC_RETURN_IF_ERROR(CheckRegionNames(f + ".regions", s.regions()));
      FC_RETURN_IF_ERROR(CheckModes(f + ".modes", s.modes()));
      FC_RETURN_IF_ERROR(CheckSizes(f + ".sizes", s.sizes(), s.limits()));
      if (!(s.rate_per_second() > 0)) {
        return Invalid(f + ".rate_per_second", "required, > 0");
      }
      FC_RETURN_IF_ERROR(CheckLimits(f + ".limits", s.limits()));
      FC_RETURN_IF_ERROR(CheckTransport(f + ".transport", s.transport()));
      if (s.chunk_gap().seconds() < 0 || s.chunk_gap().nanos() < 0) {
        return Invalid(f + ".chunk_gap", "must not be negative");
      }
    }
    // Target existence and regions of the target: the scheduler checks them
    // against the stored targets plus the request's, before changing anything.
    absl::StatusOr<v1::ApplySchedulesResponse> r =
        deps_.scheduler->ApplySchedules(request);
    if (r.ok()) {
      LogInfo("schedules_applied",
              {{"created", absl::StrJoin(r->created(), ",")},
               {"updated", absl::StrJoin(r->updated(), ",")},
               {"deleted", absl::StrJoin(r->deleted(), ",")},
               {"dry_run", request.dry_run() ? "true" : "false"}});
    }
    return r;
  }

  absl::StatusOr<v1::ListSchedulesResponse> ListSchedules(
      const v1::ListSchedulesRequest&) override {
    if (standby()) {
      FC_ASSIGN_OR_RETURN(v1::FleetConfig fleet,
                          deps_.standby_store->LoadFleet());
      v1::ListSchedulesResponse out;
      *out.mutable_targets() = std::move(*fleet.mutable_targets());
      *out.mutable_schedules() = std::move(*fleet.mutable_schedules());
      return out;
    }
    return deps_.scheduler->ListSchedules();
  }

  absl::Status DeleteSchedule(
      const v1::DeleteScheduleRequest& request) override {
    if (standby()) return NotLeader();
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    absl::Status s = deps_.scheduler->DeleteSchedule(request.id());
    if (s.ok()) LogInfo("schedule_deleted", {{"id", request.id()}});
    return s;
  }

  absl::StatusOr<v1::ListAgentsResponse> ListAgents(
      const v1::ListAgentsRequest& request) override {
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    if (standby()) return StandbyListAgents(request);
    std::vector<v1::AgentInfo> agents =
        deps_.scheduler->ListAgents(request.region());
    if (!request.region().empty() && agents.empty() &&
        !KnownRegion(request.region())) {
      return absl::NotFoundError(absl::StrCat(
          "region \"", request.region(),
          "\": no agent has connected from it and no target names it"));
    }
    std::sort(agents.begin(), agents.end(),
              [](const v1::AgentInfo& a, const v1::AgentInfo& b) {
                return std::tie(a.region(), a.agent_id()) <
                       std::tie(b.region(), b.agent_id());
              });
    v1::ListAgentsResponse out;
    for (v1::AgentInfo& a : agents) {
      if (deps_.ingest) {
        a.set_applied_sequence(deps_.ingest->AppliedSequence(a.agent_id()));
      }
      *out.add_agents() = std::move(a);
    }
    for (const std::string& r : deps_.scheduler->RegionsWithoutAgents()) {
      if (request.region().empty() || r == request.region()) {
        out.add_regions_without_agents(r);
      }
    }
    return out;
  }

  absl::StatusOr<v1::GetVerdictsResponse> GetVerdicts(
      const v1::GetVerdictsRequest& request) override {
    FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
    FC_ASSIGN_OR_RETURN(
        std::vector<v1::Verdict> verdicts,
        deps_.verdicts->Current(request.filter(), request.include_healthy()));
    v1::GetVerdictsResponse out;
    for (v1::Verdict& v : verdicts) *out.add_verdicts() = std::move(v);
    return out;
  }

  absl::StatusOr<std::unique_ptr<VerdictSource::Subscription>> WatchVerdicts(
      const v1::WatchVerdictsRequest& request,
      VerdictSource::Callback callback) override {
    FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
    if (++watchers_ > options_.max_active_runs) {
      --watchers_;
      return absl::ResourceExhaustedError(
          "too many WatchVerdicts streams open; close one first");
    }
    // Transitions that arrive while the current verdicts are being sent
    // wait, so the caller sees current state first, then changes in order.
    struct Gate {
      absl::Mutex mu;
      bool open ABSL_GUARDED_BY(mu) = false;
      std::vector<v1::Verdict> pending ABSL_GUARDED_BY(mu);
    };
    auto gate = std::make_shared<Gate>();
    auto sub = deps_.verdicts->Subscribe(
        request.filter(), [gate, callback](const v1::Verdict& v) {
          absl::MutexLock lock(&gate->mu);
          if (!gate->open) {
            gate->pending.push_back(v);
            return;
          }
          callback(v);
        });
    absl::StatusOr<std::vector<v1::Verdict>> current =
        deps_.verdicts->Current(request.filter(), true);
    if (!current.ok()) {
      sub.reset();
      --watchers_;
      return current.status();
    }
    {
      absl::MutexLock lock(&gate->mu);
      for (const v1::Verdict& v : *current) callback(v);
      for (const v1::Verdict& v : gate->pending) callback(v);
      gate->pending.clear();
      gate->open = true;
    }
    return std::unique_ptr<VerdictSource::Subscription>(
        new CountedSubscription(std::move(sub), &watchers_));
  }

  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override {
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    FC_RETURN_IF_ERROR(CheckFilter("filter", request.filter()));
    for (const auto& [name, t] : std::vector<
             std::pair<const char*, const google::protobuf::Timestamp*>>{
             {"from", &request.from()},
             {"to", &request.to()},
             {"declared_fix_time", &request.declared_fix_time()}}) {
      if (t->seconds() < TimeUtil::kTimestampMinSeconds ||
          t->seconds() > TimeUtil::kTimestampMaxSeconds || t->nanos() < 0 ||
          t->nanos() > 999999999) {
        return Invalid(name, "not a valid timestamp");
      }
    }
    if (request.has_from() && request.has_to() &&
        TimeUtil::TimestampToNanoseconds(request.from()) >=
            TimeUtil::TimestampToNanoseconds(request.to())) {
      return Invalid("from", "must be before to");
    }
    return deps_.verdicts->Analyze(request);
  }

  absl::StatusOr<v1::IncidentReport> Report(
      const v1::ReportRequest& request) override {
    FC_RETURN_IF_ERROR(ValidateMessage(request));
    if (request.target().empty()) return Invalid("target", "required");
    for (int i = 0; i < request.regions_size(); ++i) {
      if (request.regions(i).empty()) {
        return Invalid(absl::StrCat("regions[", i, "]"), "must not be empty");
      }
    }
    for (const auto& [name, t] : std::vector<
             std::pair<const char*, const google::protobuf::Timestamp*>>{
             {"from", &request.from()},
             {"to", &request.to()},
             {"declared_fix_time", &request.declared_fix_time()}}) {
      if (t->seconds() < TimeUtil::kTimestampMinSeconds ||
          t->seconds() > TimeUtil::kTimestampMaxSeconds || t->nanos() < 0 ||
          t->nanos() > 999999999) {
        return Invalid(name, "not a valid timestamp");
      }
    }
    if (!request.has_from()) return Invalid("from", "required");
    if (!request.has_to()) return Invalid("to", "required");
    const absl::Time from =
        absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.from()));
    const absl::Time to =
        absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(request.to()));
    if (from >= to) return Invalid("from", "must be before to");
    if (deps_.store == nullptr) {
      return absl::FailedPreconditionError("Report: no store configured");
    }
    v1::AnalyzeRequest analyze;
    analyze.mutable_filter()->set_target(request.target());
    if (request.regions_size() == 1) {
      analyze.mutable_filter()->set_region(request.regions(0));
    }
    *analyze.mutable_from() = request.from();
    *analyze.mutable_to() = request.to();
    if (request.has_declared_fix_time()) {
      *analyze.mutable_declared_fix_time() = request.declared_fix_time();
    }
    report::ReportData data;
    FC_ASSIGN_OR_RETURN(data.analysis, deps_.verdicts->Analyze(analyze));
    FC_ASSIGN_OR_RETURN(
        data.minutes,
        QueryStreamCounts(deps_.store, MinuteOf(from),
                          MinuteOf(to - absl::Nanoseconds(1)) + 1));
    FC_ASSIGN_OR_RETURN(data.outcomes, deps_.store->QueryFailures(
                                           from, options_.report_max_failures));
    FC_ASSIGN_OR_RETURN(data.platform_samples,
                        deps_.store->QueryPlatformSamples(from, to));
    if (deps_.scheduler != nullptr) {
      const v1::ListSchedulesResponse fleet = deps_.scheduler->ListSchedules();
      data.targets.assign(fleet.targets().begin(), fleet.targets().end());
    }
    report::ReportOptions options;
    options.target = request.target();
    options.regions.assign(request.regions().begin(), request.regions().end());
    options.from = from;
    options.to = to;
    options.generated_at = deps_.clock->Now();
    options.source = "controller store";
    options.detection = options_.detection;
    if (request.max_samples() > 0) options.max_samples = request.max_samples();
    return report::BuildIncidentReport(data, options);
  }

  void OnAdhocResult(const std::string& agent_id,
                     const v1::AdhocResult& result) override {
    std::shared_ptr<RunImpl> run = Find(result.adhoc_id());
    if (run) run->OnResult(agent_id, result);
  }

  void OnAgentConnected(const std::string& agent_id) override {
    for (const v1::AdhocProbe& cancel : pending_cancels_->Take(agent_id)) {
      const absl::Status sent = deps_.send_adhoc(agent_id, cancel);
      LogInfo("adhoc_cancel_resent", {{"adhoc_id", cancel.adhoc_id()},
                                      {"agent", agent_id},
                                      {"status", sent.ToString()}});
      if (!sent.ok()) pending_cancels_->Add(agent_id, cancel);
    }
  }

  size_t pending_cancels() override { return pending_cancels_->size(); }

  void OnCommitted(const CommittedBatch& batch) override {
    for (const v1::Outcome& o : batch.outcomes) {
      if (o.adhoc_id().empty()) continue;
      std::shared_ptr<RunImpl> run = Find(o.adhoc_id());
      if (run) run->AddOutcome(o.agent_id(), o);
    }
  }

  int active_runs() override {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& [id, r] : runs_) n += r->finished() ? 0 : 1;
    return n;
  }

  void Shutdown() override {
    std::vector<std::shared_ptr<RunImpl>> runs;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& [id, r] : runs_) runs.push_back(r);
    }
    for (auto& r : runs) r->Cancel();
    timer_.Stop();
  }

 private:
  std::shared_ptr<RunImpl> Find(const std::string& id) {
    if (id.empty()) return nullptr;
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(id);
    return it == runs_.end() ? nullptr : it->second;
  }

  bool KnownRegion(const std::string& region) {
    const v1::ListSchedulesResponse fleet = deps_.scheduler->ListSchedules();
    for (const v1::Target& t : fleet.targets()) {
      for (const v1::RegionEndpoints& r : t.regions()) {
        if (r.region() == region) return true;
      }
    }
    return false;
  }

  static absl::Status CheckFilter(const std::string& field,
                                  const v1::StreamKey& key) {
    FC_RETURN_IF_ERROR(ValidateMessage(key));
    for (const auto& [name, value, max] :
         std::vector<std::tuple<const char*, const std::string*, size_t>>{
             {"region", &key.region(), 64},
             {"target", &key.target(), 63},
             {"size_class", &key.size_class(), 32}}) {
      if (value->size() > max) {
        return Invalid(absl::StrCat(field, ".", name),
                       absl::StrCat("at most ", max, " characters"));
      }
    }
    if (key.mode() != v1::INVOKE_MODE_UNSPECIFIED && !ValidMode(key.mode())) {
      return Invalid(field + ".mode", "must be BUFFERED or RESPONSE_STREAM");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<TargetGuard>> Guard(
      const v1::ListSchedulesResponse& fleet) {
    TargetGuardOptions o = options_.guard;
    for (const v1::Target& t : fleet.targets()) {
      for (const v1::RegionEndpoints& r : t.regions()) {
        for (const v1::FunctionUrl& u : r.urls()) {
          const std::string host = HostOf(u.url());
          if (!host.empty()) o.allowed_hosts.push_back(host);
        }
      }
    }
    return TargetGuard::Create(std::move(o));
  }

  // Validates a RunProbe request and resolves what to send where.
  absl::Status Plan(const v1::RunProbeRequest& req,
                    std::vector<RegionPlan>* plan) {
    FC_RETURN_IF_ERROR(ValidateMessage(req));
    if (req.target().empty() && req.urls().empty()) {
      return Invalid("target",
                     "give a registered target or explicit urls to probe");
    }
    if (!req.target().empty() && !req.urls().empty()) {
      return Invalid("urls", "give either a target or urls, not both");
    }
    if (req.count() == 0) return Invalid("count", "required (1 to 10000)");
    FC_RETURN_IF_ERROR(CheckModes("modes", req.modes()));
    FC_RETURN_IF_ERROR(CheckSizes("sizes", req.sizes(), req.limits()));
    FC_RETURN_IF_ERROR(CheckRegionNames("regions", req.regions()));
    FC_RETURN_IF_ERROR(CheckLimits("limits", req.limits()));
    FC_RETURN_IF_ERROR(CheckTransport("transport", req.transport()));
    std::set<int> modes(req.modes().begin(), req.modes().end());
    if (modes.empty()) modes = {v1::BUFFERED, v1::RESPONSE_STREAM};

    const v1::ListSchedulesResponse fleet = deps_.scheduler->ListSchedules();
    // Region -> URLs to probe there.
    std::vector<std::pair<std::string, std::vector<v1::FunctionUrl>>> wanted;
    std::string role_arn;  // Of the registered target.
    std::map<std::string, std::vector<std::string>> live;
    std::set<std::string> known_regions;
    for (const v1::AgentInfo& a : deps_.scheduler->ListAgents("")) {
      known_regions.insert(a.region());
      if (a.state() == v1::LIVE) live[a.region()].push_back(a.agent_id());
    }
    if (!req.target().empty()) {
      const v1::Target* target = nullptr;
      for (const v1::Target& t : fleet.targets()) {
        if (t.name() == req.target()) target = &t;
      }
      if (target == nullptr) {
        return absl::NotFoundError(absl::StrCat(
            "target: \"", req.target(),
            "\" is not registered (canaryctl schedules list shows targets)"));
      }
      role_arn = target->role_arn();
      auto urls_of = [&](const v1::RegionEndpoints& re) {
        std::vector<v1::FunctionUrl> urls;
        for (const v1::FunctionUrl& u : re.urls()) {
          if (modes.count(u.mode())) urls.push_back(u);
        }
        return urls;
      };
      if (req.regions().empty()) {
        for (const v1::RegionEndpoints& re : target->regions()) {
          wanted.emplace_back(re.region(), urls_of(re));
        }
      } else {
        for (int i = 0; i < req.regions_size(); ++i) {
          const v1::RegionEndpoints* found = nullptr;
          for (const v1::RegionEndpoints& re : target->regions()) {
            if (re.region() == req.regions(i)) found = &re;
          }
          if (found == nullptr) {
            return absl::NotFoundError(
                absl::StrCat("regions[", i, "]: target \"", req.target(),
                             "\" has no region \"", req.regions(i), "\""));
          }
          wanted.emplace_back(found->region(), urls_of(*found));
        }
      }
      for (const auto& [region, urls] : wanted) {
        if (urls.empty()) {
          return Invalid(
              "modes",
              absl::StrCat("target \"", req.target(), "\" region \"", region,
                           "\" has no URL in the requested modes"));
        }
      }
    } else {
      FC_ASSIGN_OR_RETURN(std::unique_ptr<TargetGuard> guard, Guard(fleet));
      FC_RETURN_IF_ERROR(CheckUrls("urls", req.urls(), *guard));
      for (int i = 0; i < req.urls_size(); ++i) {
        const std::string host = HostOf(req.urls(i).url());
        // An IP literal is checked as the address it will connect to.
        if (guard->CheckAddressText(host).code() ==
            absl::StatusCode::kPermissionDenied) {
          return absl::PermissionDeniedError(absl::StrCat(
              "urls[", i, "].url: ", guard->CheckAddressText(host).message(),
              " (the controller's --target_allow_loopback / "
              "--target_allow_hosts decide)"));
        }
      }
      std::vector<v1::FunctionUrl> urls;
      for (const v1::FunctionUrl& u : req.urls()) {
        if (modes.count(u.mode())) urls.push_back(u);
      }
      if (urls.empty()) {
        return Invalid("modes", "none of the urls is in the requested modes");
      }
      if (req.regions().empty()) {
        for (const auto& [region, agents] : live)
          wanted.emplace_back(region, urls);
        if (wanted.empty()) {
          return absl::FailedPreconditionError(
              "no live agent in any region: start fleetcanary-agent "
              "(canaryctl agents shows the fleet)");
        }
      } else {
        for (int i = 0; i < req.regions_size(); ++i) {
          if (!known_regions.count(req.regions(i)) &&
              !KnownRegion(req.regions(i))) {
            return absl::NotFoundError(absl::StrCat(
                "regions[", i, "]: unknown region \"", req.regions(i),
                "\" (no agent has connected from it and no target names it)"));
          }
          wanted.emplace_back(req.regions(i), urls);
        }
      }
    }
    const uint64_t total = static_cast<uint64_t>(req.count()) *
                           req.sizes_size() * modes.size() * wanted.size();
    if (total > options_.max_probes_per_run) {
      return Invalid(
          "count",
          absl::StrCat(req.count(), " x ", req.sizes_size(), " sizes x ",
                       modes.size(), " modes x ", wanted.size(),
                       " regions = ", total, " probes, above the limit of ",
                       options_.max_probes_per_run, " per run"));
    }
    for (auto& [region, urls] : wanted) {
      auto it = live.find(region);
      if (it == live.end() || it->second.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "region \"", region,
            "\" has no live agent (canaryctl agents shows the fleet)"));
      }
      std::vector<std::string> agents = it->second;
      std::sort(agents.begin(), agents.end());
      plan->push_back({region, std::move(urls), std::move(agents), role_arn});
    }
    return absl::OkStatus();
  }

  bool standby() const { return deps_.standby_store != nullptr; }

  absl::Status NotLeader() const {
    std::string leader =
        deps_.leader_address ? deps_.leader_address() : std::string();
    return absl::UnavailableError(absl::StrCat(
        "not the leader; leader=", leader.empty() ? "unknown" : leader));
  }

  // Agents as the shared store knows them (see AdminCoreDeps).
  absl::StatusOr<v1::ListAgentsResponse> StandbyListAgents(
      const v1::ListAgentsRequest& request) {
    FC_ASSIGN_OR_RETURN(std::vector<AgentRecord> records,
                        deps_.standby_store->LoadAgents());
    const absl::Time now = deps_.clock->Now();
    v1::ListAgentsResponse out;
    std::sort(records.begin(), records.end(),
              [](const AgentRecord& a, const AgentRecord& b) {
                return std::tie(a.region, a.agent_id) <
                       std::tie(b.region, b.agent_id);
              });
    for (const AgentRecord& r : records) {
      if (!request.region().empty() && r.region != request.region()) continue;
      v1::AgentInfo* a = out.add_agents();
      a->set_agent_id(r.agent_id);
      a->set_region(r.region);
      a->set_applied_sequence(r.applied_sequence);
      a->set_dropped_total(r.dropped_total);
      const bool seen = r.last_seen > absl::UnixEpoch();
      if (seen) {
        *a->mutable_last_heartbeat() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(r.last_seen));
      }
      a->set_state(seen && now - r.last_seen <= deps_.standby_liveness
                       ? v1::LIVE
                       : v1::LOST);
    }
    if (!request.region().empty() && out.agents_size() == 0) {
      return absl::NotFoundError(
          absl::StrCat("region \"", request.region(),
                       "\": no agent from it has committed outcomes"));
    }
    return out;
  }

  // The timer's run, every check_interval: forgets finished runs and lets
  // each active one check its agents' states and its deadline.
  void CheckRuns() {
    std::vector<std::shared_ptr<RunImpl>> runs;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (auto it = runs_.begin(); it != runs_.end();) {
        if (it->second->finished()) {
          it = runs_.erase(it);
        } else {
          runs.push_back(it->second);
          ++it;
        }
      }
    }
    if (runs.empty()) return;
    std::map<std::string, v1::AgentState> states;
    for (const v1::AgentInfo& a : deps_.scheduler->ListAgents("")) {
      states[a.agent_id()] = a.state();
    }
    const absl::Duration now = deps_.clock->MonotonicNow();
    for (auto& r : runs) r->Check(states, now);
  }

  const AdminCoreOptions options_;
  const AdminCoreDeps deps_;
  const std::shared_ptr<PendingCancels> pending_cancels_ =
      std::make_shared<PendingCancels>(deps_.clock, options_.max_run_duration);
  std::atomic<int> watchers_{0};

  absl::Mutex mu_;
  // State below is protected by mu_.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<RunImpl>> runs_ ABSL_GUARDED_BY(mu_);

  // Last: its runs use the members above, so it is stopped (destroyed)
  // before they are.
  PeriodicTask timer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Create(
    const AdminCoreOptions& options, const AdminCoreDeps& deps) {
  const bool standby = deps.standby_store != nullptr;
  if (!deps.verdicts || !deps.clock ||
      (!standby && (!deps.scheduler || !deps.send_adhoc))) {
    return absl::InvalidArgumentError("admin core: missing dependency");
  }
  if (options.check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("check_interval: must be > 0");
  }
  // The allowlist must be valid before any request uses it.
  FC_RETURN_IF_ERROR(TargetGuard::Create(options.guard).status());
  return std::unique_ptr<AdminCore>(new AdminCoreImpl(options, deps));
}

}  // namespace controller
}  // namespace fleetcanary
