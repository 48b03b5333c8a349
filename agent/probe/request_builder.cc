// Request building: checks, canary URL, easy-handle options, headers and
// SigV4 signing (see request_builder.h).
#include "agent/probe/request_builder.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
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

// Writes "bytes=N&chunk=C&gap_ms=G&seed=S" (chunk and gap_ms when set).
void BuildCanaryQuery(const ProbeRequest& r, std::string* query) {
  absl::StrAppend(query, "bytes=", r.size_bytes);
  if (r.chunk_bytes > 0) absl::StrAppend(query, "&chunk=", r.chunk_bytes);
  if (r.chunk_gap > absl::ZeroDuration()) {
    absl::StrAppend(query, "&gap_ms=", absl::ToInt64Milliseconds(r.chunk_gap));
  }
  absl::StrAppend(query, "&seed=", r.seed);
}

// base + "canary?" + query.
std::string CanaryUrl(const std::string& base, const std::string& query) {
  std::string url;
  url.reserve(base.size() + 8 + query.size());
  url = base;
  if (url.back() != '/') url.push_back('/');
  absl::StrAppend(&url, "canary?", query);
  return url;
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

// Parses p->url (built from `base`, named in errors) into `out` and p->query;
// the scheme must be http or https.
absl::Status SplitUrl(const std::string& base, const TargetGuard* guard,
                      PreparedRequest* p, ParsedBase* out) {
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
  FC_RETURN_IF_ERROR(url_status);
  // Copied: the curl strings are freed on return, before signing uses them.
  out->host_name = parts.host != nullptr ? parts.host : "";
  out->host_line = absl::StrCat("Host: ", out->host_name);
  if (parts.port != nullptr) absl::StrAppend(&out->host_line, ":", parts.port);
  out->path = parts.path != nullptr ? parts.path : "/";
  p->query = parts.query != nullptr ? parts.query : "";
  out->guard_verdict = CheckUrlAllowed(guard, p->url);
  return absl::OkStatus();
}

// Everything but the headers that changes between transfers: URL, callback
// data, timeouts, HTTP version, connection reuse, TLS verification.
void SetTransferOptions(const PreparedRequest& p,
                        const ProbeEngineOptions& options, Transfer* t,
                        bool* needs_reset) {
  const ProbeRequest& r = t->request;
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, p.url.c_str());
  AttachTransferCallbacks(e, t);
  curl_easy_setopt(
      e, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(t->limits.connect_timeout))));
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, p.http_version);
  // Small buffers for small HTTP/1.1 bodies only (see ProbeEngineOptions).
  const bool small = p.http_version == CURL_HTTP_VERSION_1_1 &&
                     r.size_bytes <= options.small_body_bytes;
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE,
                   small ? options.receive_buffer_bytes
                         : static_cast<long>(CURL_MAX_WRITE_SIZE));
  // A fresh connection (and a full TLS handshake) per probe unless
  // keep_alive, so connect and TLS regressions stay visible. Set both ways:
  // the handle may come from a transfer of the other kind.
  const long fresh = r.transport.keep_alive() ? 0L : 1L;
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, fresh);
  curl_easy_setopt(e, CURLOPT_FORBID_REUSE, fresh);
  curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 1L - fresh);
  // Rare options, not set back by the next transfer: the handle is reset
  // before it is used again.
  if (!r.transport.ca_file().empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, r.transport.ca_file().c_str());
    *needs_reset = true;
  }
  if (r.transport.insecure_skip_verify()) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    *needs_reset = true;
  }
}

// Host, x-canary-probe-id and (AWS_IAM) the SigV4 headers, into t->headers.
absl::Status SetHeaders(const PreparedRequest& p,
                        const ProbeEngineOptions& options, Clock* clock,
                        Transfer* t) {
  const ProbeRequest& r = t->request;
  const auto append = [t](const char* line) {
    curl_slist* next = curl_slist_append(t->headers, line);
    if (next == nullptr) {
      return absl::ResourceExhaustedError("curl_slist_append failed");
    }
    t->headers = next;
    return absl::OkStatus();
  };
  FC_RETURN_IF_ERROR(append(p.base->host_line.c_str()));
  if (!r.probe_id.empty()) {
    FC_RETURN_IF_ERROR(
        append(absl::StrCat("x-canary-probe-id: ", r.probe_id).c_str()));
  }
  if (r.auth == v1::AWS_IAM) {
    const std::string host_header = p.base->host_line.substr(6);
    std::vector<std::string> signed_headers;
    FC_RETURN_IF_ERROR(Sign(r, options, clock, p.base->host_name, host_header,
                            absl::StrCat(p.base->path, "?", p.query),
                            &signed_headers));
    for (const std::string& h : signed_headers) {
      FC_RETURN_IF_ERROR(append(h.c_str()));
    }
  }
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  return absl::OkStatus();
}

}  // namespace

const ParsedBase* BaseUrlCache::Find(const std::string& base) const {
  auto it = map_.find(base);
  return it == map_.end() ? nullptr : it->second.get();
}

const ParsedBase* BaseUrlCache::Insert(const std::string& base,
                                       ParsedBase parsed) {
  if (map_.size() >= kMaxEntries) map_.clear();
  auto& slot = map_[base];
  slot = std::make_unique<const ParsedBase>(std::move(parsed));
  return slot.get();
}

absl::StatusOr<PreparedRequest> PrepareRequest(const ProbeRequest& r,
                                               const Limits& l,
                                               const TargetGuard* guard,
                                               BaseUrlCache* cache) {
  PreparedRequest p;
  FC_RETURN_IF_ERROR(CheckRequest(r, l, &p));
  const bool cacheable =
      cache != nullptr && r.url.find_first_of("?#") == std::string::npos;
  if (cacheable) p.base = cache->Find(r.url);
  if (p.base == nullptr) {
    std::string query;
    BuildCanaryQuery(r, &query);
    p.url = CanaryUrl(r.url, query);
    ParsedBase parsed;
    FC_RETURN_IF_ERROR(SplitUrl(r.url, guard, &p, &parsed));
    if (cacheable) {
      p.base = cache->Insert(r.url, std::move(parsed));
    } else {
      p.own_base = std::make_unique<ParsedBase>(std::move(parsed));
      p.base = p.own_base.get();
    }
  } else {
    BuildCanaryQuery(r, &p.query);
    p.url = CanaryUrl(r.url, p.query);
  }
  FC_RETURN_IF_ERROR(p.base->guard_verdict);
  return p;
}

void SetHandleDefaults(CURL* easy, const ProbeEngineOptions& options) {
  SetTransferCallbackFunctions(easy);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  // Never through a proxy from the environment: the address the target
  // guard checks must be the address connected, and the timings the
  // endpoint's.
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, options.user_agent.c_str());
}

absl::Status ConfigureEasy(const PreparedRequest& p,
                           const ProbeEngineOptions& options, Clock* clock,
                           Transfer* t, bool* needs_reset) {
  SetTransferOptions(p, options, t, needs_reset);
  return SetHeaders(p, options, clock, t);
}

}  // namespace probe_internal
}  // namespace fleetcanary
