#include "common/metrics/metrics_export.h"

#include <prometheus/text_serializer.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/proto/invoke_mode.h"

namespace fleetcanary {

std::string ModeLabel(v1::InvokeMode mode) { return InvokeModeName(mode); }

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

prometheus::MetricFamily CounterWithSample(std::string name, std::string help,
                                           const MetricLabels& labels,
                                           double value) {
  prometheus::MetricFamily f = CounterFamily(std::move(name), std::move(help));
  AddSample(&f, labels, value);
  return f;
}

prometheus::MetricFamily GaugeWithSample(std::string name, std::string help,
                                         const MetricLabels& labels,
                                         double value) {
  prometheus::MetricFamily f = GaugeFamily(std::move(name), std::move(help));
  AddSample(&f, labels, value);
  return f;
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

std::string ExpositionText(
    const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Per-connection bounds: a request must arrive whole within kReadTimeout and
// the response be taken within kWriteTimeout; at most kMaxConnections are
// open (more are closed at once). Idle or slow clients cost a socket, never
// a thread: one I/O thread multiplexes every connection, and pages render
// on kRenderThreads workers, so 1,000 idle connections do not stop a scrape.
constexpr absl::Duration kReadTimeout = absl::Seconds(5);
constexpr absl::Duration kWriteTimeout = absl::Seconds(10);
constexpr int kMaxConnections = 4096;
constexpr int kRenderThreads = 4;
constexpr size_t kMaxRequestBytes = 16 << 10;

class BeastMetricsServer : public MetricsHttpServer {
 public:
  explicit BeastMetricsServer(std::string host)
      : host_(std::move(host)), acceptor_(io_), render_(kRenderThreads) {}

  ~BeastMetricsServer() override { Stop(); }

  absl::Status Start(const std::string& host, int port) {
    beast::error_code ec;
    const asio::ip::address addr =
        asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("http_listen: bad host \"", host, "\": ", ec.message()));
    }
    const tcp::endpoint ep(addr, static_cast<uint16_t>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("http_listen: cannot serve on ", host, ":", port, ": ",
                       ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  void Register(const std::shared_ptr<prometheus::Collectable>& c) override {
    std::lock_guard<std::mutex> lock(mu_);
    collectables_.push_back(c);
  }

  void AddPage(const std::string& path, PageFn page) override {
    AddQueryPage(
        path, [page = std::move(page)](const std::string&) { return page(); });
  }
  void AddQueryPage(const std::string& path, QueryPageFn page) override {
    std::lock_guard<std::mutex> lock(mu_);
    pages_[path] = std::make_shared<QueryPageFn>(std::move(page));
  }

  std::string address() const override {
    return absl::StrCat(host_, ":", port());
  }
  int port() const override { return port_; }

 private:
  struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer{kMaxRequestBytes};
    http::request_parser<http::empty_body> parser;
    http::response<http::string_body> response;
  };

  void Stop() {
    asio::post(io_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    io_.stop();
    if (thread_.joinable()) thread_.join();
    render_.join();
  }

  void Accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        if (open_ >= kMaxConnections) {
          beast::error_code ignored;
          socket.close(ignored);  // Shed: over the connection cap.
        } else {
          ++open_;
          auto c = std::make_shared<Connection>(std::move(socket));
          c->parser.header_limit(kMaxRequestBytes);
          Read(std::move(c));
        }
      }
      Accept();
    });
  }

  // I/O thread.
  void Read(std::shared_ptr<Connection> c) {
    c->stream.expires_after(absl::ToChronoMilliseconds(kReadTimeout));
    http::async_read(c->stream, c->buffer, c->parser,
                     [this, c](beast::error_code ec, size_t) {
                       if (ec) return Close(c);
                       Handle(c);
                     });
  }

  void Handle(std::shared_ptr<Connection> c) {
    const auto& req = c->parser.get();
    std::string path(req.target());
    std::string query;
    const size_t q = path.find('?');
    if (q != std::string::npos) {
      query = path.substr(q + 1);
      path.resize(q);
    }
    std::shared_ptr<QueryPageFn> page;
    bool metrics = path == "/metrics";
    if (!metrics) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pages_.find(path);
      if (it != pages_.end()) page = it->second;
    }
    const bool get =
        req.method() == http::verb::get || req.method() == http::verb::head;
    if (!get || (!metrics && page == nullptr)) {
      return Respond(c, HttpPage{"text/plain; charset=utf-8",
                                 get ? "not found\n" : "method not allowed\n",
                                 get ? 404 : 405});
    }
    // Render off the I/O thread; respond back on it.
    asio::post(render_, [this, c, page, metrics, query] {
      HttpPage out = metrics ? HttpPage{"text/plain; version=0.0.4; "
                                        "charset=utf-8",
                                        Scrape()}
                             : (*page)(query);
      asio::post(io_, [this, c, out = std::move(out)]() mutable {
        Respond(c, std::move(out));
      });
    });
  }

  void Respond(std::shared_ptr<Connection> c, HttpPage page) {
    auto& res = c->response;
    res.version(11);
    res.result(static_cast<http::status>(page.status));
    res.set(http::field::content_type, page.content_type);
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(false);
    res.body() = std::move(page.body);
    res.prepare_payload();
    c->stream.expires_after(absl::ToChronoMilliseconds(kWriteTimeout));
    http::async_write(c->stream, res,
                      [this, c](beast::error_code, size_t) { Close(c); });
  }

  void Close(const std::shared_ptr<Connection>& c) {
    beast::error_code ec;
    c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    c->stream.close();
    --open_;
  }

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
    return ExpositionText(families);
  }

  const std::string host_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::thread_pool render_;
  std::thread thread_;
  int port_ = 0;
  int open_ = 0;  // I/O thread only.
  std::mutex mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  std::map<std::string, std::shared_ptr<QueryPageFn>> pages_;
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
  std::string bind_host = host;
  if (bind_host.size() > 2 && bind_host.front() == '[' &&
      bind_host.back() == ']') {
    bind_host = bind_host.substr(1, bind_host.size() - 2);
  }
  auto server = std::make_unique<BeastMetricsServer>(host);
  if (absl::Status s = server->Start(bind_host, port); !s.ok()) return s;
  return std::unique_ptr<MetricsHttpServer>(std::move(server));
}

}  // namespace fleetcanary
