#include "controller/ingest/ingest.h"

#include <algorithm>
#include <deque>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/status/status_util.h"
#include "controller/ingest/flow_control.h"

namespace fleetcanary {
namespace controller {
namespace {

constexpr char kCommitErrors[] = "ingest_commit_errors_total";
constexpr char kPlatformSamples[] = "ingest_platform_samples_total";

struct Item {
  enum class Kind { kOutcomes, kPlatform, kDropped } kind = Kind::kOutcomes;
  std::string agent_id;
  std::string region;
  v1::OutcomeBatch outcomes;
  v1::PlatformMetricBatch platform;
  uint64_t dropped_total = 0;
  Ingest::DoneCallback done;
  // One flag per outcome the session refused (or empty).
  std::vector<bool> rejected;
};

using ingest_internal::FlowControl;

class IngestImpl : public Ingest {
 public:
  IngestImpl(const IngestOptions& options, Store* store,
             ControllerMetrics* metrics, Clock* clock)
      : options_(options), store_(store), metrics_(metrics), clock_(clock) {}

  ~IngestImpl() override { Shutdown(); }

  absl::Status Init() {
    auto agents = store_->LoadAgents();
    if (!agents.ok()) return agents.status();
    absl::MutexLock lock(&agents_mu_);
    for (AgentRecord& a : *agents) agents_[a.agent_id] = std::move(a);
    metrics_->SetIngestLoadProvider([flow = flow_] { return flow->Load(); });
    writer_ = std::thread([this] { WriterLoop(); });
    return absl::OkStatus();
  }

  void SubmitOutcomes(const std::string& agent_id, const std::string& region,
                      v1::OutcomeBatch batch, DoneCallback done,
                      std::vector<bool> rejected) override {
    Item item;
    item.kind = Item::Kind::kOutcomes;
    item.rejected = std::move(rejected);
    item.agent_id = agent_id;
    item.region = region;
    item.outcomes = std::move(batch);
    item.done = std::move(done);
    Enqueue(std::move(item));
  }

  void SubmitPlatform(const std::string& agent_id, const std::string& region,
                      v1::PlatformMetricBatch batch,
                      DoneCallback done) override {
    Item item;
    item.kind = Item::Kind::kPlatform;
    item.agent_id = agent_id;
    item.region = region;
    item.platform = std::move(batch);
    item.done = std::move(done);
    Enqueue(std::move(item));
  }

  void ReportDropped(const std::string& agent_id, const std::string& region,
                     uint64_t dropped_total) override {
    {
      absl::MutexLock lock(&agents_mu_);
      auto it = agents_.find(agent_id);
      if (it != agents_.end() && it->second.dropped_total >= dropped_total) {
        return;  // Nothing new.
      }
    }
    Item item;
    item.kind = Item::Kind::kDropped;
    item.agent_id = agent_id;
    item.region = region;
    item.dropped_total = dropped_total;
    Enqueue(std::move(item));
  }

  bool AwaitCapacity(std::function<void()> resume) override {
    return flow_->Await(std::move(resume));
  }

  uint64_t AppliedSequence(const std::string& agent_id) override {
    absl::MutexLock lock(&agents_mu_);
    auto it = agents_.find(agent_id);
    return it == agents_.end() ? 0 : it->second.applied_sequence;
  }

  void AddObserver(IngestObserver* observer) override {
    absl::MutexLock lock(&observers_mu_);
    observers_.push_back(observer);
  }

  void Flush() override {
    absl::MutexLock lock(&mu_);
    const uint64_t ticket = submitted_;
    struct Arg {
      IngestImpl* self;
      uint64_t ticket;
    } arg{this, ticket};
    mu_.Await(absl::Condition(
        +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return a->self->completed_ >= a->ticket || a->self->stopped_;
        },
        &arg));
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        mu_.Await(absl::Condition(&stopped_));
        return;
      }
      stopping_ = true;
    }
    if (writer_.joinable()) writer_.join();
    flow_->Close();
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

