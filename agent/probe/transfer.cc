// Transfer state and the libcurl callbacks that fill it (see transfer.h).
#include "agent/probe/transfer.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "agent/probe/multi_loop.h"

namespace fleetcanary {
namespace probe_internal {
namespace {

// Response bodies of non-2xx answers are not verified; read at most this much.
constexpr uint64_t kErrorBodyCap = 64 * 1024;

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

Limits ResolveLimits(const v1::ProbeLimits& l) {
  Limits out;
  if (l.has_timeout() && FromProto(l.timeout()) > absl::ZeroDuration()) {
    out.timeout = FromProto(l.timeout());
  }
  if (l.has_stall_limit() &&
      FromProto(l.stall_limit()) > absl::ZeroDuration()) {
    out.stall = FromProto(l.stall_limit());
  }
  if (l.has_connect_timeout() &&
      FromProto(l.connect_timeout()) > absl::ZeroDuration()) {
    out.connect_timeout = FromProto(l.connect_timeout());
  }
  if (l.max_body_bytes() > 0) out.max_body = l.max_body_bytes();
  if (l.max_header_bytes() > 0) out.max_header = l.max_header_bytes();
  return out;
}

namespace {

// --- libcurl callbacks (run on the loop thread) ---------------------------

int PrereqCallback(void* clientp, char*, char*, int, int) {
  auto* t = static_cast<Transfer*>(clientp);
  if (!t->connected) t->newly_connected->push_back(t->id);
  t->connected = true;
  t->last_activity = t->clock->MonotonicNow();
  t->request_sent = t->last_activity;
  return CURL_PREREQFUNC_OK;
}

curl_socket_t OpenSocketCallback(void* clientp, curlsocktype,
                                 curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(clientp);
  if (t->guard != nullptr) {
    // Before the socket exists: a refused address is never connected to.
    const absl::Status allowed = t->guard->CheckAddress(
        &address->addr, static_cast<socklen_t>(address->addrlen));
    if (!allowed.ok()) {
      if (t->guard_refusal.empty()) {
        t->guard_refusal = std::string(allowed.message());
        if (!absl::StartsWith(t->guard_refusal, "target guard")) {
          t->guard_refusal = absl::StrCat("target guard: ", t->guard_refusal);
        }
      }
      return CURL_SOCKET_BAD;
    }
    t->guard_allowed_any = true;
  }
  const int fd = socket(address->family, address->socktype | SOCK_CLOEXEC,
                        address->protocol);
  t->last_fd = fd;
  if (fd < 0) {
    const int e = errno;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
      t->Abort(LocalAbort::kAgentFault,
               absl::StrCat("cannot open a socket: ", std::strerror(e)));
    }
    return CURL_SOCKET_BAD;
  }
  if (t->loop != nullptr) t->loop->OnSocketOpened(fd);
  if (!t->request.transport.keep_alive()) {
    // Fresh connection, never shared (FORBID_REUSE): its bytes are ours.
    (*t->socket_owner)[fd] = t->id;
    t->owned_fds.push_back(fd);
  }
  return fd;
}

bool HeaderIs(absl::string_view name, absl::string_view want) {
  return absl::EqualsIgnoreCase(name, want);
}

// Called once the final (non-1xx) header block is complete. Returns false to
// abort the transfer.
bool OnHeadersComplete(Transfer* t) {
  t->headers_complete = true;
  const ProbeRequest& r = t->request;
  const std::optional<uint64_t> declared =
      t->declared_canary_bytes ? t->declared_canary_bytes : t->content_length;
  if (t->status < 200 || t->status > 299) {
    t->expected = declared.value_or(0);
    return true;
  }
  t->verify = true;
  t->expected = declared.value_or(r.size_bytes);
  if (t->expected != r.size_bytes) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat("response declares ", t->expected,
                          " bytes, requested ", r.size_bytes));
    return false;
  }
  if (t->declared_seed && *t->declared_seed != r.seed) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat("response seed ", *t->declared_seed, ", requested ",
                          r.seed));
    return false;
  }
  if (!r.probe_id.empty()) {
    if (!t->probe_id_back) {
      t->Abort(LocalAbort::kIntegrity, "x-canary-probe-id missing");
      return false;
    }
    if (*t->probe_id_back != r.probe_id) {
      t->Abort(LocalAbort::kIntegrity,
               absl::StrCat("x-canary-probe-id is \"", *t->probe_id_back,
                            "\", sent \"", r.probe_id, "\""));
      return false;
    }
  }
  if (t->expected > t->limits.max_body) {
    t->Abort(
        LocalAbort::kBodyLimit,
        absl::StrCat("declared body of ", t->expected,
                     " bytes exceeds max_body_bytes ", t->limits.max_body));
    return false;
  }
  t->verifier.emplace(r.seed, t->expected);
  return true;
}

