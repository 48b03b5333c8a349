// Request building for the probe engine (internal to agent/probe/; the
// public contract is probe_engine.h): from a ProbeRequest to a libcurl easy
// handle ready to run, in two steps so that nothing is acquired for a
// request that is refused.
//
//   PrepareRequest  checks everything that needs no network (url present and
//                   http(s), size_bytes within max_body_bytes, http_version
//                   "", "1.1" or "2", ca_file readable, the target guard's
//                   URL check) and builds the canary URL
//                   base + "canary?bytes=N&chunk=C&gap_ms=G&seed=S".
//   ConfigureEasy   sets the transfer's options on its easy handle (no proxy,
//                   http(s) only, connect timeout, HTTP version, a fresh
//                   connection and TLS session unless keep_alive, CA file,
//                   verification, a small receive buffer), attaches the
//                   transfer's callbacks and sends Host, x-canary-probe-id
//                   and, for AWS_IAM, the SigV4 headers (the role's
//                   credentials when role_arn is set; the region from the
//                   Function URL host, else the request's region).
//
// Speed: a probe engine runs the same few base URLs over and over, so
// PrepareRequest keeps what it learned about each base URL (its parsed host,
// Host header, path and the target guard's verdict on the host) in a small
// BaseUrlCache and builds only the query per probe; and easy handles are
// reused without curl_easy_reset unless a transfer changed an option outside
// the common set (ca_file, insecure_skip_verify): see ConfigureEasy.
//
// Errors are the request's (or our configuration's) fault and end the probe
// as AGENT_ERROR with the status message as detail: INVALID_ARGUMENT for a
// bad request, PERMISSION_DENIED for the target guard (message starting
// "target guard"), FAILED_PRECONDITION for missing credentials,
// RESOURCE_EXHAUSTED when libcurl cannot allocate.
//
// Thread-safety: called on the engine's loop thread.
#ifndef FLEETCANARY_AGENT_PROBE_REQUEST_BUILDER_H_
#define FLEETCANARY_AGENT_PROBE_REQUEST_BUILDER_H_

#include <curl/curl.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/probe/probe_engine.h"
#include "agent/probe/transfer.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace probe_internal {

// What a base URL (ProbeRequest::url) parses to; shared by every probe of it.
struct ParsedBase {
  // Host of the URL alone (the SigV4 region comes from it).
  std::string host_name;
  // "Host: host[:port]" as given in the URL.
  std::string host_line;
  // Path of the canary URL (the base's path + "canary").
  std::string path;
  // The target guard's verdict on the URL's host.
  absl::Status guard_verdict;
};

// Parsed base URLs, at most a few hundred (cleared when full). Only base
// URLs without query or fragment are kept, so that every canary URL made
// from one has the same host and path. The target guard's URL check depends
// on the host alone, so its verdict is kept too. Loop thread only.
class BaseUrlCache {
 public:
  // Null when `base` is not cached.
  const ParsedBase* Find(const std::string& base) const;
  // Keeps `parsed` for `base`; returns the kept copy.
  const ParsedBase* Insert(const std::string& base, ParsedBase parsed);

 private:
  static constexpr size_t kMaxEntries = 256;
  absl::flat_hash_map<std::string, std::unique_ptr<const ParsedBase>> map_;
};

// A request that passed every local check, with what its handle needs.
struct PreparedRequest {
  // The canary URL to fetch.
  std::string url;
  // The base URL's parts (owned by the cache or by `own_base`).
  const ParsedBase* base = nullptr;
  std::unique_ptr<ParsedBase> own_base;
  // The canary URL's query (after '?').
  std::string query;
  long http_version = CURL_HTTP_VERSION_1_1;
  bool https = false;
};

// Checks `r` against `limits` and `guard` (null = every URL allowed), using
// and filling `cache` (may be null: nothing kept). `guard` must be the same
// for every call with one cache.
absl::StatusOr<PreparedRequest> PrepareRequest(const ProbeRequest& r,
                                               const Limits& limits,
                                               const TargetGuard* guard,
                                               BaseUrlCache* cache);

// Sets the options every transfer of `easy` shares (callbacks, protocols,
// no proxy, user agent); once per new or reset handle.
void SetHandleDefaults(CURL* easy, const ProbeEngineOptions& options);

// Configures `t->easy` (set up with SetHandleDefaults, possibly used by
// earlier transfers) to run `p` for `t`, signing with `options`' credentials
// at `clock`'s time. Sets `*needs_reset` when the transfer changed options
// outside what the next ConfigureEasy sets again (CA file, TLS
// verification): the handle must then be reset before its next use. On
// error the handle and any `t->headers` built so far stay for the caller to
// release.
absl::Status ConfigureEasy(const PreparedRequest& p,
                           const ProbeEngineOptions& options, Clock* clock,
                           Transfer* t, bool* needs_reset);

}  // namespace probe_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_REQUEST_BUILDER_H_
