// Building blocks for exporting domain counters to Prometheus, shared by the
// controller and the agent: a Collectable over a snapshot function, helpers
// to assemble MetricFamily values, and the HTTP endpoint serving /metrics.
//
// prometheus-cpp is used as an adapter only: domain modules keep their own
// counters and expose them through a `Collectable`; nothing in the domain
// depends on prometheus types.
//
// Thread-safety: MetricsHttpServer and FunctionCollectable are thread-safe;
// the builder helpers are plain functions on caller-owned values.
#ifndef FLEETCANARY_COMMON_METRICS_METRICS_EXPORT_H_
#define FLEETCANARY_COMMON_METRICS_METRICS_EXPORT_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Label value of an invoke mode: InvokeModeName(mode), i.e. "buffered" or
// "stream" ("unspecified").
std::string ModeLabel(v1::InvokeMode mode);
// Label value of an outcome class: the enum name, e.g. "OK", "HTTP_5XX".
std::string OutcomeLabel(v1::OutcomeClass cls);

prometheus::MetricFamily CounterFamily(std::string name, std::string help);
prometheus::MetricFamily GaugeFamily(std::string name, std::string help);
prometheus::MetricFamily HistogramFamily(std::string name, std::string help);

// Appends one sample to a counter/gauge family.
void AddSample(prometheus::MetricFamily* family, const MetricLabels& labels,
               double value);
// A counter/gauge family holding one sample.
prometheus::MetricFamily CounterWithSample(std::string name, std::string help,
                                           const MetricLabels& labels,
                                           double value);
prometheus::MetricFamily GaugeWithSample(std::string name, std::string help,
                                         const MetricLabels& labels,
                                         double value);
// Appends one histogram sample from non-cumulative bucket counts; `bounds`
// are the finite upper bounds, buckets.size() == bounds.size() + 1 (+Inf).
void AddHistogramSample(prometheus::MetricFamily* family,
                        const MetricLabels& labels,
                        const std::vector<uint64_t>& buckets,
                        const std::vector<double>& bounds, double sum);

// `families` in the Prometheus text exposition format (version 0.0.4), as
// MetricsHttpServer serves them on /metrics.
std::string ExpositionText(
    const std::vector<prometheus::MetricFamily>& families);

// A Collectable that calls `collect` on every scrape.
class FunctionCollectable : public prometheus::Collectable {
 public:
  using CollectFn = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit FunctionCollectable(CollectFn collect)
      : collect_(std::move(collect)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    return collect_();
  }

 private:
  CollectFn collect_;
};

// One HTTP response of an extra page.
struct HttpPage {
  std::string content_type;
  std::string body;
  int status = 200;
};

// Serves GET /metrics on `listen` ("127.0.0.1:0" picks a free port), plus
// the pages added with AddPage. Bounded (docs/hardening.md): one I/O thread
// multiplexes every connection, a request must arrive within 5 s and its
// response be taken within 10 s, at most 4096 connections are open, and
// pages render on 4 worker threads -- so idle or slow clients never stop a
// scrape.
class MetricsHttpServer {
 public:
  virtual ~MetricsHttpServer() = default;

  // Binds and starts serving. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT when it cannot be parsed.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Create(
      const std::string& listen);

  // The collectable is held weakly; it is dropped once the caller frees it.
  virtual void Register(const std::shared_ptr<prometheus::Collectable>& c) = 0;
  // Serves GET `path` (e.g. "/status") with whatever `page` returns; `page`
  // runs on a server thread for every request and must be thread-safe.
  using PageFn = std::function<HttpPage()>;
  virtual void AddPage(const std::string& path, PageFn page) = 0;
  // Same, for a page that reads the query string (the text after '?', raw;
  // "" when there is none).
  using QueryPageFn = std::function<HttpPage(const std::string& query)>;
  virtual void AddQueryPage(const std::string& path, QueryPageFn page) = 0;
  // "host:port" actually bound.
  virtual std::string address() const = 0;
  virtual int port() const = 0;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_METRICS_METRICS_EXPORT_H_
