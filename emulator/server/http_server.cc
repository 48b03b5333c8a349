#include "emulator/server/http_server.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "emulator/server/payload_cache.h"
#include "emulator/server/session.h"

// The server: listeners, the accept loop, the io threads and the options;
// each accepted connection is a Session (session.h).

namespace fleetcanary {
namespace emulator {
namespace {

using server_internal::Counters;
using server_internal::Listener;
using server_internal::Session;
using server_internal::Shared;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

class HttpServerImpl : public HttpServer {
 public:
  explicit HttpServerImpl(std::unique_ptr<Shared> shared)
      : shared_(std::move(shared)),
        ioc_(std::make_unique<net::io_context>(
            std::max(1, shared_->options.io_threads))) {}

  ~HttpServerImpl() override { Stop(); }

  absl::StatusOr<int> AddListener(int port, bool tls,
                                  RequestHandler handler) override {
    if (tls && shared_->tls == nullptr) {
      return absl::FailedPreconditionError(
          "TLS listener requested without tls_cert_file/tls_key_file");
    }
    auto listener = std::make_unique<Listener>();
    listener->handler = std::move(handler);
    listener->tls = tls;
    listener->acceptor = std::make_unique<tcp::acceptor>(*ioc_);
    listener->retry_timer = std::make_unique<net::steady_timer>(*ioc_);
    beast::error_code ec;
    net::ip::address address = net::ip::make_address(shared_->options.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "listen_host: not an IP address: ", shared_->options.host));
    }
    tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
    tcp::acceptor& a = *listener->acceptor;
    a.open(endpoint.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(endpoint, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                                 shared_->options.host, ":",
                                                 port, ": ", ec.message()));
    }
    const int bound = a.local_endpoint().port();
    listeners_.push_back(std::move(listener));
    return bound;
  }

  absl::Status Start() override {
    for (auto& l : listeners_) Accept(l.get());
    const int n = std::max(1, shared_->options.io_threads);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] { ioc_->run(); });
    }
    return absl::OkStatus();
  }

  void Stop() override {
    if (ioc_ == nullptr) return;
    net::post(*ioc_, [this] {
      for (auto& l : listeners_) {
        beast::error_code ec;
        l->acceptor->close(ec);
        l->retry_timer->cancel();
      }
    });
    ioc_->stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    listeners_.clear();
    ioc_.reset();  // Destroys every pending operation and thus every session.
  }

  HttpServerStats stats() const override {
    const Counters& c = shared_->counters;
    HttpServerStats s;
    s.open_connections = c.open.load();
    s.accepted_connections = c.accepted.load();
    s.rejected_connections = c.rejected.load();
    s.requests = c.requests.load();
    s.bad_requests = c.bad_requests.load();
    s.timeouts = c.timeouts.load();
    s.accept_errors = c.accept_errors.load();
    return s;
  }

 private:
  void Accept(Listener* l) {
    l->acceptor->async_accept(
        net::make_strand(*ioc_),
        [this, l](beast::error_code ec, tcp::socket socket) {
          if (ec == net::error::operation_aborted) return;
          if (ec) {
            // EMFILE and friends: back off instead of spinning.
            shared_->counters.accept_errors.fetch_add(1);
            l->retry_timer->expires_after(std::chrono::milliseconds(50));
            l->retry_timer->async_wait([this, l](beast::error_code tec) {
              if (!tec) Accept(l);
            });
            return;
          }
          OnAccept(l, std::move(socket));
          Accept(l);
        });
  }

  void OnAccept(Listener* l, tcp::socket socket) {
    Counters& c = shared_->counters;
    if (c.open.load() >=
        static_cast<int64_t>(shared_->options.max_connections)) {
      c.rejected.fetch_add(1);
      beast::error_code ec;
      socket.close(ec);
      return;
    }
    c.open.fetch_add(1);
    c.accepted.fetch_add(1);
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    if (l->tls) {
      std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
          shared_.get(), l, std::move(socket), *shared_->tls)
          ->Run();
    } else {
      std::make_shared<Session<beast::tcp_stream>>(shared_.get(), l,
                                                   std::move(socket))
          ->Run();
    }
  }

  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<net::io_context> ioc_;
  std::vector<std::thread> threads_;
};

}  // namespace

absl::string_view HttpRequest::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, name)) return v;
  }
  return "";
}

absl::string_view HttpRequest::Path() const {
  absl::string_view t = target;
  return t.substr(0, t.find('?'));
}

absl::string_view HttpRequest::Query() const {
  absl::string_view t = target;
  size_t q = t.find('?');
  return q == absl::string_view::npos ? absl::string_view() : t.substr(q + 1);
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      // Beast's table returns static, NUL-terminated literals.
      return http::obsolete_reason(static_cast<http::status>(status)).data();
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(
    const HttpServerOptions& options) {
  auto shared = std::make_unique<Shared>();
  shared->options = options;
  if (options.payload_cache_bytes >= PayloadBlockCache::kBlockBytes) {
    shared->payload_cache =
        std::make_unique<PayloadBlockCache>(options.payload_cache_bytes);
  }
  if (options.io_threads < 1 || options.io_threads > 64) {
    return absl::InvalidArgumentError("io_threads: must be 1..64");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_file and tls_key_file must be given together");
  }
  if (!options.tls_cert_file.empty()) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    beast::error_code ec;
    ctx->set_options(ssl::context::default_workarounds |
                         ssl::context::no_sslv2 | ssl::context::no_sslv3,
                     ec);
    ctx->use_certificate_chain_file(options.tls_cert_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls_cert_file: cannot load ", options.tls_cert_file,
                       ": ", ec.message()));
    }
    ctx->use_private_key_file(options.tls_key_file, ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls_key_file: cannot load ", options.tls_key_file, ": ",
                       ec.message()));
    }
    shared->tls = std::move(ctx);
  }
  return std::unique_ptr<HttpServer>(new HttpServerImpl(std::move(shared)));
}

}  // namespace emulator
}  // namespace fleetcanary
