#include "common/sigv4/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fleetcanary {
namespace sigv4 {
namespace {

constexpr char kAmzDateFormat[] = "%Y%m%dT%H%M%SZ";
// absl's %Y is greedy when parsing; %E4Y reads exactly four digits.
constexpr char kAmzDateParseFormat[] = "%E4Y%m%dT%H%M%SZ";
constexpr char kTerminator[] = "aws4_request";

bool IsUnreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes; leaves malformed escapes (and "+") as they are.
std::string PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 &&
        HexValue(in[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// Trims and collapses runs of spaces and tabs into one space.
std::string NormalizeHeaderValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool in_space = false;
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out.push_back(' ');
    in_space = false;
    out.push_back(c);
  }
  return out;
}

void SplitTarget(absl::string_view target, absl::string_view* path,
                 absl::string_view* query) {
  size_t q = target.find('?');
  if (q == absl::string_view::npos) {
    *path = target;
    *query = absl::string_view();
  } else {
    *path = target.substr(0, q);
    *query = target.substr(q + 1);
  }
}

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

std::string ToHex(absl::string_view raw) { return absl::BytesToHexString(raw); }

std::string SignatureHex(absl::string_view secret, absl::string_view date,
                         absl::string_view region, absl::string_view service,
                         absl::string_view string_to_sign) {
  return ToHex(HmacSha256(DeriveSigningKey(secret, date, region, service),
                          string_to_sign));
}

absl::Status Denied(absl::string_view reason) {
  return absl::PermissionDeniedError(absl::StrCat("sigv4: ", reason));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

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

}  // namespace

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

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return ToHex(absl::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
       &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string UriEncode(absl::string_view in, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() * 3);
  for (char ch : in) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::string FormatAmzDate(absl::Time t) {
  return absl::FormatTime(kAmzDateFormat, t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> ParseAmzDate(absl::string_view value) {
  absl::Time t;
  std::string err;
  if (value.size() != 16 || !absl::ParseTime(kAmzDateParseFormat, value,
                                             absl::UTCTimeZone(), &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat("X-Amz-Date: not YYYYMMDDTHHMMSSZ: \"",
                     absl::CHexEscape(value.substr(0, 32)), "\""));
  }
  return t;
}

std::string CanonicalUri(absl::string_view path, absl::string_view service) {
  if (path.empty()) return "/";
  if (service == "s3") return UriEncode(PercentDecode(path), true);
  // Remove "." and ".." segments and empty segments (repeated slashes).
  std::vector<absl::string_view> segments;
  for (absl::string_view seg : absl::StrSplit(path, '/')) {
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      continue;
    }
    segments.push_back(seg);
  }
  std::string normalized = absl::StrCat("/", absl::StrJoin(segments, "/"));
  if (absl::EndsWith(path, "/") && normalized != "/") normalized += "/";
  return UriEncode(normalized, true);
}

std::string CanonicalQuery(absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  for (absl::string_view part : absl::StrSplit(query, '&')) {
    if (part.empty()) continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    params.emplace_back(UriEncode(PercentDecode(kv.first), false),
                        UriEncode(PercentDecode(kv.second), false));
  }
  std::sort(params.begin(), params.end());
  return absl::StrJoin(params, "&", absl::PairFormatter("="));
}

absl::StatusOr<std::string> CanonicalRequest(
    const HttpRequestView& request, absl::string_view service,
    absl::Span<const std::string> signed_headers,
    absl::string_view payload_sha256_hex) {
  // Lower-case name -> normalised values in order of appearance.
  std::map<std::string, std::vector<std::string>> by_name;
  for (const HeaderView& h : request.headers) {
    by_name[absl::AsciiStrToLower(h.name)].push_back(
        NormalizeHeaderValue(h.value));
  }
  std::vector<std::string> names;
  if (signed_headers.empty()) {
    for (const auto& entry : by_name) names.push_back(entry.first);
  } else {
    names.assign(signed_headers.begin(), signed_headers.end());
  }
  std::string canonical_headers;
  for (const std::string& name : names) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("signed header \"", name, "\" is not in the request"));
    }
    absl::StrAppend(&canonical_headers, name, ":",
                    absl::StrJoin(it->second, ","), "\n");
  }
  absl::string_view path, query;
  SplitTarget(request.target, &path, &query);
  return absl::StrCat(request.method, "\n", CanonicalUri(path, service), "\n",
                      CanonicalQuery(query), "\n", canonical_headers, "\n",
                      absl::StrJoin(names, ";"), "\n", payload_sha256_hex);
}

std::string StringToSign(absl::string_view amz_date, absl::string_view scope,
                         absl::string_view canonical_request) {
  return absl::StrCat(kAlgorithm, "\n", amz_date, "\n", scope, "\n",
                      Sha256Hex(canonical_request));
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

  const std::string amz_date = FormatAmzDate(params.time);
  const std::string date = amz_date.substr(0, 8);
  const std::string payload_hash =
      request.payload_sha256_hex.empty()
          ? Sha256Hex(request.body)
          : std::string(request.payload_sha256_hex);
  const bool has_token = !credentials.session_token.empty();

  // The headers as they will be sent, minus the ones the signer owns.
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

  // Signed: every header present except the ones the caller excludes.
  std::vector<std::string> names;
  for (const HeaderView& h : headers) {
    std::string name = absl::AsciiStrToLower(h.name);
    bool excluded = std::any_of(
        params.unsigned_headers.begin(), params.unsigned_headers.end(),
        [&](const std::string& u) { return absl::EqualsIgnoreCase(u, name); });
    if (!excluded) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());

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

absl::StatusOr<ParsedAuthorization> ParseAuthorization(
    absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (!absl::ConsumePrefix(&value, kAlgorithm) || value.empty() ||
      value[0] != ' ') {
    return absl::InvalidArgumentError(
        absl::StrCat("Authorization: algorithm is not ", kAlgorithm));
  }
  ParsedAuthorization out;
  bool have_credential = false, have_signed = false, have_signature = false;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.first == "Credential") {
      std::vector<absl::string_view> scope = absl::StrSplit(kv.second, '/');
      if (scope.size() != 5 || scope[0].empty() || scope[1].size() != 8 ||
          !std::all_of(scope[1].begin(), scope[1].end(),
                       [](char c) {
                         return absl::ascii_isdigit(
                             static_cast<unsigned char>(c));
                       }) ||
          scope[2].empty() || scope[3].empty() || scope[4] != kTerminator) {
        return absl::InvalidArgumentError(
            "Authorization: Credential is not "
            "<key id>/<YYYYMMDD>/<region>/<service>/aws4_request");
      }
      out.access_key_id = std::string(scope[0]);
      out.date = std::string(scope[1]);
      out.region = std::string(scope[2]);
      out.service = std::string(scope[3]);
      out.scope = absl::StrJoin(scope.begin() + 1, scope.end(), "/");
      have_credential = true;
    } else if (kv.first == "SignedHeaders") {
      for (absl::string_view name : absl::StrSplit(kv.second, ';')) {
        if (name.empty()) {
          return absl::InvalidArgumentError(
              "Authorization: SignedHeaders has an empty name");
        }
        out.signed_headers.push_back(absl::AsciiStrToLower(name));
      }
      have_signed = true;
    } else if (kv.first == "Signature") {
      if (kv.second.size() != 64 ||
          !std::all_of(kv.second.begin(), kv.second.end(),
                       [](char c) { return HexValue(c) >= 0; })) {
        return absl::InvalidArgumentError(
            "Authorization: Signature is not 64 hex digits");
      }
      out.signature = absl::AsciiStrToLower(kv.second);
      have_signature = true;
    }
  }
  if (!have_credential) {
    return absl::InvalidArgumentError("Authorization: missing Credential");
  }
  if (!have_signed) {
    return absl::InvalidArgumentError("Authorization: missing SignedHeaders");
  }
  if (!have_signature) {
    return absl::InvalidArgumentError("Authorization: missing Signature");
  }
  return out;
}

