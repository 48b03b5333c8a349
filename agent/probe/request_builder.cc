// Request building: checks, canary URL, easy-handle options, headers and
// SigV4 signing (see request_builder.h).
#include "agent/probe/request_builder.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/sigv4/sigv4.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace probe_internal {
namespace {

absl::Status Sign(const ProbeRequest& r, const ProbeEngineOptions& options,
                  Clock* clock, absl::string_view host_only,
                  const std::string& host_header, const std::string& target,
                  std::vector<std::string>* headers) {
  absl::StatusOr<sigv4::Credentials> creds =
      r.role_arn.empty() ? options.credentials()
      : options.role_credentials
          ? options.role_credentials(r.role_arn)
          : absl::FailedPreconditionError(absl::StrCat(
                "role ", r.role_arn, ": this engine assumes no roles"));
  if (!creds.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "auth AWS_IAM needs AWS credentials: ", creds.status().message()));
  }
  std::string region;
  absl::StatusOr<std::string> from_host =
      sigv4::RegionFromFunctionUrlHost(host_only);
  if (from_host.ok()) {
    region = *from_host;
  } else {
    region = r.region;
  }
  if (region.empty()) {
    return absl::InvalidArgumentError(
        "auth AWS_IAM: the signing region is unknown (not a Function URL "
        "host and no region given)");
  }
  const std::vector<sigv4::HeaderView> views = {{"host", host_header}};
  sigv4::HttpRequestView req{"GET", target, views, "", ""};
  absl::StatusOr<sigv4::SigningResult> signed_req =
      sigv4::SignFunctionUrlRequest(req, *creds, clock->Now(), region);
  if (!signed_req.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth AWS_IAM: signing failed: ", signed_req.status().message()));
  }
  for (const auto& [name, value] : signed_req->headers_to_add) {
    headers->push_back(absl::StrCat(name, ": ", value));
  }
  return absl::OkStatus();
}

// What needs no parsing: url present, size_bytes within max_body_bytes,
// http_version known (sets p->https and p->http_version), ca_file readable.
absl::Status CheckRequest(const ProbeRequest& r, const Limits& l,
                          PreparedRequest* p) {
  if (r.url.empty()) return absl::InvalidArgumentError("url: required");
  if (r.size_bytes > l.max_body) {
    return absl::InvalidArgumentError(
        absl::StrCat("size_bytes ", r.size_bytes,
                     " exceeds limits.max_body_bytes ", l.max_body));
  }
  const std::string& hv = r.transport.http_version();
  const bool https = absl::StartsWithIgnoreCase(r.url, "https://");
  p->https = https;
  if (hv == "2") {
    p->http_version =
        https ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  } else if (!hv.empty() && hv != "1.1") {
    return absl::InvalidArgumentError(absl::StrCat(
        "transport.http_version: \"", hv, "\" is not \"1.1\" or \"2\""));
  }
  if (!r.transport.ca_file().empty()) {
    std::ifstream f(r.transport.ca_file());
    if (!f.good()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "transport.ca_file: cannot read ", r.transport.ca_file()));
    }
  }
  return absl::OkStatus();
}

// Writes base + "canary?bytes=N&chunk=C&gap_ms=G&seed=S" to `url`.
void BuildCanaryUrl(const ProbeRequest& r, std::string* url) {
  *url = r.url;
  if (url->back() != '/') url->push_back('/');
  absl::StrAppend(url, "canary?bytes=", r.size_bytes);
  if (r.chunk_bytes > 0) absl::StrAppend(url, "&chunk=", r.chunk_bytes);
  if (r.chunk_gap > absl::ZeroDuration()) {
    absl::StrAppend(url, "&gap_ms=", absl::ToInt64Milliseconds(r.chunk_gap));
  }
  absl::StrAppend(url, "&seed=", r.seed);
}

// The parts of a URL libcurl parsed (null when absent); freed on
// destruction.
struct UrlParts {
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  char* path = nullptr;
  char* query = nullptr;

  UrlParts() = default;
  UrlParts(const UrlParts&) = delete;
  UrlParts& operator=(const UrlParts&) = delete;
  ~UrlParts() {
    for (char* c : {scheme, host, port, path, query}) curl_free(c);
  }
};

