// One probe invocation in flight inside the probe engine (internal to
// agent/probe/; the public contract is probe_engine.h).
//
// A Transfer holds the request, its resolved limits, and everything observed
// about the response while libcurl runs it: connection progress, status and
// canary headers, body bytes verified as they stream, timings, and why the
// engine ended it early (if it did). The engine owns each Transfer; the
// callbacks installed by AttachTransferCallbacks update it and nothing else
// (besides the engine-owned lists it points to).
//
// Thread-safety: a Transfer and its callbacks live on the engine's loop
// thread only.
#ifndef FLEETCANARY_AGENT_PROBE_TRANSFER_H_
#define FLEETCANARY_AGENT_PROBE_TRANSFER_H_

#include <curl/curl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "agent/probe/classify.h"
#include "agent/probe/probe_engine.h"
#include "common/net/target_guard.h"
#include "common/payload/payload.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace probe_internal {

class MultiLoop;

// A probe's limits, with the defaults for every field the request leaves 0.
struct Limits {
  absl::Duration timeout = absl::Seconds(30);
  absl::Duration stall = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(5);
  uint64_t max_body = 256ull << 20;
  uint64_t max_header = 64ull << 10;
};

// The request's limits; unset or non-positive fields keep the defaults.
Limits ResolveLimits(const v1::ProbeLimits& l);

// One invocation in flight. Owned by the engine.
struct Transfer {
  uint64_t id = 0;
  Clock* clock = nullptr;
  // Where the connect hook reports this transfer so its stall check is armed.
  std::vector<uint64_t>* newly_connected = nullptr;
  // Socket -> the transfer that alone uses it (fresh connections only), so
  // the loop can count every byte that arrives as activity.
  absl::flat_hash_map<int, uint64_t>* socket_owner = nullptr;
  // Null = every address allowed.
  const TargetGuard* guard = nullptr;
  // Told of every socket opened for this transfer (null in tests).
  MultiLoop* loop = nullptr;
  ProbeRequest request;
  ProbeEngine::DoneCallback done;
  Limits limits;
  // Empty until the transfer ends.
  v1::Outcome outcome;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  // The easy handle must be reset before its next transfer (see
  // ConfigureEasy).
  bool easy_needs_reset = false;
  char error[CURL_ERROR_SIZE] = {0};
  bool https = false;

  // When the engine admitted the probe (the outcome's start_time).
  absl::Time start_time;
  absl::Duration start;
  absl::Duration deadline;
  // Last time a byte arrived (or the connection was established).
  absl::Duration last_activity;
  bool connected = false;  // PREREQFUNCTION ran.
  // When PREREQFUNCTION last ran: the request was about to be written. On the
  // engine's clock, as every other offset, so that headers_received minus
  // request_sent never comes out shorter than the server's real wait.
  std::optional<absl::Duration> request_sent;
  // TCP connected although the connection was not ready for the request yet
  // (e.g. aborted during the TLS handshake).
  bool tcp_connected = false;
  int last_fd = -1;  // Most recent socket opened for this transfer.
  // Sockets registered in `socket_owner` for this transfer.
  std::vector<int> owned_fds;
  // The first address the target guard refused; the transfer is AGENT_ERROR
  // unless the guard allowed another address of the host (which then decides
  // the outcome as usual).
  std::string guard_refusal;
  bool guard_allowed_any = false;

  // Response state.
  uint64_t header_bytes = 0;
  bool status_line_seen = false;
  bool headers_complete = false;
  int status = 0;
  std::optional<absl::Duration> ttfb;
  std::optional<uint64_t> declared_canary_bytes;
  std::optional<uint64_t> content_length;
  std::optional<uint64_t> declared_seed;
  std::optional<std::string> probe_id_back;
  std::string request_id;
  std::string trace_id;

  bool verify = false;
  std::optional<PayloadVerifier> verifier;
  uint64_t expected = 0;
  uint64_t received = 0;
  uint32_t chunks = 0;
  absl::Duration first_body;
  absl::Duration last_body;
  absl::Duration max_gap;

  LocalAbort abort = LocalAbort::kNone;
  std::string abort_detail;

  // Records why the engine ends the transfer; the first reason wins.
  void Abort(LocalAbort why, std::string detail) {
    if (abort != LocalAbort::kNone) return;
    abort = why;
    abort_detail = std::move(detail);
  }
};

// Installs the callback functions below on `easy` (once per handle; they do
// nothing useful until AttachTransferCallbacks points them at a transfer).
void SetTransferCallbackFunctions(CURL* easy);

// Points `easy` (set up with SetTransferCallbackFunctions) at `t`:
// CURLOPT_PRIVATE (so a finished handle leads back to its transfer), the
// error buffer, and the data of the callbacks that fill `t`:
//   - open-socket: the target guard's address check before the socket exists
//     (a refusal is remembered in guard_refusal), socket ownership for fresh
//     connections, AGENT_ERROR when out of descriptors or memory;
//   - prerequest: the connection is ready (connected, stall check armed);
//   - header: max_header_bytes, status line and TTFB, canary headers; at the
//     end of the final header block the response is checked against the
//     request (declared length, seed, probe id, max_body_bytes) and body
//     verification starts for a 2xx;
//   - write: body timings and gaps, every byte verified (2xx) or at most
//     64 KiB read (other statuses), max_body_bytes.
// A callback that aborts records the reason with Transfer::Abort and makes
// libcurl end the transfer.
void AttachTransferCallbacks(CURL* easy, Transfer* t);

}  // namespace probe_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_TRANSFER_H_
