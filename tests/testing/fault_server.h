// A hostile/faulty HTTP/1.1 server that speaks the canary function contract
// (docs/function-contract.md): GET
// <base>/canary?bytes=N&chunk=C&gap_ms=G&seed=S answers N bytes of the seeded
// payload (common/payload), echoes x-canary-probe-id and declares
// x-canary-bytes / x-canary-seed, with keep-alive.
//
// What goes wrong is chosen per request by the base URL: BaseUrl(spec) encodes
// a FaultSpec in the path ("/f/framing=chunked,reset_at=100/"), so one server
// serves every fault at once and a test just picks the URL. Requests without
// the "/f/" prefix use FaultServerOptions::default_spec.
//
// Faults: Content-Length, chunked or close-delimited framing; any status; a
// first-byte delay; stall / clean close (with or without the final chunk) /
// RST (SO_LINGER 0, after the first k bytes were acknowledged) after k body
// bytes; a wrong byte at k; an endless body; huge headers (many lines or one
// giant line); accept-and-never-answer; a trickle of one byte per interval
// (body, or one header line).
//
// Boost.Asio on `threads` threads; loopback only; port 0 by default (read it
// back with port()). Shared test infrastructure
// (fleetcanary::testing_fault_server): the one misbehaving HTTP server of the
// tests. With default_spec.silent it also stands in for a listener that
// never answers, and connections_accepted() tells whether anything connected
// (target-guard tests).
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_TESTS_TESTING_FAULT_SERVER_H_
#define FLEETCANARY_TESTS_TESTING_FAULT_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace testing {

struct FaultSpec {
  enum class Framing {
    kContentLength,  // BUFFERED-style.
    kChunked,        // RESPONSE_STREAM-style.
    kClose,          // No length: the body ends when the server closes.
  };
  Framing framing = Framing::kContentLength;
  int status = 200;
  // Wait before the first response byte (status line).
  absl::Duration first_byte_delay = absl::ZeroDuration();
  // Body-byte offsets at which something happens (-1 = never).
  int64_t stall_at = -1;    // Stop sending, keep the connection open.
  int64_t close_at = -1;    // FIN (chunked: without the terminating chunk).
  int64_t end_at = -1;      // Chunked: send the terminating chunk early.
  int64_t reset_at = -1;    // RST once the k bytes sent were acknowledged.
  int64_t corrupt_at = -1;  // Flip the bits of the byte at this offset.
  // After the N requested bytes, keep sending payload forever.
  bool endless = false;
  // Extra header bytes: many ~1 KiB "x-pad-i" lines, or one giant line.
  uint64_t header_bytes = 0;
  uint64_t header_line_bytes = 0;
  // Read the request, never answer.
  bool silent = false;
  // Send the body one byte per interval (0 = off).
  absl::Duration trickle = absl::ZeroDuration();
  // Add a header line "x-trickle: ttt..." with this many value bytes, sent
  // one byte per header_trickle interval (the rest of the head at once).
  uint64_t header_trickle_bytes = 0;
  absl::Duration header_trickle = absl::Milliseconds(100);
  // x-canary-bytes: -2 = the real size, -1 = omitted, else this value.
  int64_t declare_bytes = -2;
  bool echo_probe_id = true;
  // Override the request's chunk=/gap_ms= (0 = take the request's).
  uint64_t chunk_bytes = 0;
  absl::Duration chunk_gap = absl::ZeroDuration();

  // "/f/<key=value,...>/" (only non-default keys), or "/" when all default.
  std::string ToPath() const;
  // Parses the "<key=value,...>" part. INVALID_ARGUMENT naming the key.
  static absl::StatusOr<FaultSpec> Parse(absl::string_view text);
};

struct FaultServerOptions {
  // Loopback address to bind ("127.0.0.1" or "::1").
  std::string address = "127.0.0.1";
  int port = 0;
  int threads = 1;
  FaultSpec default_spec;
};

class FaultServer {
 public:
  virtual ~FaultServer() = default;

  // Binds, listens and starts serving.
  static absl::StatusOr<std::unique_ptr<FaultServer>> Create(
      const FaultServerOptions& options);

  virtual int port() const = 0;
  // "http://127.0.0.1:<port>" + spec.ToPath(). The engine appends "canary?...".
  virtual std::string BaseUrl(const FaultSpec& spec) const = 0;
  std::string BaseUrl() const { return BaseUrl(FaultSpec()); }

  // Connections accepted and requests answered (or refused) so far.
  virtual int64_t connections_accepted() const = 0;
  virtual int64_t requests() const = 0;
  // Raw header block of the most recent request (for signing tests).
  virtual std::string last_request_headers() const = 0;

  // Closes the listener and every connection; joins the threads. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_FAULT_SERVER_H_
