// The store-backed VerdictSource (see verdict_source.h).
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "analysis/replay.h"
#include "analysis/verdict_engine.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "common/time/periodic_task.h"
#include "common/units/units.h"
#include "controller/api/verdict_source.h"
#include "google/protobuf/util/time_util.h"

namespace fleetcanary {
namespace controller {
namespace {

using google::protobuf::util::TimeUtil;

constexpr size_t kMaxHistory = 1000000;

// (kind, region, target, mode, size_class): one verdict per identity.
using Identity = std::tuple<int, std::string, std::string, int, std::string>;
Identity IdentityOf(const v1::Verdict& v) {
  return {v.kind(), v.key().region(), v.key().target(), v.key().mode(),
          v.key().size_class()};
}

class PollingSubscription : public VerdictSource::Subscription {
 public:
  PollingSubscription(Store* store, Clock* clock, absl::Duration interval,
                      v1::StreamKey filter, VerdictSource::Callback callback)
      : store_(store),
        clock_(clock),
        interval_(interval),
        filter_(std::move(filter)),
        callback_(std::move(callback)),
        since_(clock->Now()) {
    // What is already stored at the start instant belongs to Current().
    absl::StatusOr<std::vector<v1::Verdict>> rows =
        store_->ListVerdicts(since_, 10000);
    if (rows.ok()) {
      absl::MutexLock lock(&mu_);
      for (const v1::Verdict& v : *rows) {
        if (TimeFromProto(v.updated()) == since_) {
          seen_at_since_.insert(v.SerializeAsString());
        }
      }
    }
    poller_ =
        std::make_unique<PeriodicTask>(clock_, interval_, [this] { Poll(); });
  }
  // Stops the poller first: its runs use every member.
  ~PollingSubscription() override { poller_->Stop(); }

 private:
  // One look for verdicts newer than since_; each new one that matches the
  // filter goes to the callback, in store order.
  void Poll() {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::vector<v1::Verdict>> rows =
        store_->ListVerdicts(since_, 10000);
    if (!rows.ok()) {
      LogWarning("verdict_poll_failed", {{"error", rows.status().ToString()}});
      return;
    }
    for (const v1::Verdict& v : *rows) {
      const absl::Time updated = TimeFromProto(v.updated());
      const std::string id = v.SerializeAsString();
      if (updated < since_) continue;
      if (updated == since_ && seen_at_since_.count(id)) continue;
      if (updated > since_) {
        since_ = updated;
        seen_at_since_.clear();
      }
      seen_at_since_.insert(id);
      if (VerdictKeyMatches(filter_, v.key())) callback_(v);
    }
  }

