// Outcome building: labels, facts for classification, timings (see
// outcome_builder.h).
#include "agent/probe/outcome_builder.h"

#include <cstdint>
#include <utility>

#include "agent/probe/classify.h"

namespace fleetcanary {
namespace probe_internal {
namespace {

// Sets a string field only when there is something to set: an empty field
// reads the same, and protobuf allocates for every string it is given.
template <typename Setter>
void SetNonEmpty(const std::string& value, Setter set) {
  if (!value.empty()) set(value);
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

std::string HttpVersionName(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0:
      return "1.0";
    case CURL_HTTP_VERSION_1_1:
      return "1.1";
    case CURL_HTTP_VERSION_2_0:
      return "2";
    case CURL_HTTP_VERSION_3:
      return "3";
    default:
      return "";
  }
}

// What libcurl measured for a transfer (CURLINFO_*).
struct CurlInfo {
  curl_off_t dns = 0, connect = 0, tls = 0;  // Microseconds.
  long os_errno = 0, num_connects = 0, http_version = 0;
};

CurlInfo ReadCurlInfo(CURL* e) {
  CurlInfo i;
  curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &i.dns);
  curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &i.connect);
  curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &i.tls);
  curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &i.os_errno);
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &i.num_connects);
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &i.http_version);
  return i;
}

// The facts Classify decides on; finishes payload verification of a
// transfer that ended cleanly.
ProbeFacts GatherFacts(Transfer* t, CURLcode code, const CurlInfo& info,
                       bool reused) {
  ProbeFacts f;
  f.local_abort = t->abort;
  f.local_detail = t->abort_detail;
  f.curl_code = code;
  f.os_errno = static_cast<int>(info.os_errno);
  f.curl_error = t->error;
  f.https = t->https;
  f.connected = t->connected || t->tcp_connected || info.connect > 0;
  f.resolved = f.connected || info.dns > 0;
  f.tls_done = t->https && (info.tls > 0 || reused);
  f.headers_complete = t->headers_complete;
  f.status = t->status;
  f.expected_bytes = t->headers_complete ? t->expected : t->request.size_bytes;
  f.received_bytes = t->received;
  if (t->verifier) {
    if (code == CURLE_OK && t->abort == LocalAbort::kNone) {
      t->verifier->Finish();
    }
    f.payload = t->verifier->result();
    f.first_bad_offset = t->verifier->first_bad_offset();
  }
  return f;
}

void FillTimings(const Transfer& t, const CurlInfo& info, bool reused,
                 absl::Duration now, v1::Timings* tm) {
  if (!reused) {
    if (info.dns > 0) ToProto(absl::Microseconds(info.dns), tm->mutable_dns());
    if (info.connect > 0)
      ToProto(absl::Microseconds(info.connect), tm->mutable_connect());
    if (info.tls > 0) ToProto(absl::Microseconds(info.tls), tm->mutable_tls());
  }
  if (t.request_sent) {
    ToProto(*t.request_sent - t.start, tm->mutable_request_sent());
  }
  if (t.ttfb) ToProto(*t.ttfb - t.start, tm->mutable_headers_received());
  if (t.chunks > 0) {
    ToProto(t.first_body - t.start, tm->mutable_first_body_byte());
    ToProto(t.last_body - t.start, tm->mutable_last_byte());
  }
  ToProto(now - t.start, tm->mutable_total());
}

// Response, byte counts and the classification.
void FillResult(const Transfer& t, const CurlInfo& info, const ProbeFacts& f,
                const Classification& c, bool reused, v1::Outcome* o) {
  if (t.status_line_seen || t.headers_complete) {
    SetNonEmpty(HttpVersionName(info.http_version),
                [o](const std::string& v) { o->set_http_version(v); });
  }
  o->set_status(t.status);
  SetNonEmpty(t.request_id,
              [o](const std::string& v) { o->set_platform_request_id(v); });
  SetNonEmpty(t.trace_id, [o](const std::string& v) { o->set_trace_id(v); });
  o->set_expected_bytes(f.expected_bytes);
  o->set_received_bytes(t.received);
  o->set_chunk_count(t.chunks);
  if (t.chunks > 1) ToProto(t.max_gap, o->mutable_max_gap());
  const bool bad_bytes = f.payload == PayloadVerifier::kWrongByte ||
                         f.payload == PayloadVerifier::kExtra;
  o->set_first_bad_offset(bad_bytes ? f.first_bad_offset : -1);
  o->set_transfer_end(c.transfer_end);
  o->set_outcome_class(c.outcome_class);
  SetNonEmpty(c.detail, [o](const std::string& v) { o->set_detail(v); });
  o->set_connection_reused(reused);
}

}  // namespace

void FillLabels(const ProbeRequest& r, absl::Time start_time, v1::Outcome* o) {
  SetNonEmpty(r.agent_id, [o](const std::string& v) { o->set_agent_id(v); });
  SetNonEmpty(r.region, [o](const std::string& v) { o->set_region(v); });
  SetNonEmpty(r.target, [o](const std::string& v) { o->set_target(v); });
  o->set_mode(r.mode);
  o->set_requested_bytes(r.size_bytes);
  SetNonEmpty(r.probe_id, [o](const std::string& v) { o->set_probe_id(v); });
  SetNonEmpty(r.schedule_id,
              [o](const std::string& v) { o->set_schedule_id(v); });
  SetNonEmpty(r.adhoc_id, [o](const std::string& v) { o->set_adhoc_id(v); });
  o->set_seed(r.seed);
  const int64_t ns = absl::ToUnixNanos(start_time);
  o->mutable_start_time()->set_seconds(ns / 1000000000);
  o->mutable_start_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

v1::Outcome NotStartedOutcome(const ProbeRequest& r, absl::Time start_time,
                              std::string detail) {
  v1::Outcome o;
  FillLabels(r, start_time, &o);
  ProbeFacts facts;
  facts.local_abort = LocalAbort::kAgentFault;
  facts.local_detail = std::move(detail);
  facts.expected_bytes = r.size_bytes;
  const Classification c = Classify(facts);
  o.set_outcome_class(c.outcome_class);
  o.set_transfer_end(c.transfer_end);
  o.set_detail(c.detail);
  o.set_expected_bytes(r.size_bytes);
  o.set_first_bad_offset(-1);
  ToProto(absl::ZeroDuration(), o.mutable_timings()->mutable_total());
  return o;
}

void CompleteOutcome(Transfer* t, CURLcode code, absl::Duration now) {
  const CurlInfo info = ReadCurlInfo(t->easy);
  const bool reused = t->connected && info.num_connects == 0;
  if (!t->guard_refusal.empty() && !t->guard_allowed_any) {
    // Every address of the host was refused by our policy: never tried,
    // not the platform's fault.
    t->Abort(LocalAbort::kAgentFault, t->guard_refusal);
  }
  const ProbeFacts f = GatherFacts(t, code, info, reused);
  const Classification c = Classify(f);
  FillTimings(*t, info, reused, now, t->outcome.mutable_timings());
  FillResult(*t, info, f, c, reused, &t->outcome);
}

}  // namespace probe_internal
}  // namespace fleetcanary
