#include "common/sigv4/sigv4.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/sigv4/sigv4_internal.h"

namespace fleetcanary {
namespace sigv4 {
namespace {

using internal::FindHeaders;
using internal::HeaderNameIs;
using internal::kTerminator;
using internal::SignatureHex;

bool ValidScopePart(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// INVALID_ARGUMENT when the request, the credentials or the scope cannot be
// signed.
absl::Status CheckSigningInput(const HttpRequestView& request,
                               const Credentials& credentials,
                               const SigningParams& params) {
  if (request.method.empty()) {
    return absl::InvalidArgumentError("sigv4: request method is empty");
  }
  if (!absl::StartsWith(request.target, "/")) {
    return absl::InvalidArgumentError(
        "sigv4: request target must start with \"/\"");
  }
  if (FindHeaders(request.headers, "host").empty()) {
    return absl::InvalidArgumentError("sigv4: request has no Host header");
  }
  if (!ValidScopePart(params.service)) {
    return absl::InvalidArgumentError("sigv4: service is empty or malformed");
  }
  if (!ValidScopePart(params.region)) {
    return absl::InvalidArgumentError("sigv4: region is empty or malformed");
  }
  if (credentials.access_key_id.empty() ||
      absl::StrContains(credentials.access_key_id, '/')) {
    return absl::InvalidArgumentError(
        "sigv4: credentials.access_key_id is empty or malformed");
  }
  if (credentials.secret_access_key.empty()) {
    return absl::InvalidArgumentError(
        "sigv4: credentials.secret_access_key is empty");
  }
  return absl::OkStatus();
}

// The headers as they will be sent: the request's, minus the ones the signer
// owns, plus X-Amz-Date and, as `params` asks, X-Amz-Content-Sha256 and
// X-Amz-Security-Token. The views point into the arguments.
std::vector<HeaderView> HeadersToSign(const HttpRequestView& request,
                                      const Credentials& credentials,
                                      const SigningParams& params,
                                      absl::string_view amz_date,
                                      absl::string_view payload_hash) {
  const bool has_token = !credentials.session_token.empty();
  std::vector<HeaderView> headers;
  headers.reserve(request.headers.size() + 3);
  for (const HeaderView& h : request.headers) {
    if (HeaderNameIs(h.name, "authorization") ||
        HeaderNameIs(h.name, "x-amz-date") ||
        (has_token && HeaderNameIs(h.name, "x-amz-security-token")) ||
        (params.add_content_sha256_header &&
         HeaderNameIs(h.name, "x-amz-content-sha256"))) {
      continue;
    }
    headers.push_back(h);
  }
  headers.push_back({"x-amz-date", amz_date});
  if (params.add_content_sha256_header) {
    headers.push_back({"x-amz-content-sha256", payload_hash});
  }
  if (has_token && params.sign_security_token) {
    headers.push_back({"x-amz-security-token", credentials.session_token});
  }
  return headers;
}

// Signed: the lower-case names of every header present except the ones the
// caller excludes, sorted, without duplicates.
std::vector<std::string> SignedHeaderNames(
    absl::Span<const HeaderView> headers,
    const std::vector<std::string>& unsigned_headers) {
  std::vector<std::string> names;
  for (const HeaderView& h : headers) {
    std::string name = absl::AsciiStrToLower(h.name);
    bool excluded = std::any_of(
        unsigned_headers.begin(), unsigned_headers.end(),
        [&](const std::string& u) { return absl::EqualsIgnoreCase(u, name); });
    if (!excluded) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace

namespace internal {

bool HeaderNameIs(absl::string_view name, absl::string_view lower) {
  return absl::EqualsIgnoreCase(name, lower);
}

// Values of every header named `lower` (case-insensitive), in order.
std::vector<absl::string_view> FindHeaders(absl::Span<const HeaderView> headers,
                                           absl::string_view lower) {
  std::vector<absl::string_view> out;
  for (const HeaderView& h : headers) {
    if (HeaderNameIs(h.name, lower)) out.push_back(h.value);
  }
  return out;
}

std::string SignatureHex(absl::string_view secret, absl::string_view date,
                         absl::string_view region, absl::string_view service,
                         absl::string_view string_to_sign) {
  return ToHex(HmacSha256(DeriveSigningKey(secret, date, region, service),
                          string_to_sign));
}

}  // namespace internal

absl::StatusOr<Credentials> CredentialsFromEnvironment() {
  Credentials creds;
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  if (id == nullptr || *id == '\0') {
    return absl::NotFoundError(
        "environment variable AWS_ACCESS_KEY_ID is not set");
  }
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (secret == nullptr || *secret == '\0') {
    return absl::NotFoundError(
        "environment variable AWS_SECRET_ACCESS_KEY is not set");
  }
  creds.access_key_id = id;
  creds.secret_access_key = secret;
  if (const char* token = std::getenv("AWS_SESSION_TOKEN"); token != nullptr) {
    creds.session_token = token;
  }
  return creds;
}

std::string DeriveSigningKey(absl::string_view secret_access_key,
                             absl::string_view date, absl::string_view region,
                             absl::string_view service) {
  std::string k_date =
      HmacSha256(absl::StrCat("AWS4", secret_access_key), date);
  std::string k_region = HmacSha256(k_date, region);
  std::string k_service = HmacSha256(k_region, service);
  return HmacSha256(k_service, kTerminator);
}

absl::StatusOr<SigningResult> SignRequest(const HttpRequestView& request,
                                          const Credentials& credentials,
                                          const SigningParams& params) {
  if (absl::Status s = CheckSigningInput(request, credentials, params);
      !s.ok()) {
    return s;
  }

  const std::string amz_date = FormatAmzDate(params.time);
  const std::string date = amz_date.substr(0, 8);
  const std::string payload_hash =
      request.payload_sha256_hex.empty()
          ? Sha256Hex(request.body)
          : std::string(request.payload_sha256_hex);
  const bool has_token = !credentials.session_token.empty();

  const std::vector<HeaderView> headers =
      HeadersToSign(request, credentials, params, amz_date, payload_hash);
  const std::vector<std::string> names =
      SignedHeaderNames(headers, params.unsigned_headers);

  HttpRequestView view = request;
  view.headers = headers;
  SigningResult result;
  absl::StatusOr<std::string> canonical =
      CanonicalRequest(view, params.service, names, payload_hash);
  if (!canonical.ok()) return canonical.status();
  result.canonical_request = *std::move(canonical);
  const std::string scope = absl::StrCat(date, "/", params.region, "/",
                                         params.service, "/", kTerminator);
  result.string_to_sign =
      StringToSign(amz_date, scope, result.canonical_request);
  result.signed_headers = absl::StrJoin(names, ";");
  result.signature =
      SignatureHex(credentials.secret_access_key, date, params.region,
                   params.service, result.string_to_sign);
  result.authorization =
      absl::StrCat(kAlgorithm, " Credential=", credentials.access_key_id, "/",
                   scope, ", SignedHeaders=", result.signed_headers,
                   ", Signature=", result.signature);

  result.headers_to_add.emplace_back("X-Amz-Date", amz_date);
  if (params.add_content_sha256_header) {
    result.headers_to_add.emplace_back("X-Amz-Content-Sha256", payload_hash);
  }
  if (has_token) {
    result.headers_to_add.emplace_back("X-Amz-Security-Token",
                                       credentials.session_token);
  }
  result.headers_to_add.emplace_back("Authorization", result.authorization);
  return result;
}

absl::StatusOr<std::string> RegionFromFunctionUrlHost(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  absl::string_view v = h;
  if (size_t colon = v.rfind(':'); colon != absl::string_view::npos) {
    absl::string_view port = v.substr(colon + 1);
    if (!port.empty() && std::all_of(port.begin(), port.end(), [](char c) {
          return absl::ascii_isdigit(static_cast<unsigned char>(c));
        })) {
      v = v.substr(0, colon);
    }
  }
  constexpr absl::string_view kMarker = ".lambda-url.";
  size_t marker = v.find(kMarker);
  // ".on.aws" in every partition (aws, aws-us-gov, aws-cn).
  if (marker == absl::string_view::npos || marker == 0 ||
      !absl::ConsumeSuffix(&v, ".on.aws")) {
    return absl::InvalidArgumentError(
        absl::StrCat("host \"", absl::CHexEscape(host.substr(0, 256)),
                     "\" is not a Function URL host "
                     "(<id>.lambda-url.<region>.on.aws)"));
  }
  absl::string_view region = v.substr(marker + kMarker.size());
  if (region.empty() || !std::all_of(region.begin(), region.end(), [](char c) {
        return absl::ascii_islower(static_cast<unsigned char>(c)) ||
               absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-';
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host \"", absl::CHexEscape(host.substr(0, 256)),
        "\" has no valid region between .lambda-url. and .on.aws"));
  }
  return std::string(region);
}

absl::StatusOr<SigningResult> SignFunctionUrlRequest(
    const HttpRequestView& request, const Credentials& credentials,
    absl::Time time, absl::string_view region) {
  SigningParams params;
  params.service = "lambda";
  params.time = time;
  if (!region.empty()) {
    params.region = std::string(region);
  } else {
    std::vector<absl::string_view> hosts = FindHeaders(request.headers, "host");
    if (hosts.empty()) {
      return absl::InvalidArgumentError("sigv4: request has no Host header");
    }
    absl::StatusOr<std::string> derived = RegionFromFunctionUrlHost(hosts[0]);
    if (!derived.ok()) return derived.status();
    params.region = *std::move(derived);
  }
  return SignRequest(request, credentials, params);
}

}  // namespace sigv4
}  // namespace fleetcanary