  Store* const store_;
  Clock* const clock_;
  const absl::Duration interval_;
  const v1::StreamKey filter_;
  const VerdictSource::Callback callback_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  absl::Time since_ ABSL_GUARDED_BY(mu_);
  // Verdicts already delivered whose `updated` equals since_.
  std::set<std::string> seen_at_since_ ABSL_GUARDED_BY(mu_);
  // Started once the state above is set up; last, so destroyed first.
  std::unique_ptr<PeriodicTask> poller_;
};

using ModeKey = std::tuple<std::string, std::string, int>;

// A scheduled minute of one stream.
struct MinuteRow {
  int64_t minute;
  v1::StreamKey key;
  analysis::ClassCounts counts;
};

// Trials and platform-visible failures per mode key and minute that the raw
// failures do not account for (OK probes, and failures whose raw rows were
// pruned), ad-hoc included: they explain platform errors too.
using ClientCounts =
    std::map<std::pair<ModeKey, int64_t>, std::pair<uint64_t, uint64_t>>;

// The stored minutes an analysis covers.
struct SelectedMinutes {
  std::vector<MinuteRow> rows;  // Scheduled minutes, in time order.
  ClientCounts client;
  uint64_t outcomes = 0;
  // Range of the matching minutes; first > last when none matched.
  int64_t first = INT64_MAX, last = INT64_MIN;
};

// The minutes of streams matching `filter`: every one counts for outcomes,
// range and client counts; the scheduled ones also become rows.
SelectedMinutes SelectMinutes(const std::vector<StreamMinute>& minutes,
                              const v1::StreamKey& filter) {
  SelectedMinutes out;
  for (const StreamMinute& m : minutes) {
    v1::StreamKey key;
    key.set_region(m.key.region);
    key.set_target(m.key.target);
    key.set_mode(m.key.mode);
    key.set_size_class(FormatBytes(m.key.size_bytes));
    if (!VerdictKeyMatches(filter, key)) continue;
    out.outcomes += m.stats.probes();
    out.first = std::min(out.first, m.minute);
    out.last = std::max(out.last, m.minute);
    auto& c =
        out.client[{ModeKey{m.key.region, m.key.target, m.key.mode}, m.minute}];
    MinuteRow row{m.minute, key, {}};
    for (int cls = 0;
         cls < kNumOutcomeClasses && cls < analysis::ClassCounts::kSize;
         ++cls) {
      const uint64_t n = m.stats.counts[cls];
      if (n == 0) continue;
      row.counts.Add(static_cast<v1::OutcomeClass>(cls), n);
      const auto oc = static_cast<v1::OutcomeClass>(cls);
      if (analysis::IsTrial(oc)) c.first += n;
      if (analysis::IsPlatformVisibleFailure(oc)) c.second += n;
    }
    if (m.key.adhoc) continue;  // Ad-hoc probes never feed stream verdicts.
    out.rows.push_back(std::move(row));
  }
  std::stable_sort(out.rows.begin(), out.rows.end(),
                   [](const MinuteRow& a, const MinuteRow& b) {
                     return a.minute < b.minute;
                   });
  return out;
}

// Adds the samples matching `filter` to `platform`, counting them in
// `*added_count`; DataLoss for a sample the table refuses.
absl::Status AddPlatformSamples(
    const std::vector<v1::PlatformMetricSample>& samples,
    const v1::StreamKey& filter, analysis::PlatformPeriodTable& platform,
    uint64_t* added_count) {
  for (const v1::PlatformMetricSample& s : samples) {
    v1::StreamKey key;
    key.set_region(s.region());
    key.set_target(s.target());
    key.set_mode(s.mode());
    if (!VerdictKeyMatches(filter, key)) continue;
    ++*added_count;
    absl::StatusOr<bool> added = platform.AddSample(s);
    if (!added.ok()) {
      return absl::DataLossError(
          absl::StrCat("stored platform sample ", s.region(), "/", s.target(),
                       "/", v1::InvokeMode_Name(s.mode()), " ", s.metric(),
                       " at ", TimeUtil::ToString(s.period_start()), ": ",
                       added.status().message()));
    }
  }
  return absl::OkStatus();
}

// Client counts for `platform`: the raw failures in [from, to) by their exact
// start time (exact for periods shorter than a minute), each taken out of
// `client`, then what `client` holds beyond them at the minute's start.
absl::Status AddClientCounts(Store* store, absl::Time from, absl::Time to,
                             ClientCounts& client,
                             analysis::PlatformPeriodTable& platform) {
  absl::StatusOr<std::vector<v1::Outcome>> failures = store->QueryFailures(
      from == absl::InfinitePast() ? absl::InfinitePast() : from, kMaxHistory);
  if (!failures.ok()) return failures.status();
  for (const v1::Outcome& o : *failures) {
    const absl::Time t = TimeFromProto(o.start_time());
    if (t >= to) break;
    auto c =
        client.find({ModeKey{o.region(), o.target(), o.mode()}, MinuteOf(t)});
    if (c == client.end() || !analysis::IsTrial(o.outcome_class())) {
      continue;
    }
    const bool visible = analysis::IsPlatformVisibleFailure(o.outcome_class());
    // Never more than the aggregates hold (a row without its minute).
    if (c->second.first == 0 || (visible && c->second.second == 0)) {
      continue;
    }
    --c->second.first;
    if (visible) --c->second.second;
    platform.AddOutcome(o.region(), o.target(), o.mode(), t, o.outcome_class());
  }
  for (const auto& [k, counts] : client) {
    const auto& [mode_key, minute] = k;
    platform.AddClientCounts(std::get<0>(mode_key), std::get<1>(mode_key),
                             static_cast<v1::InvokeMode>(std::get<2>(mode_key)),
                             absl::FromUnixSeconds(minute * 60), counts.first,
                             counts.second);
  }
  return absl::OkStatus();
}

// Feeds `e` the rows in order, each preceded by the platform periods that
// ended by its minute, then the remaining periods; stops at the first error.
absl::Status Replay(const std::vector<MinuteRow>& rows,
                    const std::vector<analysis::PlatformPeriod>& periods,
                    analysis::VerdictEngine& e) {
  size_t next_period = 0;
  auto feed_platform_until = [&](absl::Time t) -> absl::Status {
    for (; next_period < periods.size() &&
           periods[next_period].start + periods[next_period].length <= t;
         ++next_period) {
      const analysis::PlatformPeriod& p = periods[next_period];
      v1::StreamKey k;
      k.set_region(p.region);
      k.set_target(p.target);
      k.set_mode(p.mode);
      absl::Status s = e.ObservePlatform(k, p.start, p.errors, p.invocations,
                                         p.visible_failures(), p.client_probes);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  };
  for (const MinuteRow& row : rows) {
    const absl::Time t = absl::FromUnixSeconds(row.minute * 60);
    if (absl::Status s = feed_platform_until(t); !s.ok()) return s;
    if (absl::Status s = e.Observe(row.key, t, row.counts); !s.ok()) return s;
  }
  return feed_platform_until(absl::InfiniteFuture());
}

class StoreVerdictSource : public VerdictSource {
 public:
  StoreVerdictSource(const StoreVerdictSourceOptions& options, Store* store,
                     Clock* clock)
      : options_(options), store_(store), clock_(clock) {}

  absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) override {
    absl::StatusOr<std::vector<v1::Verdict>> rows =
        store_->ListVerdicts(absl::InfinitePast(), kMaxHistory);
    if (!rows.ok()) return rows.status();
    std::map<Identity, v1::Verdict> latest;
    for (v1::Verdict& v : *rows) latest[IdentityOf(v)] = std::move(v);
    std::vector<v1::Verdict> out;
    for (auto& [id, v] : latest) {
      if (!VerdictKeyMatches(filter, v.key())) continue;
      if (!include_healthy && v.state() == v1::HEALTHY) continue;
      out.push_back(std::move(v));
    }
    return out;
  }

  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                          Callback callback) override {
    return std::make_unique<PollingSubscription>(
        store_, clock_, options_.poll_interval, filter, std::move(callback));
  }

  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override {
    const absl::Time from = request.has_from() ? TimeFromProto(request.from())
                                               : absl::InfinitePast();
    const absl::Time to =
        request.has_to() ? TimeFromProto(request.to()) : absl::InfiniteFuture();
    if (from >= to) {
      return absl::InvalidArgumentError("from: must be before to");
    }
    const int64_t from_minute =
        from == absl::InfinitePast() ? INT64_MIN / 2 : MinuteOf(from);
    const int64_t to_minute = to == absl::InfiniteFuture()
                                  ? INT64_MAX / 2
                                  : MinuteOf(to - absl::Nanoseconds(1)) + 1;
    absl::StatusOr<std::vector<StreamMinute>> minutes =
        QueryStreamCounts(store_, from_minute, to_minute);
    if (!minutes.ok()) return minutes.status();
    absl::StatusOr<std::vector<v1::PlatformMetricSample>> samples =
        store_->QueryPlatformSamples(from, to);
    if (!samples.ok()) return samples.status();
    absl::StatusOr<std::unique_ptr<analysis::VerdictEngine>> engine =
        analysis::VerdictEngine::Create(options_.detection);
    if (!engine.ok()) return engine.status();
    analysis::VerdictEngine& e = **engine;

    v1::AnalysisReport report;
    SelectedMinutes selected = SelectMinutes(*minutes, request.filter());
    if (selected.first <= selected.last) {
      *report.mutable_first_outcome() =
          TimeToProto(absl::FromUnixSeconds(selected.first * 60));
      *report.mutable_last_outcome() =
          TimeToProto(absl::FromUnixSeconds(selected.last * 60 + 59));
    }

    // Platform periods (analysis/replay.h: one value per period, re-reads
    // never added), with the client counts of the selected minutes.
    analysis::PlatformPeriodTable platform;
    uint64_t platform_samples = 0;
    if (absl::Status s = AddPlatformSamples(*samples, request.filter(),
                                            platform, &platform_samples);
        !s.ok()) {
      return s;
    }
    if (!selected.client.empty()) {
      absl::Status s =
          AddClientCounts(store_, from, to, selected.client, platform);
      if (!s.ok()) return s;
    }
    const std::vector<analysis::PlatformPeriod> periods =
        platform.CompletePeriods();

    if (request.has_declared_fix_time()) {
      e.DeclareFix(TimeFromProto(request.declared_fix_time()));
      *report.mutable_declared_fix_time() = request.declared_fix_time();
    }
    if (absl::Status s = Replay(selected.rows, periods, e); !s.ok()) return s;
    e.Flush();
    report.set_outcomes(selected.outcomes);
    report.set_platform_samples(platform_samples);
    for (v1::Verdict& v : e.Current()) *report.add_verdicts() = std::move(v);
    for (v1::Verdict& v : e.TakeTransitions()) {
      *report.add_transitions() = std::move(v);
    }
    return report;
  }

