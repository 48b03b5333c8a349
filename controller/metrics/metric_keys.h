// Typed keys of the controller's counters and gauges, and the names under
// which the store keeps the keyed counters.
//
// The store persists every counter under one string name
// (Store::LoadCounters, WriteBatch::counter_deltas); per-stream platform and
// phantom totals encode their key in that name. This header is the only
// place that knows the encoding: PlatformCounterName / PhantomCounterName
// build a name, ParseCounterName turns one back into a typed key. Everything
// else works with the keys below.
//
// Every key is a plain value: equality, ordering (so exports come out in a
// stable order) and absl::Hash support.
#ifndef FLEETCANARY_CONTROLLER_METRICS_METRIC_KEYS_H_
#define FLEETCANARY_CONTROLLER_METRICS_METRIC_KEYS_H_

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>

#include "fleetcanary/v1/outcome.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary {
namespace controller {

// One (region, target, mode): the unit of platform and phantom counters.
struct TargetMode {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;

  auto Tie() const { return std::tie(region, target, mode); }
  bool operator==(const TargetMode& o) const { return Tie() == o.Tie(); }
  bool operator!=(const TargetMode& o) const { return !(*this == o); }
  bool operator<(const TargetMode& o) const { return Tie() < o.Tie(); }
  template <typename H>
  friend H AbslHashValue(H h, const TargetMode& k) {
    return H::combine(std::move(h), k.region, k.target, k.mode);
  }
};

// A (region, target, mode) at one size class label ("1KiB", "other"; "" =
// every size): the key of verdicts, error-rate bounds and ad-hoc series.
struct SizedStream {
  std::string region;
  std::string target;
  v1::InvokeMode mode = v1::INVOKE_MODE_UNSPECIFIED;
  std::string size_class;

  auto Tie() const { return std::tie(region, target, mode, size_class); }
  bool operator==(const SizedStream& o) const { return Tie() == o.Tie(); }
  bool operator!=(const SizedStream& o) const { return !(*this == o); }
  bool operator<(const SizedStream& o) const { return Tie() < o.Tie(); }
  template <typename H>
  friend H AbslHashValue(H h, const SizedStream& k) {
    return H::combine(std::move(h), k.region, k.target, k.mode, k.size_class);
  }
};

// The size-class-spanning key of a verdict's proto key.
SizedStream SizedStreamOf(const v1::StreamKey& key);

// One verdict series: a kind of verdict about one stream.
struct VerdictSeries {
  v1::VerdictKind kind = v1::VERDICT_KIND_UNSPECIFIED;
  SizedStream stream;

  bool operator==(const VerdictSeries& o) const {
    return kind == o.kind && stream == o.stream;
  }
  bool operator!=(const VerdictSeries& o) const { return !(*this == o); }
  bool operator<(const VerdictSeries& o) const {
    return std::tie(kind, stream) < std::tie(o.kind, o.stream);
  }
  template <typename H>
  friend H AbslHashValue(H h, const VerdictSeries& k) {
    return H::combine(std::move(h), k.kind, k.stream);
  }
};

// The platform (CloudWatch) metrics the controller exports per stream.
enum class PlatformMetric { kErrors, kInvocations, kUrl5xxCount };

// A platform metric's total of one (region, target, mode).
struct PlatformCounter {
  PlatformMetric metric = PlatformMetric::kErrors;
  TargetMode stream;

  bool operator==(const PlatformCounter& o) const {
    return metric == o.metric && stream == o.stream;
  }
  bool operator!=(const PlatformCounter& o) const { return !(*this == o); }
  bool operator<(const PlatformCounter& o) const {
    return std::tie(metric, stream) < std::tie(o.metric, o.stream);
  }
  template <typename H>
  friend H AbslHashValue(H h, const PlatformCounter& k) {
    return H::combine(std::move(h), k.metric, k.stream);
  }
};

// The phantom-error total of one (region, target, mode).
struct PhantomCounter {
  TargetMode stream;

  bool operator==(const PhantomCounter& o) const { return stream == o.stream; }
  bool operator!=(const PhantomCounter& o) const { return !(*this == o); }
  bool operator<(const PhantomCounter& o) const { return stream < o.stream; }
  template <typename H>
  friend H AbslHashValue(H h, const PhantomCounter& k) {
    return H::combine(std::move(h), k.stream);
  }
};

// Persisted name of a per-stream platform total, e.g.
// PlatformCounterName("Errors", ...). `metric` is the CloudWatch metric name;
// only "Errors", "Invocations" and "Url5xxCount" are exported.
std::string PlatformCounterName(const std::string& metric,
                                const std::string& region,
                                const std::string& target, v1::InvokeMode mode);
// Persisted name of a per-stream phantom-error total.
std::string PhantomCounterName(const std::string& region,
                               const std::string& target, v1::InvokeMode mode);

// What a persisted counter name stands for: an exported platform total, a
// phantom total, or a plain named counter (any other name, including
// platform metrics that are not exported and names that do not decode).
using CounterKey = std::variant<PlatformCounter, PhantomCounter, std::string>;
CounterKey ParseCounterName(const std::string& name);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_METRICS_METRIC_KEYS_H_
