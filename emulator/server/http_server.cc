#include "emulator/server/http_server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log/log.h"
#include "common/payload/payload.h"
#include "emulator/server/payload_cache.h"

namespace fleetcanary {
namespace emulator {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr uint64_t kMaxWrite = 64 * 1024;
// Per write when the body comes from the payload cache.
constexpr uint64_t kMaxCachedWrite = 1024 * 1024;
// Chunks at least this large are written from the cache in large writes.
constexpr uint64_t kMinExternalChunk = 16 * 1024;
constexpr uint64_t kDefaultChunk = 64 * 1024;
constexpr uint64_t kMaxDrain = 4 * 1024 * 1024;
// Runs shorter than this are copied into the write buffer, not referenced.
constexpr size_t kMinExternalBytes = 1024;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

struct Counters {
  std::atomic<int64_t> open{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> bad_requests{0};
  std::atomic<int64_t> timeouts{0};
  std::atomic<int64_t> accept_errors{0};
};

struct Shared {
  HttpServerOptions options;
  Counters counters;
  std::unique_ptr<ssl::context> tls;
  std::unique_ptr<PayloadBlockCache> payload_cache;  // Null: no cache.
};

struct Listener {
  RequestHandler handler;
  bool tls = false;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> retry_timer;
};

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <class... Args>
  Session(Shared* shared, Listener* listener, Args&&... args)
      : shared_(shared),
        listener_(listener),
        stream_(std::forward<Args>(args)...),
        buffer_(shared->options.header_limit + shared->options.body_limit +
                4096),
        timer_(stream_.get_executor()) {}

  ~Session() {
    FinishPlan(false);
    shared_->counters.open.fetch_sub(1);
  }