// "HTTP/1.1 200 OK" or "HTTP/2 200 ": the status and, for the first one,
// the time to first byte.
void OnStatusLine(Transfer* t, absl::string_view line, absl::Duration now) {
  t->status_line_seen = true;
  if (!t->ttfb) t->ttfb = now;
  const size_t sp = line.find(' ');
  int status = 0;
  if (sp != absl::string_view::npos &&
      absl::SimpleAtoi(line.substr(sp + 1, 3), &status)) {
    t->status = status;
  }
}

// One "name: value" line; the canary's headers are kept. Returns false to
// abort the transfer (malformed x-canary-bytes).
bool OnHeaderField(Transfer* t, absl::string_view line) {
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return true;
  const absl::string_view name = line.substr(0, colon);
  const absl::string_view value =
      absl::StripAsciiWhitespace(line.substr(colon + 1));
  uint64_t number = 0;
  if (HeaderIs(name, "x-canary-bytes")) {
    if (!absl::SimpleAtoi(value, &number)) {
      t->Abort(LocalAbort::kIntegrity,
               absl::StrCat("malformed x-canary-bytes: ", value));
      return false;
    }
    t->declared_canary_bytes = number;
  } else if (HeaderIs(name, "content-length")) {
    if (absl::SimpleAtoi(value, &number)) t->content_length = number;
  } else if (HeaderIs(name, "x-canary-seed")) {
    if (absl::SimpleAtoi(value, &number)) t->declared_seed = number;
  } else if (HeaderIs(name, "x-canary-probe-id")) {
    t->probe_id_back = std::string(value);
  } else if (HeaderIs(name, "x-amzn-requestid")) {
    t->request_id = std::string(value);
  } else if (HeaderIs(name, "x-amzn-trace-id")) {
    t->trace_id = std::string(value);
  }
  return true;
}

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nitems;
  const absl::Duration now = t->clock->MonotonicNow();
  t->last_activity = now;
  t->header_bytes += n;
  if (t->header_bytes > t->limits.max_header) {
    t->Abort(LocalAbort::kHeaderLimit,
             absl::StrCat("response headers exceed max_header_bytes ",
                          t->limits.max_header));
    return 0;
  }
  absl::string_view line(data, n);
  absl::ConsumeSuffix(&line, "\n");
  absl::ConsumeSuffix(&line, "\r");
  if (!t->status_line_seen) {
    if (absl::StartsWith(line, "HTTP/")) OnStatusLine(t, line, now);
    return n;
  }
  if (line.empty()) {
    if (t->status >= 100 && t->status < 200) {
      // Interim response; the real one follows.
      t->status_line_seen = false;
      return n;
    }
    return OnHeadersComplete(t) ? n : 0;
  }
  return OnHeaderField(t, line) ? n : 0;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nmemb;
  const absl::Duration now = t->clock->MonotonicNow();
  t->last_activity = now;
  if (t->chunks == 0) {
    t->first_body = now;
  } else {
    t->max_gap = std::max(t->max_gap, now - t->last_body);
  }
  t->last_body = now;
  ++t->chunks;
  t->received += n;
  if (!t->verify) {
    if (t->received > kErrorBodyCap) {
      t->Abort(LocalAbort::kBodyLimit,
               absl::StrCat("error body longer than ", kErrorBodyCap,
                            " bytes not read"));
      return 0;
    }
    return n;
  }
  if (t->received > t->limits.max_body) {
    t->Abort(LocalAbort::kBodyLimit,
             absl::StrCat("body exceeds max_body_bytes ", t->limits.max_body));
    return 0;
  }
  t->verifier->Update(absl::string_view(data, n));
  const PayloadVerifier::Result r = t->verifier->result();
  if (r == PayloadVerifier::kWrongByte || r == PayloadVerifier::kExtra) {
    t->Abort(LocalAbort::kIntegrity,
             absl::StrCat(PayloadResultName(r), " at offset ",
                          t->verifier->first_bad_offset()));
    return 0;
  }
  return n;
}

}  // namespace

void SetTransferCallbackFunctions(CURL* easy) {
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, &PrereqCallback);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &OpenSocketCallback);
}

void AttachTransferCallbacks(CURL* easy, Transfer* t) {
  curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, t);
}

}  // namespace probe_internal
}  // namespace fleetcanary
