// Socket-level HTTP clients for the emulator's tests: libcurl for ordinary
// requests, and a raw TCP client that records every byte as it arrives (with
// timing), whether the connection ended with FIN or RST, and parses the
// response framing (status, headers, each chunk's size, final chunk).
//
// Thread-safety: functions are thread-safe; CurlSession is not.
#ifndef FLEETCANARY_TESTS_EMULATOR_TESTING_HTTP_TEST_CLIENT_H_
#define FLEETCANARY_TESTS_EMULATOR_TESTING_HTTP_TEST_CLIENT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace testing {

struct CurlOptions {
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;  // "Name: value".
  // A safety bound, far beyond a slow machine's need.
  absl::Duration timeout = absl::Seconds(60);
  std::string ca_file;
  bool insecure = false;
};

inline CurlOptions WithHeaders(std::vector<std::string> headers) {
  CurlOptions o;
  o.headers = std::move(headers);
  return o;
}
inline CurlOptions WithMethod(std::string method, std::string body = "") {
  CurlOptions o;
  o.method = std::move(method);
  o.body = std::move(body);
  return o;
}
inline CurlOptions WithTimeout(absl::Duration timeout) {
  CurlOptions o;
  o.timeout = timeout;
  return o;
}
inline CurlOptions WithCaFile(std::string ca_file) {
  CurlOptions o;
  o.ca_file = std::move(ca_file);
  return o;
}

struct CurlResult {
  int curl_code = 0;  // CURLcode.
  std::string error;
  long status = 0;
  // Lower-case names, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  long new_connections = 0;  // CURLINFO_NUM_CONNECTS.
  absl::Duration total;
  std::string Header(absl::string_view name) const;
};

// One libcurl easy handle reused across requests (keep-alive).
class CurlSession {
 public:
  CurlSession();
  ~CurlSession();
  CurlSession(const CurlSession&) = delete;
  CurlSession& operator=(const CurlSession&) = delete;
  CurlResult Fetch(const std::string& url, const CurlOptions& options = {});

 private:
  void* handle_;
};

// A one-off request on a fresh handle.
CurlResult CurlFetch(const std::string& url, const CurlOptions& options = {});

struct Arrival {
  absl::Duration at;  // Since the request was sent.
  size_t bytes;
};

struct RawResult {
  bool connected = false;
  std::string data;  // Every byte received.
  std::vector<Arrival> arrivals;
  bool eof = false;        // Peer closed cleanly (FIN).
  bool reset = false;      // ECONNRESET.
  bool timed_out = false;  // Deadline hit with the connection open.
};

struct RawOptions {
  // A safety bound, far beyond a slow machine's need (a test that wants
  // the connection held open sets its own).
  absl::Duration timeout = absl::Seconds(60);
  // shutdown(SHUT_WR) after sending the request.
  bool half_close = false;
  // Stop reading once one complete HTTP response was received.
  bool stop_after_response = false;
};

// A blocking TCP socket (close-on-exec) connected to 127.0.0.1:`port`, or
// -1 when the connection failed. The caller closes it.
int ConnectLoopback(int port);

// Connects to 127.0.0.1:port, sends `request`, reads until close, reset or
// the timeout.
RawResult RawExchange(int port, absl::string_view request,
                      const RawOptions& options = {});

struct ParsedResponse {
  bool header_complete = false;
  int status = 0;
  std::vector<std::pair<std::string, std::string>>
      headers;  // Lower-case names.
  bool chunked = false;
  std::vector<uint64_t> chunk_sizes;  // Data chunks, in order.
  bool final_chunk = false;           // "0\r\n\r\n" seen.
  bool complete = false;              // Whole message received.
  std::string body;                   // De-chunked.
  size_t message_bytes = 0;           // Bytes of `raw` used by this message.
  std::string Header(absl::string_view name) const;
};

// Parses the first HTTP/1.1 response in `raw` (which may be incomplete).
ParsedResponse ParseResponse(absl::string_view raw);

// Port of "http://127.0.0.1:PORT/..." (0 if none).
int PortOf(absl::string_view url);

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_EMULATOR_TESTING_HTTP_TEST_CLIENT_H_
