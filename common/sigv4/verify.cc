// Verification of signed requests: parsing the Authorization header and
// recomputing the signature from what arrived.
#include <openssl/crypto.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/sigv4/sigv4.h"
#include "common/sigv4/sigv4_internal.h"

namespace fleetcanary {
namespace sigv4 {
namespace {

using internal::FindHeaders;
using internal::HexValue;
using internal::kTerminator;
using internal::SignatureHex;

absl::Status Denied(absl::string_view reason) {
  return absl::PermissionDeniedError(absl::StrCat("sigv4: ", reason));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Checks the credential scope and the signing time against `options` and
// that Host and X-Amz-Date are signed. PERMISSION_DENIED says which failed.
absl::Status CheckScope(const ParsedAuthorization& parsed,
                        absl::string_view amz_date, absl::Time signed_at,
                        const VerifyOptions& options) {
  if (amz_date.substr(0, 8) != parsed.date) {
    return Denied("credential scope date differs from X-Amz-Date");
  }
  if (parsed.region != options.region) {
    return Denied(absl::StrCat("credential scope region \"", parsed.region,
                               "\" is not \"", options.region, "\""));
  }
  if (parsed.service != options.service) {
    return Denied(absl::StrCat("credential scope service \"", parsed.service,
                               "\" is not \"", options.service, "\""));
  }
  if (absl::AbsDuration(options.now - signed_at) > options.max_skew) {
    return Denied(absl::StrCat("X-Amz-Date ", amz_date, " is more than ",
                               absl::FormatDuration(options.max_skew),
                               " from the server time ",
                               FormatAmzDate(options.now)));
  }
  const std::vector<std::string>& signed_headers = parsed.signed_headers;
  for (absl::string_view required : {"host", "x-amz-date"}) {
    if (std::find(signed_headers.begin(), signed_headers.end(), required) ==
        signed_headers.end()) {
      return Denied(absl::StrCat("header \"", required, "\" is not signed"));
    }
  }
  return absl::OkStatus();
}

// The payload hash the signature must cover: the body's (or the caller's
// precomputed one), or UNSIGNED-PAYLOAD when the request says so and
// `options` allows it. PERMISSION_DENIED when X-Amz-Content-Sha256 is
// repeated or does not match the body.
absl::StatusOr<std::string> PayloadHashToVerify(const HttpRequestView& request,
                                                const VerifyOptions& options) {
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
  return payload_hash;
}

}  // namespace

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
  if (absl::Status s = CheckScope(*parsed, dates[0], *signed_at, options);
      !s.ok()) {
    return s;
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

  absl::StatusOr<std::string> payload_hash =
      PayloadHashToVerify(request, options);
  if (!payload_hash.ok()) return payload_hash.status();
  absl::StatusOr<std::string> canonical = CanonicalRequest(
      request, options.service, parsed->signed_headers, *payload_hash);
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
