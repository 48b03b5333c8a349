#include "tests/testing/fault_server.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/payload/payload.h"

namespace fleetcanary {
namespace testing {

namespace asio = boost::asio;
using asio::ip::tcp;

// --- FaultSpec ------------------------------------------------------------

std::string FaultSpec::ToPath() const {
  std::vector<std::string> kv;
  const FaultSpec d;
  if (framing != d.framing) {
    kv.push_back(absl::StrCat("framing=", framing == Framing::kChunked
                                              ? "chunked"
                                          : framing == Framing::kClose ? "close"
                                                                       : "cl"));
  }
  if (status != d.status) kv.push_back(absl::StrCat("status=", status));
  if (first_byte_delay != d.first_byte_delay) {
    kv.push_back(
        absl::StrCat("delay_us=", absl::ToInt64Microseconds(first_byte_delay)));
  }
  if (stall_at >= 0) kv.push_back(absl::StrCat("stall_at=", stall_at));
  if (close_at >= 0) kv.push_back(absl::StrCat("close_at=", close_at));
  if (end_at >= 0) kv.push_back(absl::StrCat("end_at=", end_at));
  if (reset_at >= 0) kv.push_back(absl::StrCat("reset_at=", reset_at));
  if (corrupt_at >= 0) kv.push_back(absl::StrCat("corrupt_at=", corrupt_at));
  if (endless) kv.push_back("endless=1");
  if (header_bytes > 0)
    kv.push_back(absl::StrCat("header_bytes=", header_bytes));
  if (header_line_bytes > 0) {
    kv.push_back(absl::StrCat("header_line=", header_line_bytes));
  }
  if (silent) kv.push_back("silent=1");
  if (trickle > absl::ZeroDuration()) {
    kv.push_back(
        absl::StrCat("trickle_us=", absl::ToInt64Microseconds(trickle)));
  }
  if (header_trickle_bytes > 0) {
    kv.push_back(absl::StrCat("htrickle_bytes=", header_trickle_bytes));
  }
  if (header_trickle != d.header_trickle) {
    kv.push_back(absl::StrCat("htrickle_us=",
                              absl::ToInt64Microseconds(header_trickle)));
  }
  if (declare_bytes != d.declare_bytes) {
    kv.push_back(absl::StrCat("declare=", declare_bytes));
  }
  if (!echo_probe_id) kv.push_back("echo=0");
  if (chunk_bytes > 0) kv.push_back(absl::StrCat("chunk=", chunk_bytes));
  if (chunk_gap > absl::ZeroDuration()) {
    kv.push_back(absl::StrCat("gap_us=", absl::ToInt64Microseconds(chunk_gap)));
  }
  if (kv.empty()) return "/";
  return absl::StrCat("/f/", absl::StrJoin(kv, ","), "/");
}

absl::StatusOr<FaultSpec> FaultSpec::Parse(absl::string_view text) {
  FaultSpec s;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const absl::string_view k = kv.first;
    const absl::string_view v = kv.second;
    int64_t n = 0;
    if (k == "framing") {
      if (v == "cl") {
        s.framing = Framing::kContentLength;
      } else if (v == "chunked") {
        s.framing = Framing::kChunked;
      } else if (v == "close") {
        s.framing = Framing::kClose;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("framing: ", v));
      }
      continue;
    }
    if (!absl::SimpleAtoi(v, &n)) {
      return absl::InvalidArgumentError(absl::StrCat(k, ": not a number: ", v));
    }
    if (k == "status") {
      s.status = static_cast<int>(n);
    } else if (k == "delay_us") {
      s.first_byte_delay = absl::Microseconds(n);
    } else if (k == "stall_at") {
      s.stall_at = n;
    } else if (k == "close_at") {
      s.close_at = n;
    } else if (k == "end_at") {
      s.end_at = n;
    } else if (k == "reset_at") {
      s.reset_at = n;
    } else if (k == "corrupt_at") {
      s.corrupt_at = n;
    } else if (k == "endless") {
      s.endless = n != 0;
    } else if (k == "header_bytes") {
      s.header_bytes = static_cast<uint64_t>(n);
    } else if (k == "header_line") {
      s.header_line_bytes = static_cast<uint64_t>(n);
    } else if (k == "silent") {
      s.silent = n != 0;
    } else if (k == "trickle_us") {
      s.trickle = absl::Microseconds(n);
    } else if (k == "htrickle_bytes") {
      s.header_trickle_bytes = static_cast<uint64_t>(n);
    } else if (k == "htrickle_us") {
      s.header_trickle = absl::Microseconds(n);
    } else if (k == "declare") {
      s.declare_bytes = n;
    } else if (k == "echo") {
      s.echo_probe_id = n != 0;
    } else if (k == "chunk") {
      s.chunk_bytes = static_cast<uint64_t>(n);
    } else if (k == "gap_us") {
      s.chunk_gap = absl::Microseconds(n);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown key: ", k));
    }
  }
  return s;
}

namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;
constexpr uint64_t kDefaultPiece = 64 * 1024;

class ServerState {
 public:
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> requests{0};
  FaultSpec default_spec;

  void SetLastHeaders(std::string h) {
    absl::MutexLock lock(&mu_);
    last_headers_ = std::move(h);
  }
  std::string last_headers() const {
    absl::MutexLock lock(&mu_);
    return last_headers_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string last_headers_ ABSL_GUARDED_BY(mu_);
};

// One connection; requests are served one after another (keep-alive).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<ServerState> state)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        state_(std::move(state)),
        in_(kMaxRequestBytes) {}

  void Start() { ReadRequest(); }

 private:
  void ReadRequest() {
    if (in_.size() > 0) return ReadHead();  // Pipelined request already read.
    auto self = shared_from_this();
    // Like real servers, answer something that is not HTTP (e.g. a TLS
    // ClientHello) with a 400 and close, instead of waiting for "\r\n\r\n".
    socket_.async_wait(
        tcp::socket::wait_read, [self](boost::system::error_code ec) {
          if (ec) return self->Close();
          char first = 0;
          const ssize_t n =
              recv(self->socket_.native_handle(), &first, 1, MSG_PEEK);
          if (n == 1 &&
              !absl::ascii_isalpha(static_cast<unsigned char>(first))) {
            return self->RefuseNonHttp();
          }
          self->ReadHead();
        });
  }