  void Run() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      DoRead();
    } else {
      Lowest().expires_after(ToChrono(shared_->options.read_timeout));
      stream_.async_handshake(
          ssl::stream_base::server,
          [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) {
              if (ec == beast::error::timeout) {
                self->shared_->counters.timeouts.fetch_add(1);
              }
              return self->Abort();
            }
            self->DoRead();
          });
    }
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->options.header_limit));
    parser_->body_limit(shared_->options.body_limit);
    Lowest().expires_after(ToChrono(shared_->options.read_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](
                         beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof) {
      return Close();
    }
    if (ec == beast::error::timeout) {
      shared_->counters.timeouts.fetch_add(1);
      return Abort();
    }
    if (ec == http::error::header_limit) {
      return SendErrorAndClose(431, "request header fields too large\n");
    }
    if (ec == http::error::body_limit) {
      return SendErrorAndClose(413, "request body too large\n");
    }
    if (ec && ec.category() ==
                  http::make_error_code(http::error::bad_method).category()) {
      return SendErrorAndClose(400, "malformed request\n");
    }
    if (ec == net::error::message_size) {  // Buffer overflow.
      return SendErrorAndClose(431, "request too large\n");
    }
    if (ec) return Abort();
    shared_->counters.requests.fetch_add(1);
    http::request<http::string_body> msg = parser_->release();
    parser_.reset();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.keep_alive = msg.keep_alive();
    for (const auto& field : msg) {
      req.headers.emplace_back(std::string(field.name_string()),
                               std::string(field.value()));
    }
    req.body = std::move(msg.body());
    plan_ = ResponsePlan();
    plan_active_ = true;
    listener_->handler(req, &plan_);
    if (!req.keep_alive) plan_.close_connection = true;
    offset_ = 0;
    head_sent_ = false;
    delayed_ = false;
    stalled_ = false;
    Pump();
  }

  void SendErrorAndClose(int status, absl::string_view text) {
    shared_->counters.bad_requests.fetch_add(1);
    parser_.reset();
    plan_ = ResponsePlan();
    plan_.status = status;
    plan_.headers.emplace_back("Content-Type", "text/plain");
    plan_.body = std::string(text);
    plan_.close_connection = true;
    plan_active_ = true;
    drain_on_close_ = true;
    offset_ = 0;
    head_sent_ = false;
    delayed_ = true;
    stalled_ = false;
    Pump();
  }

  void AppendHead() {
    const ResponsePlan& p = plan_;
    const size_t at = out_.size();
    absl::StrAppend(&out_, "HTTP/1.1 ", p.status, " ",
                    p.reason.empty() ? ReasonPhrase(p.status) : p.reason,
                    "\r\n");
    for (const auto& [name, value] : p.headers) {
      absl::StrAppend(&out_, name, ": ", value, "\r\n");
    }
    if (p.framing == ResponsePlan::Framing::kChunked) {
      out_.append("Transfer-Encoding: chunked\r\n");
    } else {
      absl::StrAppend(&out_, "Content-Length: ", p.body_size(), "\r\n");
    }
    out_.append(p.close_connection ? "Connection: close\r\n\r\n"
                                   : "Connection: keep-alive\r\n\r\n");
    AddOwnedPiece(at, out_.size() - at);
  }

  // Queues bytes held by out_ (copied there).
  void AppendOwned(absl::string_view bytes) {
    const size_t at = out_.size();
    out_.append(bytes.data(), bytes.size());
    AddOwnedPiece(at, bytes.size());
  }

  // Records that out_[at, at + n) goes out next.
  void AddOwnedPiece(size_t at, size_t n) {
    if (n == 0) return;
    if (!pieces_.empty() && pieces_.back().external == nullptr &&
        pieces_.back().offset + pieces_.back().size == at) {
      pieces_.back().size += n;
      return;
    }
    pieces_.push_back(Piece{nullptr, at, n});
  }

  // Queues `n` bytes at `data`, which stay valid until the write completes;
  // short runs are copied (an iovec entry costs more than a small memcpy).
  void AppendExternal(const char* data, size_t n) {
    if (n < kMinExternalBytes) return AppendOwned(absl::string_view(data, n));
    pieces_.push_back(Piece{data, 0, n});
  }

  // Queues body bytes [from, to) without framing or corruption. Payload
  // blocks mostly inside the body come from the shared cache and are
  // written from there; the rest is generated into out_.
  void AppendBodyBytes(uint64_t from, uint64_t to) {
    if (!plan_.payload) {
      return AppendExternal(plan_.body.data() + from, to - from);
    }
    constexpr uint64_t kBlock = PayloadBlockCache::kBlockBytes;
    uint64_t pos = from;
    while (pos < to) {
      const uint64_t index = pos / kBlock;
      const uint64_t block_start = index * kBlock;
      const uint64_t end = std::min(to, block_start + kBlock);
      const uint64_t in_body =
          std::min(plan_.payload_size, block_start + kBlock) - block_start;
      if (shared_->payload_cache != nullptr && in_body >= kBlock / 2) {
        std::shared_ptr<const std::string> block =
            shared_->payload_cache->Get(plan_.payload_seed, index);
        AppendExternal(block->data() + (pos - block_start), end - pos);
        pinned_.push_back(std::move(block));
      } else {
        const size_t at = out_.size();
        out_.resize(at + (end - pos));
        FillPayload(plan_.payload_seed, pos, &out_[at], end - pos);
        AddOwnedPiece(at, end - pos);
      }
      pos = end;
    }
  }

  // Queues body bytes [from, to), framed, with the corruption applied.
  void AppendBody(uint64_t from, uint64_t to) {
    const bool chunked = plan_.framing == ResponsePlan::Framing::kChunked;
    const uint64_t chunk =
        plan_.chunk_bytes ? plan_.chunk_bytes : kDefaultChunk;
    uint64_t pos = from;
    while (pos < to) {
      uint64_t end = to;
      if (chunked) end = std::min(to, (pos / chunk + 1) * chunk);
      if (chunked) AppendOwned(absl::StrCat(absl::Hex(end - pos), "\r\n"));
      if (plan_.corrupt_offset >= 0 &&
          static_cast<uint64_t>(plan_.corrupt_offset) >= pos &&
          static_cast<uint64_t>(plan_.corrupt_offset) < end) {
        const uint64_t bad = static_cast<uint64_t>(plan_.corrupt_offset);
        AppendBodyBytes(pos, bad);
        char byte;
        if (plan_.payload) {
          FillPayload(plan_.payload_seed, bad, &byte, 1);
        } else {
          byte = plan_.body[bad];
        }
        byte ^= static_cast<char>(0xFF);
        AppendOwned(absl::string_view(&byte, 1));
        AppendBodyBytes(bad + 1, end);
      } else {
        AppendBodyBytes(pos, end);
      }
      if (chunked) AppendOwned("\r\n");
      pos = end;
    }
  }

  enum class Next { kPump, kFinish, kClose, kReset, kStall };

  // Writes as much of the plan as may go out before the next pause or fault.
  void Pump() {
    out_.clear();
    pieces_.clear();
    pinned_.clear();
    if (!head_sent_) {
      if (!delayed_ && plan_.first_byte_delay > absl::ZeroDuration()) {
        delayed_ = true;
        return Wait(plan_.first_byte_delay, Next::kPump);
      }
      AppendHead();
      head_sent_ = true;
    }
    const bool chunked = plan_.framing == ResponsePlan::Framing::kChunked;
    const uint64_t size = plan_.body_size();
    uint64_t limit = size;
    if (plan_.cut != ResponsePlan::Cut::kNone) {
      limit = std::min(limit, plan_.cut_after);
    }
    if (plan_.stall_after.has_value() && !stalled_) {
      limit = std::min(limit, *plan_.stall_after);
    }
    // Payload bodies written from the shared block cache cost no buffer
    // memory, so they go out in larger writes (fewer system calls and
    // completions); tiny chunks would still need framing bytes per chunk.
    const uint64_t chunk =
        plan_.chunk_bytes ? plan_.chunk_bytes : kDefaultChunk;
    uint64_t budget = kMaxWrite;
    if (plan_.payload && shared_->payload_cache != nullptr &&
        (!chunked || chunk >= kMinExternalChunk)) {
      budget = kMaxCachedWrite;
    }
    absl::Duration pause = absl::ZeroDuration();
    if (chunked && plan_.chunk_gap > absl::ZeroDuration()) {
      budget = (offset_ / chunk + 1) * chunk - offset_;
      pause = plan_.chunk_gap;
    }
    if (plan_.bytes_per_second > 0) {
      budget =
          std::min(budget, std::max<uint64_t>(1, plan_.bytes_per_second / 20));
    }
    if (plan_.shape_bytes_per_second > 0) {
      if (offset_ < plan_.shape_after) {
        limit = std::min(limit, plan_.shape_after);
      } else {
        budget = std::min(budget, kMaxWrite);
      }
    }
    const uint64_t end = std::min(limit, offset_ + budget);
    const uint64_t sent = end - offset_;
    AppendBody(offset_, end);
    offset_ = end;
    if (sent > 0) {
      if (plan_.bytes_per_second > 0) {
        pause = std::max(pause, absl::Seconds(static_cast<double>(sent) /
                                              plan_.bytes_per_second));
      }
      if (plan_.shape_bytes_per_second > 0 && end > plan_.shape_after) {
        pause = std::max(pause, absl::Seconds(static_cast<double>(sent) /
                                              plan_.shape_bytes_per_second));
      }
    }
    Next next = Next::kPump;
    if (plan_.cut != ResponsePlan::Cut::kNone && offset_ == plan_.cut_after &&
        offset_ < size) {
      if (plan_.cut == ResponsePlan::Cut::kReset) {
        next = Next::kReset;
      } else if (chunked && plan_.final_chunk_on_cut) {
        AppendOwned("0\r\n\r\n");
        next = Next::kFinish;
      } else {
        next = Next::kClose;
      }
    } else if (offset_ == size) {
      if (chunked) AppendOwned("0\r\n\r\n");
      next = Next::kFinish;
    } else if (plan_.stall_after.has_value() && !stalled_ &&
               offset_ == *plan_.stall_after) {
      next = Next::kStall;
    }
    if (next == Next::kPump && pause == absl::ZeroDuration() &&
        pieces_.empty()) {
      return Pump();  // Nothing to write yet (e.g. at a shaping boundary).
    }
    if (pieces_.empty()) return AfterWrite(next, pause);
    buffers_.clear();
    for (const Piece& piece : pieces_) {
      buffers_.emplace_back(piece.external != nullptr
                                ? piece.external
                                : out_.data() + piece.offset,
                            piece.size);
    }
    Lowest().expires_after(ToChrono(shared_->options.write_timeout));
    net::async_write(stream_, buffers_,
                     [self = this->shared_from_this(), next, pause](
                         beast::error_code ec, size_t) {
                       if (ec) {
                         if (ec == beast::error::timeout) {
                           self->shared_->counters.timeouts.fetch_add(1);
                         }
                         return self->Abort();
                       }
                       self->AfterWrite(next, pause);
                     });
  }

  void AfterWrite(Next next, absl::Duration pause) {
    switch (next) {
      case Next::kPump:
        if (pause > absl::ZeroDuration()) return Wait(pause, Next::kPump);
        return Pump();
      case Next::kFinish:
        FinishPlan(true);
        if (plan_.close_connection) return Close();
        return DoRead();
      case Next::kClose:
        FinishPlan(true);
        return Close();
      case Next::kReset:
        FinishPlan(true);
        return Reset();
      case Next::kStall: {
        stalled_ = true;
        absl::Duration d = plan_.stall_for;
        if (d > shared_->options.max_stall) d = shared_->options.max_stall;
        WatchPeerDuringStall();
        return Wait(d, Next::kPump);
      }
    }
  }

  // While stalled, notices the peer closing so the connection is released.
  void WatchPeerDuringStall() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      Lowest().expires_never();
      Lowest().socket().async_wait(
          tcp::socket::wait_read,
          [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) return;  // Cancelled: the stall ended.
            char probe;
            beast::error_code rec;
            size_t n = self->Lowest().socket().receive(
                net::buffer(&probe, 1), tcp::socket::message_peek, rec);
            if (rec || n == 0) {
              self->timer_.cancel();
              self->Abort();
            }
          });
    }
  }

  void Wait(absl::Duration d, Next next) {
    Lowest().expires_never();
    timer_.expires_after(ToChrono(d));
    timer_.async_wait(
        [self = this->shared_from_this(), next](beast::error_code ec) {
          if (ec || self->closed_) return;
          if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            beast::error_code ignore;
            self->Lowest().socket().cancel(ignore);
          }
          if (next == Next::kPump) self->Pump();
        });
  }

  void FinishPlan(bool finished) {
    if (!plan_active_) return;
    plan_active_ = false;
    if (plan_.on_done) {
      Completion c;
      c.body_bytes_sent = offset_;
      c.finished = finished;
      auto done = std::move(plan_.on_done);
      plan_.on_done = nullptr;
      done(c);
    }
  }

  void Close() {
    if (closed_) return;
    FinishPlan(false);
    timer_.cancel();
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (drain_on_close_) {
      // The request was not read to its end: read and discard what the
      // peer still sends (bounded in bytes and time) before closing, so
      // that closing with unread data does not reset the connection and
      // destroy the error response in flight.
      drain_on_close_ = false;
      drain_buffer_.resize(16 * 1024);
      Lowest().expires_after(std::chrono::seconds(1));
      return Drain();
    }
    closed_ = true;
    Lowest().socket().close(ec);
  }

  void Drain() {
    Lowest().async_read_some(
        net::buffer(drain_buffer_),
        [self = this->shared_from_this()](beast::error_code ec, size_t n) {
          self->drained_ += n;
          if (ec || self->drained_ > kMaxDrain) {
            self->closed_ = true;
            beast::error_code ignore;
            self->Lowest().socket().close(ignore);
            return;
          }
          self->Drain();
        });
  }

  void Abort() {
    if (closed_) return;
    closed_ = true;
    FinishPlan(false);
    timer_.cancel();
    beast::error_code ec;
    Lowest().socket().close(ec);
  }

  void Reset() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    beast::error_code ec;
    Lowest().socket().set_option(net::socket_base::linger(true, 0), ec);
    Lowest().socket().close(ec);
  }

  Shared* const shared_;
  Listener* const listener_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  net::steady_timer timer_;
  ResponsePlan plan_;
  bool plan_active_ = false;
  uint64_t offset_ = 0;
  bool head_sent_ = false;
  bool delayed_ = false;
  bool stalled_ = false;
  bool closed_ = false;
  bool drain_on_close_ = false;
  std::string drain_buffer_;
  uint64_t drained_ = 0;
  // The next write: bytes in out_ and external bytes (cached payload
  // blocks kept alive by pinned_, the plan's body), in order.
  struct Piece {
    const char* external;  // nullptr: out_[offset, offset + size).
    size_t offset;
    size_t size;
  };
  std::string out_;
  std::vector<Piece> pieces_;
  std::vector<std::shared_ptr<const std::string>> pinned_;
  std::vector<net::const_buffer> buffers_;
};

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
