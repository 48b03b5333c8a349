// A bounded HTTP exchange over libcurl for the AWS credential providers and
// STS: one request, one response, a hard time limit and a size cap. No
// redirects, no proxies from the environment beyond libcurl's defaults.
//
// Thread-safety: every function is thread-safe.
#ifndef FLEETCANARY_COMMON_AWS_HTTP_H_
#define FLEETCANARY_COMMON_AWS_HTTP_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace aws {

struct HttpExchange {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  absl::Duration connect_timeout = absl::Seconds(2);
  // The whole exchange.
  absl::Duration timeout = absl::Seconds(10);
  size_t max_response_bytes = 1 << 20;
};

struct HttpReply {
  long status = 0;
  std::string body;
};

// Runs `exchange`. UNAVAILABLE naming the URL when the connection fails or
// times out; RESOURCE_EXHAUSTED past max_response_bytes; any HTTP status is
// returned as a reply (not an error).
absl::StatusOr<HttpReply> HttpCall(const HttpExchange& exchange);

// The parts of an endpoint URL needed for SigV4 signing.
struct ParsedUrl {
  std::string scheme;       // "http" or "https".
  std::string host;         // Without brackets or port.
  std::string host_header;  // host[:port] as sent in Host.
  std::string path;         // "/" by default.
  std::string url;          // scheme://host_header/path, no query.
};

// Parses an http(s) URL. INVALID_ARGUMENT naming `what` otherwise.
absl::StatusOr<ParsedUrl> ParseHttpUrl(absl::string_view raw,
                                       absl::string_view what);

// application/x-www-form-urlencoded encoding of one value (RFC 3986
// unreserved characters kept, everything else %XX).
std::string FormEncode(absl::string_view value);
// Decodes a form/query component ("+" is a space). INVALID_ARGUMENT on a
// malformed escape.
absl::StatusOr<std::string> FormDecode(absl::string_view value);
// Splits "a=1&b=2" into decoded pairs, in order.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseForm(
    absl::string_view body);

}  // namespace aws
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_AWS_HTTP_H_
