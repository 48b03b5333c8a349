// One accepted connection of the HTTP server (http_server.h), plain TCP or
// TLS: reads and parses requests with Beast (bounded by header_limit,
// body_limit and read_timeout), answers malformed or oversized ones itself
// (400/413/431, then a bounded drain and close), hands the others to the
// listener's handler, and writes the planned response that ResponseStream
// lays out step by step: waiting out its pauses and stalls on a timer,
// bounding each write by write_timeout, and ending with a clean close or a
// reset when the plan cuts the response. Internal to the server.
//
// Lifetime: shared_ptr-owned; every pending operation holds a reference, so
// the session lives until its last operation completes or the io_context is
// destroyed. The plan's on_done runs exactly once (finished=false when the
// connection goes away first).
//
// Thread-safety: every operation of a session runs on its strand.
#ifndef FLEETCANARY_EMULATOR_SERVER_SESSION_H_
#define FLEETCANARY_EMULATOR_SERVER_SESSION_H_

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "emulator/server/http_server.h"
#include "emulator/server/payload_cache.h"
#include "emulator/server/response_stream.h"
#include "emulator/server/write_queue.h"

namespace fleetcanary {
namespace emulator {
namespace server_internal {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Most bytes read and discarded from a peer before closing after an error.
inline constexpr uint64_t kMaxDrain = 4 * 1024 * 1024;

inline std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// Counters behind HttpServerStats; updated from any io thread.
struct Counters {
  std::atomic<int64_t> open{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> bad_requests{0};
  std::atomic<int64_t> timeouts{0};
  std::atomic<int64_t> accept_errors{0};
};

// What every session of a server shares; owned by the server, outlives
// every session.
struct Shared {
  HttpServerOptions options;
  Counters counters;
  std::unique_ptr<net::ssl::context> tls;
  std::unique_ptr<PayloadBlockCache> payload_cache;  // Null: no cache.
};

// One listening socket and the handler of its requests; owned by the server.
struct Listener {
  RequestHandler handler;
  bool tls = false;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> retry_timer;
};

// `Stream` is beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>.
// REQUIRES: the caller counted the connection in counters.open (the session
// uncounts it when destroyed).
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
        timer_(stream_.get_executor()),
        response_(shared->payload_cache.get()) {}

  ~Session() {
    response_.Finish(false);
    shared_->counters.open.fetch_sub(1);
  }

  // Starts the TLS handshake (TLS streams), then reads the first request.
  void Run() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      DoRead();
    } else {
      Lowest().expires_after(ToChrono(shared_->options.read_timeout));
      stream_.async_handshake(
          net::ssl::stream_base::server,
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
  using Next = ResponseStream::Next;

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
    HandleRequest(parser_->release());
  }

  // Hands the parsed request to the handler and starts its response.
  void HandleRequest(http::request<http::string_body> msg) {
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
    ResponsePlan* plan = response_.Begin();
    listener_->handler(req, plan);
    if (!req.keep_alive) plan->close_connection = true;
    Pump();
  }

  void SendErrorAndClose(int status, absl::string_view text) {
    shared_->counters.bad_requests.fetch_add(1);
    parser_.reset();
    ResponsePlan* plan = response_.Begin();
    plan->status = status;
    plan->headers.emplace_back("Content-Type", "text/plain");
    plan->body = std::string(text);
    plan->close_connection = true;
    drain_on_close_ = true;
    response_.SkipFirstByteDelay();
    Pump();
  }

  // Writes as much of the plan as may go out before the next pause or fault.
  void Pump() {
    queue_.Clear();
    const ResponseStream::Step step = response_.NextStep(&queue_);
    if (step.next == Next::kPump && step.pause == absl::ZeroDuration() &&
        queue_.empty()) {
      return Pump();  // Nothing to write yet (e.g. at a shaping boundary).
    }
    if (queue_.empty()) return AfterWrite(step.next, step.pause);
    Lowest().expires_after(ToChrono(shared_->options.write_timeout));
    net::async_write(
        stream_, queue_.Buffers(),
        [self = this->shared_from_this(), step](beast::error_code ec, size_t) {
          if (ec) {
            if (ec == beast::error::timeout) {
              self->shared_->counters.timeouts.fetch_add(1);
            }
            return self->Abort();
          }
          self->AfterWrite(step.next, step.pause);
        });
  }

  void AfterWrite(Next next, absl::Duration pause) {
    switch (next) {
      case Next::kPump:
        if (pause > absl::ZeroDuration()) return Wait(pause, Next::kPump);
        return Pump();
      case Next::kFinish:
        response_.Finish(true);
        if (response_.plan().close_connection) return Close();
        return DoRead();
      case Next::kClose:
        response_.Finish(true);
        return Close();
      case Next::kReset:
        response_.Finish(true);
        return Reset();
      case Next::kStall: {
        response_.MarkStalled();
        absl::Duration d = response_.plan().stall_for;
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

  void Close() {
    if (closed_) return;
    response_.Finish(false);
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
    response_.Finish(false);
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
  ResponseStream response_;
  WriteQueue queue_;  // The write in flight, or the next one.
  bool closed_ = false;
  bool drain_on_close_ = false;
  std::string drain_buffer_;
  uint64_t drained_ = 0;
};

}  // namespace server_internal
}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SERVER_SESSION_H_
