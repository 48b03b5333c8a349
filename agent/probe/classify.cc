#include "agent/probe/classify.h"

#include <curl/curl.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fleetcanary {
namespace {

using v1::OutcomeClass;
using v1::TransferEnd;

// What a libcurl result code says about who failed and where.
enum class CodeKind {
  kOk,
  kLocal,  // Our configuration or environment.
  kDns,
  kConnect,
  kTls,
  kTimeout,     // libcurl's own connect timeout.
  kPeerClosed,  // FIN before the framing ended.
  kPeerReset,   // RST / aborted stream.
  kProtocol,    // The peer sent something that is not valid HTTP.
};

bool IsLocalErrno(int e) {
  return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS ||
         e == EADDRNOTAVAIL || e == EACCES || e == EPERM || e == EAFNOSUPPORT;
}

bool IsResetErrno(int e) {
  return e == ECONNRESET || e == EPIPE || e == ECONNABORTED || e == ETIMEDOUT ||
         e == EHOSTUNREACH || e == ENETUNREACH;
}

CodeKind KindOf(const ProbeFacts& f) {
  switch (static_cast<CURLcode>(f.curl_code)) {
    case CURLE_OK:
      return CodeKind::kOk;
    case CURLE_COULDNT_RESOLVE_HOST:
      return CodeKind::kDns;
    case CURLE_COULDNT_CONNECT:
      return IsLocalErrno(f.os_errno) ? CodeKind::kLocal : CodeKind::kConnect;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_SHUTDOWN_FAILED:
      return CodeKind::kTls;
    case CURLE_OPERATION_TIMEDOUT:
      return CodeKind::kTimeout;
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
      return CodeKind::kPeerClosed;
    case CURLE_HTTP2_STREAM:
      return CodeKind::kPeerReset;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      if (IsResetErrno(f.os_errno)) return CodeKind::kPeerReset;
      if (IsLocalErrno(f.os_errno)) return CodeKind::kLocal;
      // No socket error: either the peer closed mid-framing or libcurl
      // refused what it read (bad chunk framing, oversized header line).
      if (absl::StrContains(f.curl_error, "closed")) {
        return CodeKind::kPeerClosed;
      }
      return CodeKind::kProtocol;
    case CURLE_OUT_OF_MEMORY:
      // libcurl 7.88 reports a response header line over its 100 KB cap as
      // "out of memory" (sometimes with "Rejected N bytes header", sometimes
      // with no text): once connected, that is the peer's doing. A real
      // allocation failure of ours mid-transfer is far less likely.
      if (f.connected || absl::StrContains(f.curl_error, "header")) {
        return CodeKind::kProtocol;
      }
      return CodeKind::kLocal;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP3:
    case CURLE_UNSUPPORTED_PROTOCOL:
      // An unsupported protocol in a *response* (e.g. HTTP/0.9 refused) is the
      // peer's fault once we are connected; before that it is our URL.
      if (f.curl_code == CURLE_UNSUPPORTED_PROTOCOL && !f.connected) {
        return CodeKind::kLocal;
      }
      return CodeKind::kProtocol;
    default:
      // Init failures, malformed URLs, bad CA bundle paths, unknown options,
      // aborts by our own callbacks without a recorded reason, and anything
      // libcurl adds later: ours until proven otherwise.
      return CodeKind::kLocal;
  }
}

std::string CurlDetail(const ProbeFacts& f) {
  std::string detail =
      absl::StrCat("curl ", f.curl_code, " (",
                   curl_easy_strerror(static_cast<CURLcode>(f.curl_code)), ")");
  if (!f.curl_error.empty()) absl::StrAppend(&detail, ": ", f.curl_error);
  if (f.os_errno != 0) absl::StrAppend(&detail, " [errno ", f.os_errno, "]");
  return detail;
}

// The class for a transfer that never got past `phase` of connecting.
OutcomeClass UnfinishedPhaseClass(const ProbeFacts& f) {
  if (!f.resolved) return v1::DNS_ERROR;
  if (!f.connected) return v1::CONNECT_ERROR;
  if (f.https && !f.tls_done) return v1::TLS_ERROR;
  return v1::TIMEOUT;
}

TransferEnd WireEnd(const ProbeFacts& f, CodeKind kind) {
  switch (f.local_abort) {
    case LocalAbort::kStallLimit:
      return v1::STALL_LIMIT;
    case LocalAbort::kDeadline:
      return f.connected ? v1::DEADLINE : v1::NOT_CONNECTED;
    case LocalAbort::kAgentFault:
      return f.connected ? v1::LOCAL_ABORT : v1::NOT_CONNECTED;
    case LocalAbort::kHeaderLimit:
    case LocalAbort::kBodyLimit:
    case LocalAbort::kIntegrity:
      return v1::LOCAL_ABORT;
    case LocalAbort::kNone:
      break;
  }
  switch (kind) {
    case CodeKind::kOk:
      return v1::COMPLETE;
    case CodeKind::kPeerClosed:
      return f.connected ? v1::CLEAN_CLOSE : v1::NOT_CONNECTED;
    case CodeKind::kPeerReset:
      return f.connected ? v1::PEER_RESET : v1::NOT_CONNECTED;
    case CodeKind::kProtocol:
      return v1::LOCAL_ABORT;  // libcurl gave up on what it read.
    case CodeKind::kTimeout:
      return f.connected && (!f.https || f.tls_done) ? v1::DEADLINE
                                                     : v1::NOT_CONNECTED;
    case CodeKind::kTls:
      // A TLS failure on an established TCP connection ends with our abort.
      return f.connected ? v1::LOCAL_ABORT : v1::NOT_CONNECTED;
    case CodeKind::kLocal:
      return f.connected ? v1::LOCAL_ABORT : v1::NOT_CONNECTED;
    case CodeKind::kDns:
    case CodeKind::kConnect:
      return v1::NOT_CONNECTED;
  }
  return v1::LOCAL_ABORT;
}

Classification Make(OutcomeClass c, TransferEnd end, std::string detail) {
  Classification out;
  out.outcome_class = c;
  out.transfer_end = end;
  out.detail = std::move(detail);
  return out;
}

// What every stage of the precedence reads: the facts and what follows from
// them once (libcurl's verdict, how the transfer ended, the local detail).
struct Stage {
  const ProbeFacts& f;
  bool curl_decides;  // No local abort: libcurl's result code decides.
  CodeKind kind;      // KindOf(f) when curl_decides, else kOk.
  TransferEnd end;
  std::string local;  // Detail of a local abort.
};

// A stage returns the classification when its rule matches, nullopt to let
// the next stage decide.
using Verdict = std::optional<Classification>;

// 1. Our own faults.
Verdict OwnFault(const Stage& s) {
  if (s.f.local_abort == LocalAbort::kAgentFault) {
    return Make(v1::AGENT_ERROR, s.end, s.local);
  }
  if (s.curl_decides && s.kind == CodeKind::kLocal) {
    return Make(v1::AGENT_ERROR, s.end, CurlDetail(s.f));
  }
  return std::nullopt;
}

// 2. A complete non-2xx response is classified by its status.
Verdict ByStatus(const Stage& s) {
  const ProbeFacts& f = s.f;
  if (!f.headers_complete || (f.status >= 200 && f.status <= 299)) {
    return std::nullopt;
  }
  const std::string detail = absl::StrCat("status ", f.status);
  if (f.status == 429) return Make(v1::THROTTLED, s.end, detail);
  if (f.status >= 500 && f.status <= 599) {
    return Make(v1::HTTP_5XX, s.end, detail);
  }
  if (f.status >= 400 && f.status <= 499) {
    return Make(v1::HTTP_4XX, s.end, detail);
  }
  // 1xx/3xx (a redirect: Function URLs never send one) is a status the
  // endpoint chose, not wrong bytes: counted with the non-5xx statuses,
  // HTTP_4XX, and named in the detail (docs/hardening.md).
  return Make(
      v1::HTTP_4XX, s.end,
      absl::StrCat("unexpected status ", f.status,
                   f.status >= 300 && f.status <= 399 ? " (redirect)" : ""));
}

// 3. Wrong bytes or a response that breaks the contract.
Verdict ContractBroken(const Stage& s) {
  const ProbeFacts& f = s.f;
  if (f.local_abort == LocalAbort::kIntegrity ||
      f.local_abort == LocalAbort::kHeaderLimit ||
      f.local_abort == LocalAbort::kBodyLimit) {
    return Make(v1::INTEGRITY, s.end, s.local);
  }
  if (f.payload == PayloadVerifier::kWrongByte ||
      f.payload == PayloadVerifier::kExtra) {
    return Make(v1::INTEGRITY, s.end,
                absl::StrCat(PayloadResultName(f.payload), " at offset ",
                             f.first_bad_offset));
  }
  if (s.curl_decides && s.kind == CodeKind::kProtocol) {
    return Make(v1::INTEGRITY, s.end, CurlDetail(f));
  }
  return std::nullopt;
}

// 4. Limits enforced by the engine.
Verdict EngineLimit(const Stage& s) {
  const ProbeFacts& f = s.f;
  if (f.local_abort == LocalAbort::kStallLimit) {
    return Make(v1::STALLED, s.end, s.local);
  }
  if (f.local_abort == LocalAbort::kDeadline) {
    return Make(f.headers_complete ? v1::TIMEOUT : UnfinishedPhaseClass(f),
                s.end, s.local);
  }
  return std::nullopt;
}

// 5.-6. What libcurl saw on the wire: a failed phase, a close or a reset.
Verdict WireFailure(const Stage& s) {
  const ProbeFacts& f = s.f;
  switch (s.kind) {
    case CodeKind::kDns:
      return Make(v1::DNS_ERROR, s.end, CurlDetail(f));
    case CodeKind::kConnect:
      return Make(v1::CONNECT_ERROR, s.end, CurlDetail(f));
    case CodeKind::kTls:
      return Make(v1::TLS_ERROR, s.end, CurlDetail(f));
    case CodeKind::kTimeout:
      return Make(f.headers_complete ? v1::TIMEOUT : UnfinishedPhaseClass(f),
                  s.end, CurlDetail(f));
    case CodeKind::kPeerClosed:
      // A TLS peer that closes during the handshake failed TLS.
      if (f.https && !f.tls_done) {
        return Make(v1::TLS_ERROR, s.end, CurlDetail(f));
      }
      return Make(v1::TRUNCATED, s.end,
                  absl::StrCat("closed after ", f.received_bytes, " of ",
                               f.expected_bytes, " bytes; ", CurlDetail(f)));
    case CodeKind::kPeerReset:
      if (f.https && !f.tls_done) {
        return Make(v1::TLS_ERROR, s.end, CurlDetail(f));
      }
      return Make(v1::RESET, s.end,
                  absl::StrCat("reset after ", f.received_bytes, " of ",
                               f.expected_bytes, " bytes; ", CurlDetail(f)));
    case CodeKind::kOk:
      break;
    case CodeKind::kLocal:
    case CodeKind::kProtocol:
      break;  // Handled by OwnFault / ContractBroken.
  }
  return std::nullopt;
}

// 7. The framing completed: OK when everything declared arrived and
// verified; otherwise TRUNCATED (short) or INTEGRITY (no headers, or a body
// that did not verify).
Classification FramingComplete(const Stage& s) {
  const ProbeFacts& f = s.f;
  if (!f.headers_complete) {
    return Make(v1::INTEGRITY, s.end,
                "transfer ended without response headers");
  }
  if (f.payload == PayloadVerifier::kOk &&
      f.received_bytes == f.expected_bytes) {
    return Make(v1::OK, s.end, "");
  }
  if (f.payload == PayloadVerifier::kShort ||
      f.received_bytes < f.expected_bytes) {
    return Make(v1::TRUNCATED, s.end,
                absl::StrCat("body framing ended after ", f.received_bytes,
                             " of ", f.expected_bytes, " declared bytes"));
  }
  return Make(
      v1::INTEGRITY, s.end,
      absl::StrCat("unverified body (", PayloadResultName(f.payload), ")"));
}

}  // namespace

const char* LocalAbortName(LocalAbort abort) {
  switch (abort) {
    case LocalAbort::kNone:
      return "none";
    case LocalAbort::kAgentFault:
      return "agent_fault";
    case LocalAbort::kStallLimit:
      return "stall_limit";
    case LocalAbort::kDeadline:
      return "deadline";
    case LocalAbort::kHeaderLimit:
      return "header_limit";
    case LocalAbort::kBodyLimit:
      return "body_limit";
    case LocalAbort::kIntegrity:
      return "integrity";
  }
  return "unknown";
}

Classification Classify(const ProbeFacts& f) {
  const bool curl_decides = f.local_abort == LocalAbort::kNone;
  const CodeKind kind = curl_decides ? KindOf(f) : CodeKind::kOk;
  const Stage stage{
      f, curl_decides, kind, WireEnd(f, kind),
      f.local_detail.empty() ? LocalAbortName(f.local_abort) : f.local_detail};
  // The precedence of classify.h, first match wins.
  for (Verdict (*rule)(const Stage&) :
       {OwnFault, ByStatus, ContractBroken, EngineLimit, WireFailure}) {
    if (Verdict v = rule(stage)) return *std::move(v);
  }
  return FramingComplete(stage);
}

}  // namespace fleetcanary
