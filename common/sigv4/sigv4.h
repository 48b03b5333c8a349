// AWS Signature Version 4 (SigV4): signing outgoing HTTP requests and
// verifying incoming ones, over OpenSSL's SHA-256 and HMAC.
//
// Used by the agent for Function URLs with AuthType=AWS_IAM (service
// "lambda") and for CloudWatch GetMetricData (service "monitoring"), and by
// the emulator to check what agents send. Passes every case of AWS's
// published SigV4 test suite (tests/testdata/aws-sig-v4-test-suite).
//
// Conventions:
//  - The request's path and query are taken as they appear in the HTTP
//    request target. For every service except "s3" the canonical URI is the
//    path with "." / ".." segments and repeated slashes removed, then each
//    segment URI-encoded (a "%" already in the path becomes "%25", AWS's
//    "double encoding"). For "s3" the path is encoded but not normalised.
//  - Query parameters are percent-decoded, re-encoded with the SigV4 rules and
//    sorted by name, then value.
//  - Header names are compared case-insensitively; values are trimmed, runs of
//    spaces collapsed, and repeated headers joined with ",".
//  - Time is always passed in (no clock reads); signatures are lower-case hex.
//
// Thread-safety: every function is thread-safe (no shared state).
//
// Example (signing):
//   FC_ASSIGN_OR_RETURN(Credentials creds, CredentialsFromEnvironment());
//   std::vector<HeaderView> headers = {{"host",
//   "abc.lambda-url.eu-west-1.on.aws"}}; HttpRequestView req{"GET",
//   "/canary?bytes=10", headers, ""}; FC_ASSIGN_OR_RETURN(SigningResult
//   signed_req,
//                       SignFunctionUrlRequest(req, creds, clock->Now()));
//   for (const auto& [name, value] : signed_req.headers_to_add) ...add them...
//
// Example (verifying, in a server):
//   absl::Status s = VerifyRequest(req, creds, "lambda", "us-east-1",
//                                  clock->Now(), absl::Minutes(5));
//   if (!s.ok()) ...answer 403 with s.message()...
#ifndef FLEETCANARY_COMMON_SIGV4_SIGV4_H_
#define FLEETCANARY_COMMON_SIGV4_SIGV4_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace fleetcanary {
namespace sigv4 {

inline constexpr char kAlgorithm[] = "AWS4-HMAC-SHA256";
// Hex SHA-256 of the empty string.
inline constexpr char kEmptyPayloadSha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
inline constexpr char kUnsignedPayload[] = "UNSIGNED-PAYLOAD";

// AWS credentials. Never log them.
struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // Empty for long-term credentials.
};

// Reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optional)
// AWS_SESSION_TOKEN. NOT_FOUND naming the variable when a required one is
// unset or empty.
absl::StatusOr<Credentials> CredentialsFromEnvironment();

// One header line, as received or to be sent. Non-owning.
struct HeaderView {
  absl::string_view name;
  absl::string_view value;
};

// A request to sign or verify. Non-owning: everything it points to must
// outlive the call it is passed to.
struct HttpRequestView {
  absl::string_view method;  // "GET", "POST", ...
  // Request target: path, optionally followed by "?query" (no scheme/host).
  absl::string_view target;
  // All headers in order; must include Host (":authority" for HTTP/2 may be
  // given as "host").
  absl::Span<const HeaderView> headers;
  absl::string_view body;
  // When non-empty, used as the payload hash instead of hashing `body`
  // (e.g. kUnsignedPayload, or a hash computed while streaming).
  absl::string_view payload_sha256_hex;
};

struct SigningParams {
  std::string service;  // e.g. "lambda", "monitoring".
  std::string region;   // e.g. "us-east-1".
  absl::Time time;      // Signing time; becomes X-Amz-Date.
  // Also send X-Amz-Content-Sha256 (signed) with the payload hash.
  bool add_content_sha256_header = false;
  // With a session token: sign X-Amz-Security-Token (true, what Lambda and
  // CloudWatch expect), or add it only after signing (false).
  bool sign_security_token = true;
  // Header names (any case) left out of the signature even if present.
  std::vector<std::string> unsigned_headers;
};

struct SigningResult {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-date"
  std::string signature;       // 64 lower-case hex digits.
  std::string authorization;   // Value of the Authorization header.
  // Headers the caller must add to the request, in this order: X-Amz-Date,
  // [X-Amz-Content-Sha256], [X-Amz-Security-Token], Authorization. Any
  // header of the same name already in the request must be removed (the
  // signer ignored them).
  std::vector<std::pair<std::string, std::string>> headers_to_add;
};