 private:
  void Enqueue(Item item) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        flow_->Add(Weight(item));
        queue_.push_back(std::move(item));
        ++submitted_;
        return;
      }
    }
    if (item.done) {
      IngestResult r;
      r.status = absl::CancelledError("ingest is shutting down");
      item.done(r);
    }
  }

  // What an item counts for in the queue bound.
  static int64_t Weight(const Item& item) {
    return std::max(1, item.outcomes.outcomes_size());
  }

  void WriterLoop() {
    for (;;) {
      std::vector<Item> items;
      int64_t weight = 0;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](IngestImpl* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !self->queue_.empty() || self->stopping_;
            },
            this));
        if (queue_.empty()) return;  // Stopping and drained.
        int outcomes = 0;
        while (!queue_.empty() &&
               (items.empty() ||
                outcomes + queue_.front().outcomes.outcomes_size() <=
                    options_.max_outcomes_per_commit)) {
          outcomes += queue_.front().outcomes.outcomes_size();
          weight += Weight(queue_.front());
          items.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      const size_t n = items.size();
      {
        // The items' weight is released when the last observer lets go of
        // what they became (at the end of this block if none keeps it).
        std::shared_ptr<CommittedBatch> committed(
            new CommittedBatch, [flow = flow_, weight](CommittedBatch* b) {
              delete b;
              flow->Release(weight);
            });
        Apply(items, committed);
        items.clear();
      }
      absl::MutexLock lock(&mu_);
      completed_ += n;
    }
  }

  // After a failed commit the store may hold more than agents_ says (a
  // COMMIT whose answer was lost may have committed): re-read the watermarks
  // before applying anything else, so a resend is skipped, not re-applied.
  absl::Status ReloadWatermarksIfNeeded() {
    if (!reload_watermarks_) return absl::OkStatus();
    auto agents = store_->LoadAgents();
    if (!agents.ok()) return agents.status();
    absl::MutexLock lock(&agents_mu_);
    agents_.clear();
    for (AgentRecord& a : *agents) agents_[a.agent_id] = std::move(a);
    reload_watermarks_ = false;
    LogInfo("ingest_watermarks_reloaded",
            {{"agents", absl::StrCat(agents_.size())}});
    return absl::OkStatus();
  }

  // Fails every item with `status` (nothing of them was applied).
  void FailAll(std::vector<Item>& items, const absl::Status& status) {
    metrics_->AddCounter(kCommitErrors, 1);
    LogError("ingest_commit_failed", {{"error", status.ToString()},
                                      {"items", absl::StrCat(items.size())}});
    for (size_t i = 0; i < items.size(); ++i) {
      IngestResult r;
      r.status = status;
      {
        absl::MutexLock lock(&agents_mu_);
        auto it = agents_.find(items[i].agent_id);
        r.applied_sequence =
            it == agents_.end() ? 0 : it->second.applied_sequence;
      }
      if (items[i].done) items[i].done(r);
    }
  }

  // What one Apply() builds before its commit: the touched agents' records,
  // the outcomes' per-minute stream stats, the write batch and its counts.
  struct ApplyState {
    absl::Time now;
    std::map<std::string, AgentRecord> working;  // Agents touched.
    std::map<std::pair<StreamKey, int64_t>, StreamStats> minutes;
    WriteBatch batch;
    uint64_t batches = 0, applied = 0, duplicates = 0, gaps = 0, rejected = 0,
             gaps_refused = 0;
    int failures_kept = 0;
  };

  // Applies `items` in one transaction and runs their callbacks.
  void Apply(std::vector<Item>& items,
             const std::shared_ptr<CommittedBatch>& shared) {
    CommittedBatch& committed = *shared;
    if (absl::Status s = ReloadWatermarksIfNeeded(); !s.ok()) {
      if (options_.on_commit) options_.on_commit(s);
      FailAll(items, s);
      return;
    }
    ApplyState state;
    state.now = clock_->Now();
    LoadWorkingAgents(items, state.working);
    std::vector<IngestResult> results(items.size());
    // One allocation for the outcomes the commit hands on, not a doubling
    // series of moves of up to max_outcomes_per_commit of them.
    size_t outcomes = 0;
    for (const Item& item : items) outcomes += item.outcomes.outcomes_size();
    committed.outcomes.reserve(outcomes);
    for (size_t i = 0; i < items.size(); ++i) {
      ApplyItem(items[i], results[i], state, committed);
    }
    FillBatch(state);

    CommitResult commit_result;
    absl::Status status = store_->Commit(state.batch, &commit_result);
    if (options_.on_commit) options_.on_commit(status);
    if (!status.ok()) {
      reload_watermarks_ = true;
      FailAll(items, status);
      return;
    }
    PublishCommitted(state, commit_result, committed);
    {
      absl::MutexLock lock(&observers_mu_);
      for (IngestObserver* o : observers_) o->OnCommittedShared(shared);
    }
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].done) items[i].done(results[i]);
    }
  }

  // Copies into `working` the current record of every agent `items` name,
  // with the region of its first item.
  void LoadWorkingAgents(const std::vector<Item>& items,
                         std::map<std::string, AgentRecord>& working) {
    absl::MutexLock lock(&agents_mu_);
    for (const Item& item : items) {
      if (working.count(item.agent_id)) continue;
      auto it = agents_.find(item.agent_id);
      AgentRecord rec;
      if (it != agents_.end()) rec = it->second;
      rec.agent_id = item.agent_id;
      rec.region = item.region;
      working[item.agent_id] = rec;
    }
  }

  // Applies one item to `state` (and its new outcomes to `committed`),
  // filling its result `r`.
  void ApplyItem(Item& item, IngestResult& r, ApplyState& state,
                 CommittedBatch& committed) {
    AgentRecord& agent = state.working[item.agent_id];
    agent.last_seen = state.now;
    switch (item.kind) {
      case Item::Kind::kDropped:
        agent.dropped_total = std::max(agent.dropped_total, item.dropped_total);
        break;
      case Item::Kind::kPlatform:
        AddPlatformSamples(item, state.batch);
        break;
      case Item::Kind::kOutcomes:
        ApplyOutcomes(item, agent, r, state, committed);
        break;
    }
  }

  // Adds the platform samples of `item` (region defaulted to the item's) to
  // `batch`, each with the counter it feeds ("" for non-Sum statistics).
  static void AddPlatformSamples(Item& item, WriteBatch& batch) {
    for (v1::PlatformMetricSample& s : *item.platform.mutable_samples()) {
      if (s.region().empty()) s.set_region(item.region);
      batch.platform_counters.push_back(
          s.stat() == "Sum" || s.stat().empty()
              ? PlatformCounterName(s.metric(), s.region(), s.target(),
                                    s.mode())
              : std::string());
      batch.platform_samples.push_back(s);
    }
  }

  // Applies an outcome batch past `agent`'s watermark: a barrier reports the
  // watermark, an invalid or unexplained-gap batch is refused, duplicates
  // are skipped and the rest recorded (advancing the watermark).
  void ApplyOutcomes(Item& item, AgentRecord& agent, IngestResult& r,
                     ApplyState& state, CommittedBatch& committed) {
    v1::OutcomeBatch& b = item.outcomes;
    if (b.outcomes_size() == 0) {
      // A barrier (or an empty batch): reports the watermark.
      r.applied_sequence = agent.applied_sequence;
      return;
    }
    ++state.batches;
    agent.dropped_total = std::max(agent.dropped_total, b.dropped_total());
    r.status = Validate(b);
    if (!r.status.ok()) {
      r.applied_sequence = agent.applied_sequence;
      return;
    }
    if (RefuseUnexplainedGap(item, agent, r)) {
      ++state.gaps_refused;
      return;
    }
    const uint64_t n = b.outcomes_size();
    const uint64_t first = b.first_sequence();
    const uint64_t last = first + n - 1;
    const uint64_t wm = agent.applied_sequence;
    if (n == 0 || last <= wm) {
      r.duplicates = n;
    } else {
      const uint64_t skip = wm >= first ? wm - first + 1 : 0;
      r.duplicates = skip;
      r.gaps = first > wm + 1 ? first - wm - 1 : 0;
      const uint64_t rejected_before = state.rejected;
      RecordOutcomes(item, skip, state, committed);
      r.applied = n - skip - (state.rejected - rejected_before);
      agent.applied_sequence = last;
    }
    r.applied_sequence = agent.applied_sequence;
    state.applied += r.applied;
    state.duplicates += r.duplicates;
    state.gaps += r.gaps;
  }

  // A gap is what the agent's outbox dropped, and the agent counts every
  // drop. A jump its drop count does not explain (a forged or corrupt batch:
  // without mTLS the agent id is taken on trust) would make every genuine
  // outcome up to it a "duplicate": refused, nothing applied, the watermark
  // kept. An agent this store has no outcome from yet (watermark 0: a new
  // controller database) may start anywhere.
  // Returns true (with `r` set and a log line) when the batch is refused.
  bool RefuseUnexplainedGap(const Item& item, const AgentRecord& agent,
                            IngestResult& r) {
    const uint64_t n = item.outcomes.outcomes_size();
    const uint64_t first = item.outcomes.first_sequence();
    const uint64_t wm = agent.applied_sequence;
    if (!(wm > 0 && first > wm + 1 &&
          first - wm - 1 >
              agent.dropped_total + options_.max_unexplained_gap)) {
      return false;
    }
    LogError("outcomes_gap_refused",
             {{"agent", item.agent_id},
              {"region", item.region},
              {"watermark", absl::StrCat(wm)},
              {"first_sequence", absl::StrCat(first)},
              {"dropped_total", absl::StrCat(agent.dropped_total)},
              {"outcomes", absl::StrCat(n)}});
    r.status = absl::FailedPreconditionError(absl::StrCat(
        "outcomes.first_sequence: ", first, " skips ", first - wm - 1,
        " sequence numbers after the applied ", wm,
        ", more than the agent's dropped count ", agent.dropped_total,
        " explains (allowed extra: ", options_.max_unexplained_gap,
        "); batch refused"));
    r.applied_sequence = wm;
    return true;
  }

  // Records the outcomes of `item` from index `skip` on, except those the
  // item marks rejected (counted): stamps their sequence, agent and region,
  // adds them to their stream minute, keeps failures up to the per-commit
  // cap, and moves them into `committed`.
  void RecordOutcomes(Item& item, uint64_t skip, ApplyState& state,
                      CommittedBatch& committed) {
    v1::OutcomeBatch& b = item.outcomes;
    const uint64_t n = b.outcomes_size();
    const uint64_t first = b.first_sequence();
    for (uint64_t k = skip; k < n; ++k) {
      if (k < item.rejected.size() && item.rejected[k]) {
        ++state.rejected;
        continue;
      }
      v1::Outcome& o = *b.mutable_outcomes(k);
      o.set_sequence(first + k);
      o.set_agent_id(item.agent_id);
      o.set_region(item.region);
      StreamKey key{o.region(), o.target(), o.mode(), o.requested_bytes(),
                    !o.adhoc_id().empty()};
      const int64_t minute = MinuteOf(
          o.has_start_time() ? TimeFromProto(o.start_time()) : state.now);
      state.minutes[{std::move(key), minute}].Add(o);
      if (o.outcome_class() != v1::OK &&
          state.failures_kept < options_.max_failures_per_commit) {
        state.batch.failures.push_back(o);
        ++state.failures_kept;
      }
      committed.outcomes.push_back(std::move(o));
    }
  }

  // Completes state.batch: stream minutes, touched agents and the counter
  // deltas of this commit.
  static void FillBatch(ApplyState& state) {
    WriteBatch& batch = state.batch;
    for (auto& [k, stats] : state.minutes) {
      batch.minutes.push_back({k.first, k.second, stats});
    }
    for (auto& [id, rec] : state.working) batch.agents.push_back(rec);
    auto add = [&](const char* name, uint64_t v) {
      if (v > 0) batch.counter_deltas[name] = static_cast<double>(v);
    };
    add(kIngestBatches, state.batches);
    add(kIngestOutcomes, state.applied);
    add(kIngestDuplicates, state.duplicates);
    add(kIngestGaps, state.gaps);
    add("outcomes_rejected_total", state.rejected);
    add(kIngestGapsRefused, state.gaps_refused);
    add(kPlatformSamples, batch.platform_samples.size());
    batch.counter_deltas[kIngestCommits] = 1;
  }

  // After a successful commit: adopts the touched agents' records, feeds the
  // metrics, and hands the platform samples to `committed`.
  void PublishCommitted(ApplyState& state, const CommitResult& commit_result,
                        CommittedBatch& committed) {
    WriteBatch& batch = state.batch;
    {
      absl::MutexLock lock(&agents_mu_);
      for (auto& [id, rec] : state.working) agents_[id] = rec;
    }
    for (const StreamMinute& m : batch.minutes) {
      metrics_->AddStream(m.key, m.stats);
    }
    for (const auto& [name, delta] : batch.counter_deltas) {
      metrics_->AddCounter(name, delta);
    }
    for (size_t i = 0; i < batch.platform_samples.size(); ++i) {
      const double prev = i < commit_result.platform_previous.size()
                              ? commit_result.platform_previous[i]
                              : 0;
      if (!batch.platform_counters[i].empty()) {
        metrics_->AddCounter(batch.platform_counters[i],
                             batch.platform_samples[i].value() - prev);
      }
    }
    for (const auto& [id, rec] : state.working) {
      metrics_->SetAgentDropped(id, rec.region, rec.dropped_total);
    }
    committed.platform_samples = std::move(batch.platform_samples);
  }

  static absl::Status Validate(const v1::OutcomeBatch& b) {
    if (b.outcomes_size() == 0) return absl::OkStatus();
    if (b.first_sequence() == 0) {
      return absl::InvalidArgumentError(
          "outcomes.first_sequence: must be >= 1");
    }
    for (int k = 0; k < b.outcomes_size(); ++k) {
      const uint64_t seq = b.outcomes(k).sequence();
      if (seq != 0 && seq != b.first_sequence() + k) {
        return absl::InvalidArgumentError(
            absl::StrCat("outcomes.outcomes[", k, "].sequence: ", seq,
                         " is not first_sequence+", k));
      }
    }
    return absl::OkStatus();
  }

  const IngestOptions options_;
  const std::shared_ptr<FlowControl> flow_ =
      std::make_shared<FlowControl>(options_.max_queued_outcomes);
  Store* const store_;
  ControllerMetrics* const metrics_;
  Clock* const clock_;
  std::thread writer_;
  // Set after a failed commit; used only by the writer thread.
  bool reload_watermarks_ = false;

  absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex agents_mu_;
  // Committed agent state; written only by the writer thread.
  std::map<std::string, AgentRecord> agents_ ABSL_GUARDED_BY(agents_mu_);

  absl::Mutex observers_mu_;
  std::vector<IngestObserver*> observers_ ABSL_GUARDED_BY(observers_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Ingest>> Ingest::Create(
    const IngestOptions& options, Store* store, ControllerMetrics* metrics,
    Clock* clock) {
  if (store == nullptr || metrics == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("ingest: store, metrics, clock required");
  }
  auto ingest = std::make_unique<IngestImpl>(options, store, metrics, clock);
  FC_RETURN_IF_ERROR(ingest->Init());
  return std::unique_ptr<Ingest>(std::move(ingest));
}

}  // namespace controller
}  // namespace fleetcanary
