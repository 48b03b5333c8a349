#include "analysis/probe_summary.h"

#include <algorithm>
#include <cmath>

#include "analysis/intervals.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"

namespace fleetcanary {
namespace analysis {
namespace {

constexpr double kConfidence = 0.95;

}  // namespace

bool IsPlatformFailure(v1::OutcomeClass c) { return IsStreamHealthFailure(c); }

absl::Duration Percentile(std::vector<absl::Duration>* values, double p) {
  if (values->empty()) return absl::ZeroDuration();
  std::sort(values->begin(), values->end());
  size_t rank = static_cast<size_t>(std::ceil(p * values->size()));
  rank = std::clamp<size_t>(rank, 1, values->size());
  return (*values)[rank - 1];
}

void SummaryBuilder::Add(const v1::Outcome& o) {
  Stream& s = streams_[{o.mode(), o.requested_bytes()}];
  ++s.by_class[o.outcome_class()];
  if (o.timings().has_headers_received()) {
    s.ttfb.push_back(DurationFromProto(o.timings().headers_received()));
  }
  s.bytes += o.received_bytes();
  s.busy += DurationFromProto(o.timings().total());
  ++total_;
  if (IsPlatformFailure(o.outcome_class())) ++failures_;
  if (o.outcome_class() == v1::AGENT_ERROR) ++agent_errors_;
}

std::vector<v1::ProbeSummary> SummaryBuilder::Build() const {
  std::vector<v1::ProbeSummary> out;
  for (const auto& [key, stream] : streams_) {
    v1::ProbeSummary s;
    s.set_region(region_);
    s.set_mode(static_cast<v1::InvokeMode>(key.first));
    s.set_size_bytes(key.second);
    uint64_t probes = 0, failures = 0, agent = 0;
    for (const auto& [cls, n] : stream.by_class) {
      const auto c = static_cast<v1::OutcomeClass>(cls);
      (*s.mutable_by_class())[v1::OutcomeClass_Name(c)] = n;
      probes += n;
      if (IsPlatformFailure(c)) failures += n;
      if (c == v1::AGENT_ERROR) agent += n;
    }
    s.set_probes(probes);
    const uint64_t trials = probes - agent;
    s.set_error_rate(trials == 0 ? 0.0
                                 : static_cast<double>(failures) / trials);
    const RateInterval ci = WilsonInterval(failures, trials, kConfidence);
    s.mutable_error_rate_interval()->set_lower(ci.lower);
    s.mutable_error_rate_interval()->set_upper(ci.upper);
    s.mutable_error_rate_interval()->set_confidence(kConfidence);
    std::vector<absl::Duration> ttfb = stream.ttfb;
    *s.mutable_ttfb_p50() = DurationToProto(Percentile(&ttfb, 0.50));
    *s.mutable_ttfb_p90() = DurationToProto(Percentile(&ttfb, 0.90));
    *s.mutable_ttfb_p99() = DurationToProto(Percentile(&ttfb, 0.99));
    const double secs = absl::ToDoubleSeconds(stream.busy);
    s.set_throughput_bytes_per_second(secs > 0 ? stream.bytes / secs : 0.0);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace analysis
}  // namespace fleetcanary
