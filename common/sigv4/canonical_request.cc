// The canonical forms of SigV4: hashing, URI encoding, dates, the canonical
// request and the string to sign.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/sigv4/sigv4.h"
#include "common/sigv4/sigv4_internal.h"

namespace fleetcanary {
namespace sigv4 {
namespace {

using internal::HexValue;
using internal::ToHex;

constexpr char kAmzDateFormat[] = "%Y%m%dT%H%M%SZ";
// absl's %Y is greedy when parsing; %E4Y reads exactly four digits.
constexpr char kAmzDateParseFormat[] = "%E4Y%m%dT%H%M%SZ";

bool IsUnreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
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

}  // namespace

namespace internal {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string ToHex(absl::string_view raw) { return absl::BytesToHexString(raw); }

}  // namespace internal

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

}  // namespace sigv4
}  // namespace fleetcanary
