// A small HTTP/1.1 server on Boost.Beast/Asio that executes *response plans*:
// a handler decides, synchronously and without I/O, what a response is
// (status, headers, a literal body or a canary payload, framing) and which
// wire faults to apply to it (delay before the first byte, chunk gaps, slow
// body, stall, clean close or TCP reset after k body bytes, a corrupted
// byte, bandwidth shaping); the server then carries the plan out exactly.
//
// One io_context, `io_threads` threads, one strand per connection. Every
// connection is bounded: request header size (`header_limit`, 431 beyond),
// body size (`body_limit`, 413 beyond), time to read a request including the
// idle wait before it (`read_timeout`), time for each write
// (`write_timeout`), TLS handshake time, and the number of open connections
// (`max_connections`; beyond it new connections are closed at once).
// Malformed requests get 400 and the connection is closed.
//
// Thread-safety: AddListener before Start; Start/Stop from one thread;
// stats() from any thread. Handlers run on io threads, concurrently.
#ifndef FLEETCANARY_EMULATOR_SERVER_HTTP_SERVER_H_
#define FLEETCANARY_EMULATOR_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace emulator {

struct HttpRequest {
  std::string method;
  std::string target;  // Path and query, as received.
  std::vector<std::pair<std::string, std::string>> headers;  // In order.
  std::string body;
  bool keep_alive = true;
  // First value of header `name` (case-insensitive), or "".
  absl::string_view Header(absl::string_view name) const;
  // Path without the query; the query without "?".
  absl::string_view Path() const;
  absl::string_view Query() const;
};

// How a response ended, reported once per planned response.
struct Completion {
  uint64_t body_bytes_sent = 0;
  // False when the peer went away, a write timed out or the server stopped
  // before the plan finished.
  bool finished = false;
};

struct ResponsePlan {
  int status = 200;
  std::string reason;  // Empty: the standard reason phrase.
  std::vector<std::pair<std::string, std::string>> headers;
  enum class Framing { kContentLength, kChunked };
  Framing framing = Framing::kContentLength;
  // The body: `body`, or when `payload` is set the canary payload stream
  // (common/payload) for `payload_seed`, `payload_size` bytes.
  std::string body;
  bool payload = false;
  uint64_t payload_seed = 0;
  uint64_t payload_size = 0;
  // kChunked: bytes per chunk (0 = 64 KiB) and the pause between chunks.
  uint64_t chunk_bytes = 0;
  absl::Duration chunk_gap = absl::ZeroDuration();
  // Faults.
  absl::Duration first_byte_delay = absl::ZeroDuration();
  enum class Cut { kNone, kClose, kReset };
  Cut cut = Cut::kNone;  // After `cut_after` body bytes.
  uint64_t cut_after = 0;
  bool final_chunk_on_cut =
      false;  // kClose + kChunked: end the message cleanly.
  std::optional<uint64_t> stall_after;  // Pause after this many body bytes...
  absl::Duration stall_for = absl::InfiniteDuration();  // ...this long.
  uint64_t bytes_per_second = 0;  // Slow body; 0 = full speed.
  int64_t corrupt_offset = -1;    // Body byte to flip (XOR 0xFF).
  // Bandwidth shaping: beyond `shape_after` body bytes, at most
  // `shape_bytes_per_second` (0 = off).
  uint64_t shape_after = 0;
  uint64_t shape_bytes_per_second = 0;
  bool close_connection = false;
  // Called exactly once, on an io thread, when the response ended.
  std::function<void(const Completion&)> on_done;

  uint64_t body_size() const { return payload ? payload_size : body.size(); }
};

using RequestHandler = std::function<void(const HttpRequest&, ResponsePlan*)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int io_threads = 1;
  size_t max_connections = 20000;
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
  // Longest stall of a plan whose stall_for is infinite; the connection is
  // also released as soon as the peer closes it.
  absl::Duration max_stall = absl::Minutes(10);
  size_t header_limit = 16 * 1024;
  size_t body_limit = 1024 * 1024;
  // Bound of the shared cache of canary payload blocks (64 KiB each) that
  // payload bodies are written from; below one block, every body is
  // generated per response. Bodies are byte-identical either way.
  size_t payload_cache_bytes = 16 * 1024 * 1024;
  // PEM files; both set = TLS listeners available.
  std::string tls_cert_file;
  std::string tls_key_file;
};

struct HttpServerStats {
  int64_t open_connections = 0;
  int64_t accepted_connections = 0;
  int64_t rejected_connections = 0;  // Over max_connections.
  int64_t requests = 0;
  int64_t bad_requests = 0;  // 400/413/431 sent.
  int64_t timeouts = 0;      // Read/write/handshake timeouts.
  int64_t accept_errors = 0;
};

class HttpServer {
 public:
  virtual ~HttpServer() = default;

  // Fails with INVALID_ARGUMENT on bad options (TLS files unreadable, ...).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(
      const HttpServerOptions& options);

  // Binds host:port (0 = ephemeral) and returns the bound port. `tls`
  // requires the TLS files. REQUIRES: before Start().
  virtual absl::StatusOr<int> AddListener(int port, bool tls,
                                          RequestHandler handler) = 0;

  // Starts accepting on every listener.
  virtual absl::Status Start() = 0;

  // Closes listeners and every connection, runs outstanding on_done
  // callbacks (finished=false) and joins the io threads. Idempotent.
  virtual void Stop() = 0;

  virtual HttpServerStats stats() const = 0;
};

// "OK", "Not Found", ... for a status code.
const char* ReasonPhrase(int status);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SERVER_HTTP_SERVER_H_
