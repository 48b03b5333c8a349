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
//                   verification), attaches the transfer's callbacks and
//                   sends Host, x-canary-probe-id and, for AWS_IAM, the
//                   SigV4 headers (the role's credentials when role_arn is
//                   set; the region from the Function URL host, else the
//                   request's region).
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

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/probe/probe_engine.h"
#include "agent/probe/transfer.h"
#include "common/net/target_guard.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace probe_internal {

// A request that passed every local check, with what its handle needs.
struct PreparedRequest {
  // The canary URL to fetch.
  std::string url;
  // Host of the URL alone (the SigV4 region comes from it).
  std::string host_name;
  // Host header: host[:port] as given in the URL.
  std::string host_header;
  // path?query, the request target SigV4 signs.
  std::string target;
  long http_version = CURL_HTTP_VERSION_1_1;
  bool https = false;
};

// Checks `r` against `limits` and `guard` (null = every URL allowed).
absl::StatusOr<PreparedRequest> PrepareRequest(const ProbeRequest& r,
                                               const Limits& limits,
                                               const TargetGuard* guard);

// Configures `t->easy` (already acquired, freshly reset) to run `p` for `t`,
// signing with `options`' credentials at `clock`'s time. On error the
// handle and any `t->headers` built so far stay for the caller to release.
absl::Status ConfigureEasy(const PreparedRequest& p,
                           const ProbeEngineOptions& options, Clock* clock,
                           Transfer* t);

}  // namespace probe_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_REQUEST_BUILDER_H_
