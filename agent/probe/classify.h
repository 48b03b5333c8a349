// Outcome classification: a pure function from what the probe engine observed
// about one invocation (ProbeFacts) to exactly one OutcomeClass, plus how the
// transfer ended on the wire (TransferEnd) and a human-readable detail.
//
// The engine only gathers facts (libcurl result code, OS errno, how far the
// connection got, status, framing and payload verification, and why it
// aborted, if it did); every decision lives here so it can be tested
// table-driven without sockets.
//
// Precedence, first match wins:
//   1. Our own faults (bad local config, out of descriptors, engine shutdown,
//      libcurl init/usage errors) -> AGENT_ERROR, never blamed on the platform.
//   2. Complete response headers with a non-2xx status -> THROTTLED (429),
//      HTTP_4XX, HTTP_5XX, or INTEGRITY for 1xx/3xx (a canary never redirects);
//      the body of an error response does not change its class.
//   3. Wrong bytes, more bytes than declared, oversized headers, a declared
//      length or seed other than requested, a malformed response -> INTEGRITY.
//   4. Stall limit -> STALLED; total deadline -> TIMEOUT once connected (or the
//      phase that never finished: DNS_ERROR, CONNECT_ERROR, TLS_ERROR).
//   5. Name resolution / TCP connect / TLS failures -> their own classes.
//   6. Peer closed cleanly (FIN, or a framed end) short of the declared length
//      -> TRUNCATED; peer reset/abort (RST, HTTP/2 stream reset) -> RESET.
//   7. Everything declared arrived and verified -> OK.
//
// Thread-safe (pure functions).
#ifndef FLEETCANARY_AGENT_PROBE_CLASSIFY_H_
#define FLEETCANARY_AGENT_PROBE_CLASSIFY_H_

#include <cstdint>
#include <string>

#include "common/payload/payload.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {

// Why the engine itself ended a transfer early, if it did.
enum class LocalAbort {
  kNone,
  kAgentFault,   // Our fault: bad request/config, init failure, shutdown.
  kStallLimit,   // No byte for longer than limits.stall_limit.
  kDeadline,     // limits.timeout passed.
  kHeaderLimit,  // Response headers exceeded limits.max_header_bytes.
  kBodyLimit,    // Body exceeded limits.max_body_bytes.
  kIntegrity,    // Wrong/extra body byte, or headers contradict the request.
};

const char* LocalAbortName(LocalAbort abort);

// Everything the engine observed about one invocation.
struct ProbeFacts {
  LocalAbort local_abort = LocalAbort::kNone;
  // Why, for local aborts (becomes the detail).
  std::string local_detail;

  // libcurl's CURLcode for the transfer (0 = CURLE_OK). Ignored when the
  // engine removed the transfer itself (stall, deadline, agent fault).
  int curl_code = 0;
  // CURLINFO_OS_ERRNO: errno of the last failed socket call (0 if none).
  int os_errno = 0;
  // libcurl's error buffer text (may be empty).
  std::string curl_error;

  bool https = false;
  bool resolved = false;   // Name resolution finished (or a reused connection).
  bool connected = false;  // TCP connected (or a reused connection).
  bool tls_done = false;   // TLS handshake finished (https only).
  // Complete response header block received (final, non-1xx).
  bool headers_complete = false;
  int status = 0;

  // Body bytes declared (x-canary-bytes, else Content-Length, else requested).
  uint64_t expected_bytes = 0;
  uint64_t received_bytes = 0;
  // Verification state after the transfer (Finish() called only when the
  // framing completed).
  PayloadVerifier::Result payload = PayloadVerifier::kPending;
  int64_t first_bad_offset = -1;
};

struct Classification {
  v1::OutcomeClass outcome_class = v1::OUTCOME_CLASS_UNSPECIFIED;
  v1::TransferEnd transfer_end = v1::TRANSFER_END_UNSPECIFIED;
  std::string detail;
};

// Maps facts to exactly one class (never UNSPECIFIED) and a TransferEnd
// (never UNSPECIFIED). See the precedence above.
Classification Classify(const ProbeFacts& facts);

}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_CLASSIFY_H_