// Signs `request`. Existing Authorization and X-Amz-Date headers (and
// X-Amz-Security-Token / X-Amz-Content-Sha256 when the signer sets them) are
// ignored and replaced. INVALID_ARGUMENT naming the field when the method,
// target, Host header, service, region or credentials are missing or
// malformed.
absl::StatusOr<SigningResult> SignRequest(const HttpRequestView& request,
                                          const Credentials& credentials,
                                          const SigningParams& params);

// The region of a Function URL host "<id>.lambda-url.<region>.on.aws" (the
// form in every partition, aws-cn included); an optional ":port" is
// ignored. INVALID_ARGUMENT for any other host.
absl::StatusOr<std::string> RegionFromFunctionUrlHost(absl::string_view host);

// Signs a Function URL request: service "lambda", region `region`, or, when
// empty, derived from the request's Host header.
absl::StatusOr<SigningResult> SignFunctionUrlRequest(
    const HttpRequestView& request, const Credentials& credentials,
    absl::Time time, absl::string_view region = "");

// ---------------------------------------------------------------------------
// Verification.

// The parts of an "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=..." header.
struct ParsedAuthorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD from the credential scope.
  std::string region;
  std::string service;
  std::string scope;  // "date/region/service/aws4_request".
  std::vector<std::string> signed_headers;  // Lower-case, as listed.
  std::string signature;                    // Hex as sent.
};

// Parses an Authorization header value. INVALID_ARGUMENT with the reason.
absl::StatusOr<ParsedAuthorization> ParseAuthorization(absl::string_view value);

// Returns the credentials for an access key id; NOT_FOUND if unknown.
using CredentialsLookup =
    std::function<absl::StatusOr<Credentials>(absl::string_view access_key_id)>;

struct VerifyOptions {
  std::string service;
  std::string region;
  absl::Time now;
  // Largest allowed difference between X-Amz-Date and `now` (AWS: 5 min).
  absl::Duration max_skew = absl::Minutes(5);
  // Accept X-Amz-Content-Sha256: UNSIGNED-PAYLOAD.
  bool allow_unsigned_payload = false;
};

// Checks a received request's SigV4 signature by recomputing it over the
// headers it lists as signed and the body actually received; compares in
// constant time. OK when valid; PERMISSION_DENIED with the reason otherwise
// (missing/malformed Authorization or X-Amz-Date, wrong scope, clock skew,
// unknown key, missing session token, payload hash mismatch, signature
// mismatch). Errors from `lookup` other than NOT_FOUND are returned as is.
absl::Status VerifyRequest(const HttpRequestView& request,
                           const CredentialsLookup& lookup,
                           const VerifyOptions& options);

// Convenience overload for a single known principal.
absl::Status VerifyRequest(const HttpRequestView& request,
                           const Credentials& credentials,
                           absl::string_view service, absl::string_view region,
                           absl::Time now, absl::Duration max_skew);

// ---------------------------------------------------------------------------
// Building blocks (exposed for verifiers and tests).

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);
// Raw 32-byte HMAC-SHA256 of `data` under `key`.
std::string HmacSha256(absl::string_view key, absl::string_view data);
// URI-encodes per SigV4: unreserved A-Z a-z 0-9 - _ . ~ kept, everything else
// %XX (upper case); "/" kept only when `keep_slash`.
std::string UriEncode(absl::string_view in, bool keep_slash);
// "20150830T123600Z".
std::string FormatAmzDate(absl::Time t);
// Parses an X-Amz-Date value; INVALID_ARGUMENT if malformed.
absl::StatusOr<absl::Time> ParseAmzDate(absl::string_view value);
// The canonical URI of `path` for `service` (see the conventions above).
std::string CanonicalUri(absl::string_view path, absl::string_view service);
// The canonical query string of `query` (without the "?").
std::string CanonicalQuery(absl::string_view query);
// The canonical request over the headers named in `signed_headers`
// (lower-case, in canonical order), or over every header of the request when
// `signed_headers` is empty. INVALID_ARGUMENT if a listed header is absent.
absl::StatusOr<std::string> CanonicalRequest(
    const HttpRequestView& request, absl::string_view service,
    absl::Span<const std::string> signed_headers,
    absl::string_view payload_sha256_hex);
// "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>".
std::string StringToSign(absl::string_view amz_date, absl::string_view scope,
                         absl::string_view canonical_request);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service),
// "aws4_request"); raw bytes.
std::string DeriveSigningKey(absl::string_view secret_access_key,
                             absl::string_view date, absl::string_view region,
                             absl::string_view service);

}  // namespace sigv4
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_SIGV4_SIGV4_H_