 private:
  const StoreVerdictSourceOptions options_;
  Store* const store_;
  Clock* const clock_;
};

class CombinedVerdictSource : public VerdictSource {
 public:
  CombinedVerdictSource(VerdictSource* live, VerdictSource* analyzer)
      : live_(live), analyzer_(analyzer) {}
  absl::StatusOr<std::vector<v1::Verdict>> Current(
      const v1::StreamKey& filter, bool include_healthy) override {
    return live_->Current(filter, include_healthy);
  }
  std::unique_ptr<Subscription> Subscribe(const v1::StreamKey& filter,
                                          Callback callback) override {
    return live_->Subscribe(filter, std::move(callback));
  }
  absl::StatusOr<v1::AnalysisReport> Analyze(
      const v1::AnalyzeRequest& request) override {
    return analyzer_->Analyze(request);
  }

 private:
  VerdictSource* const live_;
  VerdictSource* const analyzer_;
};

}  // namespace

std::unique_ptr<VerdictSource> CombineVerdictSources(VerdictSource* live,
                                                     VerdictSource* analyzer) {
  return std::make_unique<CombinedVerdictSource>(live, analyzer);
}

bool VerdictKeyMatches(const v1::StreamKey& filter, const v1::StreamKey& key) {
  return (filter.region().empty() || filter.region() == key.region()) &&
         (filter.target().empty() || filter.target() == key.target()) &&
         (filter.mode() == v1::INVOKE_MODE_UNSPECIFIED ||
          filter.mode() == key.mode()) &&
         (filter.size_class().empty() ||
          filter.size_class() == key.size_class());
}

absl::StatusOr<std::unique_ptr<VerdictSource>> CreateStoreVerdictSource(
    const StoreVerdictSourceOptions& options, Store* store, Clock* clock) {
  if (store == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("verdict source: missing dependency");
  }
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("poll_interval: must be > 0");
  }
  absl::StatusOr<v1::DetectionConfig> detection =
      analysis::ResolveDetectionConfig(options.detection);
  if (!detection.ok()) return detection.status();
  return std::unique_ptr<VerdictSource>(
      new StoreVerdictSource(options, store, clock));
}

}  // namespace controller
}  // namespace fleetcanary