// Parses p->url (built from `base`, named in errors) into its host, Host
// header and request target; the scheme must be http or https.
absl::Status SplitUrl(const std::string& base, PreparedRequest* p) {
  CURLU* u = curl_url();
  if (u == nullptr) return absl::ResourceExhaustedError("curl_url failed");
  const CURLUcode uc = curl_url_set(u, CURLUPART_URL, p->url.c_str(), 0);
  UrlParts parts;
  absl::Status url_status = absl::OkStatus();
  if (uc != CURLUE_OK) {
    url_status = absl::InvalidArgumentError(
        absl::StrCat("url: \"", base, "\": ", curl_url_strerror(uc)));
  } else {
    curl_url_get(u, CURLUPART_SCHEME, &parts.scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &parts.host, 0);
    curl_url_get(u, CURLUPART_PORT, &parts.port, 0);
    curl_url_get(u, CURLUPART_PATH, &parts.path, 0);
    curl_url_get(u, CURLUPART_QUERY, &parts.query, 0);
    if (parts.scheme == nullptr || (std::strcmp(parts.scheme, "http") != 0 &&
                                    std::strcmp(parts.scheme, "https") != 0)) {
      url_status = absl::InvalidArgumentError(
          absl::StrCat("url: \"", base, "\": scheme must be http or https"));
    }
  }
  curl_url_cleanup(u);
  // Copied: the curl strings are freed on return, before signing uses them.
  p->host_name = parts.host != nullptr ? parts.host : "";
  FC_RETURN_IF_ERROR(url_status);
  p->host_header = p->host_name;
  if (parts.port != nullptr) absl::StrAppend(&p->host_header, ":", parts.port);
  p->target = absl::StrCat(parts.path != nullptr ? parts.path : "/", "?",
                           parts.query != nullptr ? parts.query : "");
  return absl::OkStatus();
}

// PERMISSION_DENIED "target guard: ..." when `guard` (if any) refuses `url`.
absl::Status CheckUrlAllowed(const TargetGuard* guard, const std::string& url) {
  if (guard == nullptr) return absl::OkStatus();
  const absl::Status allowed = guard->CheckUrl(url);
  if (allowed.ok()) return absl::OkStatus();
  const absl::string_view why = allowed.message();
  return absl::PermissionDeniedError(absl::StartsWith(why, "target guard")
                                         ? std::string(why)
                                         : absl::StrCat("target guard: ", why));
}

// Everything but the headers: URL, callbacks, protocols, no proxy, timeouts,
// HTTP version, connection reuse, TLS verification.
void SetTransferOptions(const PreparedRequest& p,
                        const ProbeEngineOptions& options, Transfer* t) {
  const ProbeRequest& r = t->request;
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, p.url.c_str());
  AttachTransferCallbacks(e, t);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  // Never through a proxy from the environment: the address the target
  // guard checks must be the address connected, and the timings the
  // endpoint's.
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(
      e, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(t->limits.connect_timeout))));
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, p.http_version);
  curl_easy_setopt(e, CURLOPT_USERAGENT, options.user_agent.c_str());
  if (!r.transport.keep_alive()) {
    // A fresh connection (and a full TLS handshake) per probe, so connect
    // and TLS regressions stay visible.
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
  }
  if (!r.transport.ca_file().empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, r.transport.ca_file().c_str());
  }
  if (r.transport.insecure_skip_verify()) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

// Host, x-canary-probe-id and (AWS_IAM) the SigV4 headers, into t->headers.
absl::Status SetHeaders(const PreparedRequest& p,
                        const ProbeEngineOptions& options, Clock* clock,
                        Transfer* t) {
  const ProbeRequest& r = t->request;
  std::vector<std::string> headers = {"Host: " + p.host_header};
  if (!r.probe_id.empty()) {
    headers.push_back("x-canary-probe-id: " + r.probe_id);
  }
  if (r.auth == v1::AWS_IAM) {
    FC_RETURN_IF_ERROR(Sign(r, options, clock, p.host_name, p.host_header,
                            p.target, &headers));
  }
  for (const std::string& h : headers) {
    curl_slist* next = curl_slist_append(t->headers, h.c_str());
    if (next == nullptr) {
      return absl::ResourceExhaustedError("curl_slist_append failed");
    }
    t->headers = next;
  }
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PreparedRequest> PrepareRequest(const ProbeRequest& r,
                                               const Limits& l,
                                               const TargetGuard* guard) {
  PreparedRequest p;
  FC_RETURN_IF_ERROR(CheckRequest(r, l, &p));
  BuildCanaryUrl(r, &p.url);
  FC_RETURN_IF_ERROR(SplitUrl(r.url, &p));
  FC_RETURN_IF_ERROR(CheckUrlAllowed(guard, p.url));
  return p;
}

absl::Status ConfigureEasy(const PreparedRequest& p,
                           const ProbeEngineOptions& options, Clock* clock,
                           Transfer* t) {
  SetTransferOptions(p, options, t);
  return SetHeaders(p, options, clock, t);
}

}  // namespace probe_internal
}  // namespace fleetcanary
