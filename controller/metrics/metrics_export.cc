#include "controller/metrics/metrics_export.h"

#include <prometheus/exposer.h>

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace fleetcanary {

std::string ModeLabel(v1::InvokeMode mode) {
  switch (mode) {
    case v1::BUFFERED:
      return "buffered";
    case v1::RESPONSE_STREAM:
      return "stream";
    default:
      return "unspecified";
  }
}

std::string OutcomeLabel(v1::OutcomeClass cls) {
  if (!v1::OutcomeClass_IsValid(cls)) return "OUTCOME_CLASS_UNSPECIFIED";
  return v1::OutcomeClass_Name(cls);
}

namespace {

prometheus::MetricFamily Family(std::string name, std::string help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

prometheus::ClientMetric& NewMetric(prometheus::MetricFamily* family,
                                    const MetricLabels& labels) {
  family->metric.emplace_back();
  prometheus::ClientMetric& m = family->metric.back();
  for (const auto& [name, value] : labels) m.label.push_back({name, value});
  return m;
}

}  // namespace

prometheus::MetricFamily CounterFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Counter);
}
prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Gauge);
}
prometheus::MetricFamily HistogramFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Histogram);
}

void AddSample(prometheus::MetricFamily* family, const MetricLabels& labels,
               double value) {
  prometheus::ClientMetric& m = NewMetric(family, labels);
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
}

void AddHistogramSample(prometheus::MetricFamily* family,
                        const MetricLabels& labels,
                        const std::vector<uint64_t>& buckets,
                        const std::vector<double>& bounds, double sum) {
  prometheus::ClientMetric& m = NewMetric(family, labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound =
        i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
}

namespace {

class ExposerServer : public MetricsHttpServer {
 public:
  ExposerServer(std::unique_ptr<prometheus::Exposer> exposer, std::string host)
      : exposer_(std::move(exposer)), host_(std::move(host)) {}

  void Register(const std::shared_ptr<prometheus::Collectable>& c) override {
    exposer_->RegisterCollectable(c);
  }
  std::string address() const override {
    return absl::StrCat(host_, ":", port());
  }
  int port() const override {
    std::vector<int> ports = exposer_->GetListeningPorts();
    return ports.empty() ? 0 : ports.front();
  }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string host_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(
    const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) ||
      port < 0 || port > 65535 || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("http_listen: want host:port, got \"", listen, "\""));
  }
  std::string host = listen.substr(0, colon);
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(listen, 2);
    return std::unique_ptr<MetricsHttpServer>(
        new ExposerServer(std::move(exposer), std::move(host)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("http_listen: cannot serve on ", listen, ": ", e.what()));
  }
}

}  // namespace fleetcanary
