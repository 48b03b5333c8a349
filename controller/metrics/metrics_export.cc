#include "controller/metrics/metrics_export.h"

#include <CivetServer.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <mutex>

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

// Serves /metrics from the registered collectables, plus any pages added with
// AddPage, on one civetweb server (the library prometheus-cpp's own exposer
// is built on).
class CivetMetricsServer : public MetricsHttpServer {
 public:
  CivetMetricsServer(std::unique_ptr<CivetServer> server, std::string host)
      : server_(std::move(server)), host_(std::move(host)) {
    metrics_ = std::make_unique<Page>([this] {
      return HttpPage{"text/plain; version=0.0.4; charset=utf-8", Scrape()};
    });
    server_->addHandler("/metrics", metrics_.get());
  }

  ~CivetMetricsServer() override {
    // Stop serving before the handlers go away.
    server_->close();
  }

  void Register(const std::shared_ptr<prometheus::Collectable>& c) override {
    std::lock_guard<std::mutex> lock(mu_);
    collectables_.push_back(c);
  }

  void AddPage(const std::string& path, PageFn page) override {
    std::lock_guard<std::mutex> lock(mu_);
    pages_.push_back(std::make_unique<Page>(std::move(page)));
    server_->addHandler(path, pages_.back().get());
  }

  std::string address() const override {
    return absl::StrCat(host_, ":", port());
  }
  int port() const override {
    std::vector<int> ports = server_->getListeningPorts();
    return ports.empty() ? 0 : ports.front();
  }

 private:
  class Page : public CivetHandler {
   public:
    explicit Page(PageFn fn) : fn_(std::move(fn)) {}
    bool handleGet(CivetServer*, struct mg_connection* conn) override {
      HttpPage page = fn_();
      mg_printf(conn,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n",
                page.status, page.status == 200 ? "OK" : "Error",
                page.content_type.c_str(), page.body.size());
      mg_write(conn, page.body.data(), page.body.size());
      return true;
    }

   private:
    PageFn fn_;
  };

  std::string Scrape() {
    std::vector<prometheus::MetricFamily> families;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = collectables_.begin(); it != collectables_.end();) {
        std::shared_ptr<prometheus::Collectable> c = it->lock();
        if (!c) {
          it = collectables_.erase(it);
          continue;
        }
        std::vector<prometheus::MetricFamily> f = c->Collect();
        families.insert(families.end(), std::make_move_iterator(f.begin()),
                        std::make_move_iterator(f.end()));
        ++it;
      }
    }
    return prometheus::TextSerializer().Serialize(families);
  }

  std::unique_ptr<CivetServer> server_;
  std::string host_;
  std::unique_ptr<Page> metrics_;
  std::mutex mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  std::vector<std::unique_ptr<Page>> pages_;
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
  std::vector<std::string> options = {"listening_ports",    listen,
                                      "num_threads",        "4",
                                      "request_timeout_ms", "10000"};
  try {
    auto server = std::make_unique<CivetServer>(options);
    return std::unique_ptr<MetricsHttpServer>(
        new CivetMetricsServer(std::move(server), std::move(host)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("http_listen: cannot serve on ", listen, ": ", e.what()));
  }
}

}  // namespace fleetcanary