  void RefuseNonHttp() {
    out_ =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n";
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_),
                      [self](boost::system::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->CloseCleanly();
                      });
  }

  void ReadHead() {
    auto self = shared_from_this();
    asio::async_read_until(socket_, in_, "\r\n\r\n",
                           [self](boost::system::error_code ec, size_t n) {
                             if (ec) return self->Close();
                             self->OnRequest(n);
                           });
  }

  void OnRequest(size_t n) {
    std::string head(asio::buffers_begin(in_.data()),
                     asio::buffers_begin(in_.data()) + n);
    in_.consume(n);
    state_->requests.fetch_add(1);
    state_->SetLastHeaders(head);
    // Request line: GET <target> HTTP/1.1
    const size_t eol = head.find("\r\n");
    std::vector<absl::string_view> parts =
        absl::StrSplit(absl::string_view(head).substr(0, eol), ' ');
    if (parts.size() != 3) return Close();
    absl::string_view target = parts[1];
    spec_ = state_->default_spec;
    if (absl::ConsumePrefix(&target, "/f/")) {
      const size_t slash = target.find('/');
      absl::StatusOr<FaultSpec> spec =
          FaultSpec::Parse(target.substr(0, slash));
      if (!spec.ok()) return Close();
      spec_ = *spec;
    }
    bytes_ = 0;
    seed_ = 0;
    chunk_ = 0;
    gap_ = absl::ZeroDuration();
    const size_t q = target.find('?');
    if (q != absl::string_view::npos) {
      for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&')) {
        std::pair<absl::string_view, absl::string_view> p =
            absl::StrSplit(kv, absl::MaxSplits('=', 1));
        uint64_t v = 0;
        if (!absl::SimpleAtoi(p.second, &v)) continue;
        if (p.first == "bytes") bytes_ = v;
        if (p.first == "seed") seed_ = v;
        if (p.first == "chunk") chunk_ = v;
        if (p.first == "gap_ms") gap_ = absl::Milliseconds(v);
      }
    }
    if (spec_.chunk_bytes > 0) chunk_ = spec_.chunk_bytes;
    if (spec_.chunk_gap > absl::ZeroDuration()) gap_ = spec_.chunk_gap;
    probe_id_.clear();
    keep_alive_ = spec_.framing != FaultSpec::Framing::kClose;
    for (absl::string_view line :
         absl::StrSplit(absl::string_view(head).substr(eol + 2), "\r\n")) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      const absl::string_view name = line.substr(0, colon);
      const absl::string_view value =
          absl::StripAsciiWhitespace(line.substr(colon + 1));
      if (absl::EqualsIgnoreCase(name, "x-canary-probe-id")) {
        probe_id_ = std::string(value);
      } else if (absl::EqualsIgnoreCase(name, "connection") &&
                 absl::EqualsIgnoreCase(value, "close")) {
        keep_alive_ = false;
      }
    }
    sent_ = 0;
    if (spec_.silent) return DrainUntilClosed();
    if (spec_.first_byte_delay > absl::ZeroDuration()) {
      auto self = shared_from_this();
      timer_.expires_after(absl::ToChronoNanoseconds(spec_.first_byte_delay));
      timer_.async_wait([self](boost::system::error_code ec) {
        if (ec) return self->Close();
        self->SendHead();
      });
      return;
    }
    SendHead();
  }

  void SendHead() {
    const int64_t index = state_->requests.load();
    out_ = absl::StrCat("HTTP/1.1 ", spec_.status, " ",
                        spec_.status == 200 ? "OK" : "Fault", "\r\n");
    absl::StrAppend(&out_, "Content-Type: application/octet-stream\r\n");
    switch (spec_.framing) {
      case FaultSpec::Framing::kContentLength:
        absl::StrAppend(&out_, "Content-Length: ", bytes_, "\r\n");
        break;
      case FaultSpec::Framing::kChunked:
        absl::StrAppend(&out_, "Transfer-Encoding: chunked\r\n");
        break;
      case FaultSpec::Framing::kClose:
        absl::StrAppend(&out_, "Connection: close\r\n");
        break;
    }
    if (spec_.declare_bytes == -2) {
      absl::StrAppend(&out_, "x-canary-bytes: ", bytes_, "\r\n");
    } else if (spec_.declare_bytes >= 0) {
      absl::StrAppend(&out_, "x-canary-bytes: ", spec_.declare_bytes, "\r\n");
    }
    absl::StrAppend(&out_, "x-canary-seed: ", seed_, "\r\n");
    if (spec_.echo_probe_id && !probe_id_.empty()) {
      absl::StrAppend(&out_, "x-canary-probe-id: ", probe_id_, "\r\n");
    }
    absl::StrAppend(&out_, "x-amzn-RequestId: 00000000-0000-4000-8000-",
                    absl::Hex(index, absl::kZeroPad12), "\r\n");
    absl::StrAppend(&out_, "X-Amzn-Trace-Id: Root=1-00000000-",
                    absl::Hex(index, absl::kZeroPad16), "\r\n");
    if (spec_.header_line_bytes > 0) absl::StrAppend(&out_, "x-giant: ");
    pad_line_left_ = spec_.header_line_bytes;
    pad_lines_left_ = spec_.header_bytes;
    pad_index_ = 0;
    trickle_line_.clear();
    trickle_pos_ = 0;
    if (spec_.header_trickle_bytes > 0) {
      trickle_line_ = absl::StrCat(
          "x-trickle: ", std::string(spec_.header_trickle_bytes, 't'), "\r\n");
    }
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_),
                      [self](boost::system::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->SendHeadPadding();
                      });
  }

  // Writes the oversized header parts in 64 KiB pieces (bounded memory even
  // for 10 MB of headers), then the end of the header block.
  void SendHeadPadding() {
    out_.clear();
    if (pad_line_left_ > 0) {
      const uint64_t n = std::min<uint64_t>(pad_line_left_, kDefaultPiece);
      out_.append(n, 'g');
      pad_line_left_ -= n;
      if (pad_line_left_ == 0) out_.append("\r\n");
    } else if (pad_lines_left_ > 0) {
      while (pad_lines_left_ > 0 && out_.size() < kDefaultPiece) {
        std::string line = absl::StrCat("x-pad-", pad_index_++, ": ");
        line.append(1000, 'p');
        line.append("\r\n");
        pad_lines_left_ -= std::min<uint64_t>(pad_lines_left_, line.size());
        out_.append(line);
      }
    } else if (!trickle_line_.empty()) {
      return TrickleHeader();
    } else {
      if (!keep_alive_ && spec_.framing != FaultSpec::Framing::kClose) {
        absl::StrAppend(&out_, "Connection: close\r\n");
      }
      absl::StrAppend(&out_, "\r\n");
      auto self = shared_from_this();
      asio::async_write(socket_, asio::buffer(out_),
                        [self](boost::system::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->SendBody();
                        });
      return;
    }
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_),
                      [self](boost::system::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->SendHeadPadding();
                      });
  }

  // Sends the trickled header line one byte per interval, then the rest.
  void TrickleHeader() {
    if (trickle_pos_ >= trickle_line_.size()) {
      trickle_line_.clear();
      return SendHeadPadding();
    }
    out_ = trickle_line_.substr(trickle_pos_++, 1);
    auto self = shared_from_this();
    asio::async_write(
        socket_, asio::buffer(out_),
        [self](boost::system::error_code ec, size_t) {
          if (ec) return self->Close();
          self->timer_.expires_after(
              absl::ToChronoNanoseconds(self->spec_.header_trickle));
          self->timer_.async_wait([self](boost::system::error_code ec) {
            if (ec) return self->Close();
            self->TrickleHeader();
          });
        });
  }

  // The body offset at which the current fault (or the end) happens.
  uint64_t StopAt() const {
    uint64_t stop = spec_.endless ? UINT64_MAX : bytes_;
    for (int64_t k :
         {spec_.stall_at, spec_.close_at, spec_.end_at, spec_.reset_at}) {
      if (k >= 0) stop = std::min<uint64_t>(stop, k);
    }
    return stop;
  }

  void SendBody() {
    const uint64_t stop = StopAt();
    if (sent_ >= stop) return AtStop();
    uint64_t piece = chunk_ > 0 ? chunk_ : kDefaultPiece;
    if (spec_.trickle > absl::ZeroDuration()) piece = 1;
    piece = std::min<uint64_t>(piece, stop - sent_);
    std::string data(piece, '\0');
    FillPayload(seed_, sent_, data.data(), piece);
    if (spec_.corrupt_at >= 0 &&
        static_cast<uint64_t>(spec_.corrupt_at) >= sent_ &&
        static_cast<uint64_t>(spec_.corrupt_at) < sent_ + piece) {
      data[spec_.corrupt_at - sent_] ^= 0xff;
    }
    if (spec_.framing == FaultSpec::Framing::kChunked) {
      out_ = absl::StrCat(absl::Hex(piece), "\r\n", data, "\r\n");
    } else {
      out_ = std::move(data);
    }
    sent_ += piece;
    auto self = shared_from_this();
    asio::async_write(
        socket_, asio::buffer(out_),
        [self](boost::system::error_code ec, size_t) {
          if (ec) return self->Close();
          absl::Duration wait = self->spec_.trickle > absl::ZeroDuration()
                                    ? self->spec_.trickle
                                    : self->gap_;
          if (wait <= absl::ZeroDuration() || self->sent_ >= self->StopAt()) {
            return self->SendBody();
          }
          self->timer_.expires_after(absl::ToChronoNanoseconds(wait));
          self->timer_.async_wait([self](boost::system::error_code ec) {
            if (ec) return self->Close();
            self->SendBody();
          });
        });
  }

  void AtStop() {
    auto self = shared_from_this();
    const uint64_t stop = StopAt();
    if (spec_.stall_at >= 0 && stop == static_cast<uint64_t>(spec_.stall_at)) {
      return DrainUntilClosed();
    }
    if (spec_.reset_at >= 0 && stop == static_cast<uint64_t>(spec_.reset_at)) {
      reset_polls_ = 0;
      return ResetWhenAcked();
    }
    if (spec_.close_at >= 0 && stop == static_cast<uint64_t>(spec_.close_at)) {
      return CloseCleanly();
    }
    // Normal end (or end_at): frame the end of the body.
    if (spec_.framing == FaultSpec::Framing::kClose) return CloseCleanly();
    if (spec_.framing == FaultSpec::Framing::kChunked) {
      out_ = "0\r\n\r\n";
      asio::async_write(socket_, asio::buffer(out_),
                        [self](boost::system::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->NextOrClose();
                        });
      return;
    }
    NextOrClose();
  }

  void NextOrClose() {
    if (keep_alive_) return ReadRequest();
    CloseCleanly();
  }

  // FIN after everything written, then wait for the peer to close.
  void CloseCleanly() {
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    DrainUntilClosed();
  }

  // Reads and discards until the peer closes (or the server stops).
  void DrainUntilClosed() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(drain_),
                            [self](boost::system::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->DrainUntilClosed();
                            });
  }

  // RST once the peer acknowledged every byte sent (SIOCOUTQ == 0), so the
  // client sees exactly the k bytes and then the reset.
  void ResetWhenAcked() {
    int unacked = 0;
    if (ioctl(socket_.native_handle(), SIOCOUTQ, &unacked) == 0 &&
        unacked > 0 && ++reset_polls_ < 2000) {
      auto self = shared_from_this();
      timer_.expires_after(std::chrono::milliseconds(1));
      timer_.async_wait([self](boost::system::error_code ec) {
        if (ec) return self->Close();
        self->ResetWhenAcked();
      });
      return;
    }
    boost::system::error_code ec;
    socket_.set_option(asio::socket_base::linger(true, 0), ec);
    socket_.close(ec);
  }

  void Close() {
    boost::system::error_code ec;
    timer_.cancel();
    socket_.close(ec);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<ServerState> state_;
  asio::streambuf in_;
  std::string out_;
  char drain_[4096];
  FaultSpec spec_;
  uint64_t bytes_ = 0;
  uint64_t seed_ = 0;
  uint64_t chunk_ = 0;
  absl::Duration gap_;
  std::string probe_id_;
  bool keep_alive_ = true;
  uint64_t sent_ = 0;
  int reset_polls_ = 0;
  uint64_t pad_line_left_ = 0;
  uint64_t pad_lines_left_ = 0;
  uint64_t pad_index_ = 0;
  std::string trickle_line_;
  size_t trickle_pos_ = 0;
};