absl::Status VerifyRequest(const HttpRequestView& request,
                           const CredentialsLookup& lookup,
                           const VerifyOptions& options) {
  std::vector<absl::string_view> auth =
      FindHeaders(request.headers, "authorization");
  if (auth.empty()) return Denied("missing Authorization header");
  if (auth.size() > 1) return Denied("more than one Authorization header");
  absl::StatusOr<ParsedAuthorization> parsed = ParseAuthorization(auth[0]);
  if (!parsed.ok()) return Denied(parsed.status().message());

  std::vector<absl::string_view> dates =
      FindHeaders(request.headers, "x-amz-date");
  if (dates.size() != 1) return Denied("need exactly one X-Amz-Date header");
  absl::StatusOr<absl::Time> signed_at = ParseAmzDate(dates[0]);
  if (!signed_at.ok()) return Denied(signed_at.status().message());
  if (dates[0].substr(0, 8) != parsed->date) {
    return Denied("credential scope date differs from X-Amz-Date");
  }
  if (parsed->region != options.region) {
    return Denied(absl::StrCat("credential scope region \"", parsed->region,
                               "\" is not \"", options.region, "\""));
  }
  if (parsed->service != options.service) {
    return Denied(absl::StrCat("credential scope service \"", parsed->service,
                               "\" is not \"", options.service, "\""));
  }
  if (absl::AbsDuration(options.now - *signed_at) > options.max_skew) {
    return Denied(absl::StrCat("X-Amz-Date ", dates[0], " is more than ",
                               absl::FormatDuration(options.max_skew),
                               " from the server time ",
                               FormatAmzDate(options.now)));
  }
  const std::vector<std::string>& signed_headers = parsed->signed_headers;
  for (absl::string_view required : {"host", "x-amz-date"}) {
    if (std::find(signed_headers.begin(), signed_headers.end(), required) ==
        signed_headers.end()) {
      return Denied(absl::StrCat("header \"", required, "\" is not signed"));
    }
  }

  absl::StatusOr<Credentials> creds = lookup(parsed->access_key_id);
  if (absl::IsNotFound(creds.status())) {
    return Denied("unknown access key id");
  }
  if (!creds.ok()) return creds.status();
  if (!creds->session_token.empty()) {
    std::vector<absl::string_view> tokens =
        FindHeaders(request.headers, "x-amz-security-token");
    if (tokens.size() != 1 ||
        !ConstantTimeEquals(tokens[0], creds->session_token)) {
      return Denied("missing or wrong X-Amz-Security-Token");
    }
  }

  std::string payload_hash = request.payload_sha256_hex.empty()
                                 ? Sha256Hex(request.body)
                                 : std::string(request.payload_sha256_hex);
  std::vector<absl::string_view> content_sha =
      FindHeaders(request.headers, "x-amz-content-sha256");
  if (content_sha.size() > 1) {
    return Denied("more than one X-Amz-Content-Sha256 header");
  }
  if (content_sha.size() == 1) {
    if (content_sha[0] == kUnsignedPayload && options.allow_unsigned_payload) {
      payload_hash = kUnsignedPayload;
    } else if (!absl::EqualsIgnoreCase(content_sha[0], payload_hash)) {
      return Denied("X-Amz-Content-Sha256 does not match the body received");
    }
  }

  absl::StatusOr<std::string> canonical =
      CanonicalRequest(request, options.service, signed_headers, payload_hash);
  if (!canonical.ok()) return Denied(canonical.status().message());
  std::string expected = SignatureHex(
      creds->secret_access_key, parsed->date, parsed->region, parsed->service,
      StringToSign(dates[0], parsed->scope, *canonical));
  if (!ConstantTimeEquals(expected, parsed->signature)) {
    return Denied(
        "signature does not match (check the secret key and that signed "
        "headers, path, query and body arrive unchanged)");
  }
  return absl::OkStatus();
}

absl::Status VerifyRequest(const HttpRequestView& request,
                           const Credentials& credentials,
                           absl::string_view service, absl::string_view region,
                           absl::Time now, absl::Duration max_skew) {
  VerifyOptions options;
  options.service = std::string(service);
  options.region = std::string(region);
  options.now = now;
  options.max_skew = max_skew;
  return VerifyRequest(
      request,
      [&credentials](absl::string_view id) -> absl::StatusOr<Credentials> {
        if (id != credentials.access_key_id) {
          return absl::NotFoundError("unknown access key id");
        }
        return credentials;
      },
      options);
}

}  // namespace sigv4
}  // namespace fleetcanary
