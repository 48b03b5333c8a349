#include "agent/probe/classify.h"

#include <curl/curl.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

// Facts of a 2xx response that delivered `received` of `expected` bytes.
ProbeFacts Response(int status, uint64_t expected, uint64_t received) {
  ProbeFacts f;
  f.resolved = true;
  f.connected = true;
  f.headers_complete = true;
  f.status = status;
  f.expected_bytes = expected;
  f.received_bytes = received;
  f.payload = PayloadVerifier::kPending;
  return f;
}

ProbeFacts Ok(uint64_t n) {
  ProbeFacts f = Response(200, n, n);
  f.payload = PayloadVerifier::kOk;
  return f;
}

struct Case {
  std::string name;
  ProbeFacts facts;
  v1::OutcomeClass want_class;
  v1::TransferEnd want_end;
};

std::vector<Case> Cases() {
  std::vector<Case> c;
  c.push_back({"ok", Ok(1024), v1::OK, v1::COMPLETE});
  c.push_back({"ok_empty_body", Ok(0), v1::OK, v1::COMPLETE});
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_PARTIAL_FILE;
    c.push_back({"clean_close_short", f, v1::TRUNCATED, v1::CLEAN_CLOSE});
  }
  {
    // Chunked body ended by its terminating chunk short of x-canary-bytes.
    ProbeFacts f = Response(200, 100, 40);
    f.payload = PayloadVerifier::kShort;
    c.push_back({"framed_end_short", f, v1::TRUNCATED, v1::COMPLETE});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_RECV_ERROR;
    f.os_errno = ECONNRESET;
    c.push_back({"rst_mid_body", f, v1::RESET, v1::PEER_RESET});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_HTTP2_STREAM;
    c.push_back({"h2_stream_reset", f, v1::RESET, v1::PEER_RESET});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_RECV_ERROR;
    f.curl_error = "transfer closed with outstanding read data remaining";
    c.push_back({"recv_error_closed", f, v1::TRUNCATED, v1::CLEAN_CLOSE});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_RECV_ERROR;
    f.curl_error = "Malformed encoding found in chunked-encoding";
    c.push_back({"bad_chunk_framing", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kStallLimit;
    c.push_back({"stall", f, v1::STALLED, v1::STALL_LIMIT});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.local_abort = LocalAbort::kStallLimit;
    c.push_back({"stall_before_headers", f, v1::STALLED, v1::STALL_LIMIT});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kDeadline;
    c.push_back({"deadline_mid_body", f, v1::TIMEOUT, v1::DEADLINE});
  }
  {
    ProbeFacts f;
    f.local_abort = LocalAbort::kDeadline;
    c.push_back({"deadline_resolving", f, v1::DNS_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.local_abort = LocalAbort::kDeadline;
    c.push_back(
        {"deadline_connecting", f, v1::CONNECT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.https = f.resolved = f.connected = true;
    f.local_abort = LocalAbort::kDeadline;
    c.push_back({"deadline_tls", f, v1::TLS_ERROR, v1::DEADLINE});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kIntegrity;
    f.payload = PayloadVerifier::kWrongByte;
    f.first_bad_offset = 39;
    c.push_back({"wrong_byte", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f = Response(200, 100, 101);
    f.payload = PayloadVerifier::kExtra;
    f.local_abort = LocalAbort::kIntegrity;
    c.push_back({"extra_bytes", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.local_abort = LocalAbort::kHeaderLimit;
    c.push_back({"header_limit", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.curl_code = CURLE_OUT_OF_MEMORY;
    f.curl_error = "Rejected 102401 bytes header (max is 102400)!";
    c.push_back({"giant_header_line", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.curl_code = CURLE_OUT_OF_MEMORY;
    c.push_back(
        {"giant_header_line_no_text", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.curl_code = CURLE_OUT_OF_MEMORY;
    c.push_back({"real_oom", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  c.push_back({"5xx", Response(502, 21, 21), v1::HTTP_5XX, v1::COMPLETE});
  c.push_back({"429", Response(429, 0, 0), v1::THROTTLED, v1::COMPLETE});
  c.push_back({"403", Response(403, 0, 0), v1::HTTP_4XX, v1::COMPLETE});
  c.push_back({"302", Response(302, 0, 0), v1::HTTP_4XX, v1::COMPLETE});
  {
    // The body of an error response does not change its class.
    ProbeFacts f = Response(503, 100, 10);
    f.curl_code = CURLE_RECV_ERROR;
    f.os_errno = ECONNRESET;
    c.push_back({"5xx_then_reset", f, v1::HTTP_5XX, v1::PEER_RESET});
  }
  {
    ProbeFacts f = Response(500, 0, 70000);
    f.local_abort = LocalAbort::kBodyLimit;
    c.push_back({"5xx_long_body", f, v1::HTTP_5XX, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.curl_code = CURLE_COULDNT_RESOLVE_HOST;
    c.push_back({"dns", f, v1::DNS_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.curl_code = CURLE_COULDNT_CONNECT;
    f.os_errno = ECONNREFUSED;
    c.push_back({"refused", f, v1::CONNECT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.curl_code = CURLE_COULDNT_CONNECT;
    f.os_errno = EMFILE;
    c.push_back({"out_of_fds", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.curl_code = CURLE_OPERATION_TIMEDOUT;
    c.push_back({"connect_timeout", f, v1::CONNECT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.https = f.resolved = f.connected = true;
    f.curl_code = CURLE_SSL_CONNECT_ERROR;
    c.push_back({"tls_handshake", f, v1::TLS_ERROR, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.https = f.resolved = f.connected = true;
    f.curl_code = CURLE_PEER_FAILED_VERIFICATION;
    c.push_back({"tls_verify", f, v1::TLS_ERROR, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.https = f.resolved = f.connected = true;
    f.curl_code = CURLE_RECV_ERROR;
    f.os_errno = ECONNRESET;
    c.push_back({"tls_peer_reset", f, v1::TLS_ERROR, v1::PEER_RESET});
  }
  {
    ProbeFacts f;
    f.https = true;
    f.curl_code = CURLE_SSL_CACERT_BADFILE;
    c.push_back({"bad_ca_file", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.curl_code = CURLE_URL_MALFORMAT;
    c.push_back({"bad_url", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.curl_code = CURLE_FAILED_INIT;
    c.push_back({"init_failure", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kAgentFault;
    f.local_detail = "engine shut down";
    c.push_back({"shutdown_mid_body", f, v1::AGENT_ERROR, v1::LOCAL_ABORT});
  }
  {
    ProbeFacts f;
    f.local_abort = LocalAbort::kAgentFault;
    c.push_back({"bad_config", f, v1::AGENT_ERROR, v1::NOT_CONNECTED});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.curl_code = CURLE_GOT_NOTHING;
    c.push_back({"empty_reply", f, v1::TRUNCATED, v1::CLEAN_CLOSE});
  }
  {
    ProbeFacts f;
    f.resolved = f.connected = true;
    f.curl_code = CURLE_WEIRD_SERVER_REPLY;
    c.push_back({"not_http", f, v1::INTEGRITY, v1::LOCAL_ABORT});
  }
  {
    // Our callback aborted without recording why: an engine bug, ours.
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_WRITE_ERROR;
    c.push_back({"unexplained_abort", f, v1::AGENT_ERROR, v1::LOCAL_ABORT});
  }
  return c;
}

TEST(ClassifyTest, EveryCaseLandsInItsClass) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const Classification got = Classify(c.facts);
    EXPECT_EQ(v1::OutcomeClass_Name(got.outcome_class),
              v1::OutcomeClass_Name(c.want_class));
    EXPECT_EQ(v1::TransferEnd_Name(got.transfer_end),
              v1::TransferEnd_Name(c.want_end));
    if (c.want_class != v1::OK) {
      EXPECT_FALSE(got.detail.empty());
    }
  }
}

TEST(ClassifyTest, EveryClassIsReachable) {
  std::set<int> seen;
  for (const Case& c : Cases()) seen.insert(Classify(c.facts).outcome_class);
  for (int cls = v1::OutcomeClass_MIN; cls <= v1::OutcomeClass_MAX; ++cls) {
    if (cls == v1::OUTCOME_CLASS_UNSPECIFIED) continue;
    EXPECT_TRUE(seen.count(cls))
        << v1::OutcomeClass_Name(static_cast<v1::OutcomeClass>(cls));
  }
}

TEST(ClassifyTest, NeverUnspecifiedForAnyCurlCode) {
  for (int code = 0; code < CURL_LAST; ++code) {
    for (bool headers : {false, true}) {
      ProbeFacts f = headers ? Response(200, 10, 5) : ProbeFacts();
      f.curl_code = code;
      const Classification got = Classify(f);
      EXPECT_NE(got.outcome_class, v1::OUTCOME_CLASS_UNSPECIFIED) << code;
      EXPECT_NE(got.transfer_end, v1::TRANSFER_END_UNSPECIFIED) << code;
    }
  }
}

// Facts that match more than one rule: the earlier rule of the precedence
// in classify.h wins, with its own detail ("curl <code> (" prefixes the
// libcurl-derived details, whose strerror text is libcurl's).
struct OrderCase {
  std::string name;
  ProbeFacts facts;
  v1::OutcomeClass want_class;
  v1::TransferEnd want_end;
  std::string want_detail;
};

std::vector<OrderCase> OrderCases() {
  const std::string wrong_byte = PayloadResultName(PayloadVerifier::kWrongByte);
  std::vector<OrderCase> c;
  {
    ProbeFacts f = Response(503, 10, 10);
    f.local_abort = LocalAbort::kAgentFault;
    f.local_detail = "shutdown";
    c.push_back({"agent_fault_before_status", f, v1::AGENT_ERROR,
                 v1::LOCAL_ABORT, "shutdown"});
  }
  {
    ProbeFacts f = Response(500, 10, 10);
    f.curl_code = CURLE_URL_MALFORMAT;
    c.push_back({"local_curl_before_status", f, v1::AGENT_ERROR,
                 v1::LOCAL_ABORT, "curl 3 ("});
  }
  {
    ProbeFacts f = Response(500, 10, 20);
    f.local_abort = LocalAbort::kBodyLimit;
    c.push_back({"status_before_body_limit", f, v1::HTTP_5XX, v1::LOCAL_ABORT,
                 "status 500"});
  }
  {
    ProbeFacts f = Response(404, 10, 10);
    f.payload = PayloadVerifier::kWrongByte;
    c.push_back({"status_before_wrong_byte", f, v1::HTTP_4XX, v1::COMPLETE,
                 "status 404"});
  }
  c.push_back({"redirect_detail", Response(302, 0, 0), v1::HTTP_4XX,
               v1::COMPLETE, "unexpected status 302 (redirect)"});
  c.push_back({"1xx_detail", Response(101, 0, 0), v1::HTTP_4XX, v1::COMPLETE,
               "unexpected status 101"});
  {
    ProbeFacts f = Response(200, 10, 4);
    f.local_abort = LocalAbort::kIntegrity;
    c.push_back({"integrity_abort_default_detail", f, v1::INTEGRITY,
                 v1::LOCAL_ABORT, "integrity"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kStallLimit;
    f.payload = PayloadVerifier::kWrongByte;
    f.first_bad_offset = 3;
    c.push_back({"wrong_byte_before_stall", f, v1::INTEGRITY, v1::STALL_LIMIT,
                 wrong_byte + " at offset 3"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kDeadline;
    f.payload = PayloadVerifier::kWrongByte;
    f.first_bad_offset = 5;
    c.push_back({"wrong_byte_before_deadline", f, v1::INTEGRITY, v1::DEADLINE,
                 wrong_byte + " at offset 5"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_RECV_ERROR;
    f.curl_error = "bad chunk";
    f.payload = PayloadVerifier::kWrongByte;
    f.first_bad_offset = 7;
    c.push_back({"wrong_byte_before_protocol", f, v1::INTEGRITY,
                 v1::LOCAL_ABORT, wrong_byte + " at offset 7"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_RECV_ERROR;
    f.os_errno = ECONNRESET;
    f.payload = PayloadVerifier::kWrongByte;
    f.first_bad_offset = 9;
    c.push_back({"wrong_byte_before_reset", f, v1::INTEGRITY, v1::PEER_RESET,
                 wrong_byte + " at offset 9"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.local_abort = LocalAbort::kDeadline;
    c.push_back(
        {"deadline_default_detail", f, v1::TIMEOUT, v1::DEADLINE, "deadline"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.curl_code = CURLE_OPERATION_TIMEDOUT;
    c.push_back({"curl_timeout_after_headers", f, v1::TIMEOUT, v1::DEADLINE,
                 "curl 28 ("});
  }
  {
    ProbeFacts f;
    f.https = true;
    f.resolved = true;
    f.connected = true;
    f.curl_code = CURLE_GOT_NOTHING;
    c.push_back({"tls_close_in_handshake", f, v1::TLS_ERROR, v1::CLEAN_CLOSE,
                 "curl 52 ("});
  }
  {
    ProbeFacts f;
    f.resolved = true;
    f.connected = true;
    c.push_back({"ended_without_headers", f, v1::INTEGRITY, v1::COMPLETE,
                 "transfer ended without response headers"});
  }
  {
    ProbeFacts f = Response(200, 100, 40);
    f.payload = PayloadVerifier::kShort;
    c.push_back({"framed_short_detail", f, v1::TRUNCATED, v1::COMPLETE,
                 "body framing ended after 40 of 100 declared bytes"});
  }
  {
    ProbeFacts f = Response(200, 10, 12);
    f.payload = PayloadVerifier::kOk;
    c.push_back({"verified_but_longer", f, v1::INTEGRITY, v1::COMPLETE,
                 "unverified body (" +
                     std::string(PayloadResultName(PayloadVerifier::kOk)) +
                     ")"});
  }
  c.push_back(
      {"unverified_body", Response(200, 10, 10), v1::INTEGRITY, v1::COMPLETE,
       "unverified body (" +
           std::string(PayloadResultName(PayloadVerifier::kPending)) + ")"});
  return c;
}

TEST(ClassifyTest, EarlierRuleWinsWithItsDetail) {
  for (const OrderCase& c : OrderCases()) {
    SCOPED_TRACE(c.name);
    const Classification got = Classify(c.facts);
    EXPECT_EQ(v1::OutcomeClass_Name(got.outcome_class),
              v1::OutcomeClass_Name(c.want_class));
    EXPECT_EQ(v1::TransferEnd_Name(got.transfer_end),
              v1::TransferEnd_Name(c.want_end));
    if (c.want_detail.rfind("curl ", 0) == 0) {
      EXPECT_EQ(got.detail.rfind(c.want_detail, 0), 0u) << got.detail;
    } else {
      EXPECT_EQ(got.detail, c.want_detail);
    }
  }
}

TEST(ClassifyTest, DetailNamesTheByteCounts) {
  ProbeFacts f = Response(200, 100, 40);
  f.curl_code = CURLE_PARTIAL_FILE;
  const Classification got = Classify(f);
  EXPECT_NE(got.detail.find("40 of 100"), std::string::npos) << got.detail;
}

}  // namespace
}  // namespace fleetcanary