class FaultServerImpl : public FaultServer {
 public:
  explicit FaultServerImpl(const FaultServerOptions& options)
      : options_(options),
        state_(std::make_shared<ServerState>()),
        io_(std::make_unique<asio::io_context>()),
        acceptor_(std::make_unique<tcp::acceptor>(*io_)) {
    state_->default_spec = options.default_spec;
  }

  ~FaultServerImpl() override { Shutdown(); }

  absl::Status Init() {
    boost::system::error_code ec;
    const asio::ip::address addr = asio::ip::make_address(options_.address, ec);
    if (ec || !addr.is_loopback()) {
      return absl::InvalidArgumentError(
          absl::StrCat("address: ", options_.address, " is not loopback"));
    }
    const tcp::endpoint ep(addr, static_cast<uint16_t>(options_.port));
    acceptor_->open(ep.protocol(), ec);
    if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(ep, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "fault server listen on ", options_.address, ": ", ec.message()));
    }
    port_ = acceptor_->local_endpoint().port();
    host_ = addr.is_v6() ? absl::StrCat("[", options_.address, "]")
                         : options_.address;
    Accept();
    for (int i = 0; i < std::max(1, options_.threads); ++i) {
      threads_.emplace_back([this] { io_->run(); });
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string BaseUrl(const FaultSpec& spec) const override {
    return absl::StrCat("http://", host_, ":", port_, spec.ToPath());
  }
  int64_t connections_accepted() const override {
    return state_->accepted.load();
  }
  int64_t requests() const override { return state_->requests.load(); }
  std::string last_request_headers() const override {
    return state_->last_headers();
  }

  void Shutdown() override {
    if (stopped_.exchange(true)) return;
    io_->stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    // Destroying the context destroys every pending handler, hence every
    // session and its socket.
    acceptor_.reset();
    io_.reset();
  }

 private:
  void Accept() {
    acceptor_->async_accept(
        asio::make_strand(*io_),
        [this](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (!ec) {
            state_->accepted.fetch_add(1);
            socket.set_option(tcp::no_delay(true), ec);
            std::make_shared<Session>(std::move(socket), state_)->Start();
          }
          Accept();
        });
  }

  FaultServerOptions options_;
  std::shared_ptr<ServerState> state_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  int port_ = 0;
  std::string host_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FaultServer>> FaultServer::Create(
    const FaultServerOptions& options) {
  auto server = std::make_unique<FaultServerImpl>(options);
  absl::Status status = server->Init();
  if (!status.ok()) return status;
  return std::unique_ptr<FaultServer>(std::move(server));
}

}  // namespace testing
}  // namespace fleetcanary
