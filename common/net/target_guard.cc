#include "common/net/target_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fleetcanary {

namespace {

using Bytes = std::array<uint8_t, 16>;

Bytes MapV4(const uint8_t v4[4]) {
  Bytes b{};
  b[10] = 0xff;
  b[11] = 0xff;
  std::memcpy(&b[12], v4, 4);
  return b;
}

bool ParseIp(absl::string_view text, Bytes* out) {
  std::string s(text);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') {
    s = s.substr(1, s.size() - 2);
  }
  uint8_t v4[4];
  if (inet_pton(AF_INET, s.c_str(), v4) == 1) {
    *out = MapV4(v4);
    return true;
  }
  return inet_pton(AF_INET6, s.c_str(), out->data()) == 1;
}

bool InNetwork(const Bytes& addr, const Bytes& prefix, int bits) {
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((addr[i] & mask) != (prefix[i] & mask)) return false;
  }
  return true;
}

bool ParseCidr(absl::string_view text, Bytes* prefix, int* bits) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits('/', 1));
  if (!ParseIp(parts.first, prefix)) return false;
  bool v4 = (*prefix)[10] == 0xff && (*prefix)[11] == 0xff &&
            std::all_of(prefix->begin(), prefix->begin() + 10,
                        [](uint8_t b) { return b == 0; });
  int max = v4 ? 32 : 128;
  int n = max;
  if (!parts.second.empty() &&
      (!absl::SimpleAtoi(parts.second, &n) || n < 0 || n > max)) {
    return false;
  }
  *bits = v4 ? n + 96 : n;
  return true;
}

struct Range {
  const char* cidr;
  enum Kind { kLoopback, kPrivate, kLinkLocal, kAlways } kind;
  const char* name;
};

// Ranges refused unless allowed. IPv4 ranges also cover their IPv4-mapped
// IPv6 forms, since every address is compared in mapped form.
constexpr Range kRanges[] = {
    {"169.254.169.254/32", Range::kLinkLocal, "link-local (cloud metadata)"},
    {"fd00:ec2::254/128", Range::kLinkLocal, "cloud metadata"},
    {"127.0.0.0/8", Range::kLoopback, "loopback"},
    {"::1/128", Range::kLoopback, "loopback"},
    {"10.0.0.0/8", Range::kPrivate, "private"},
    {"172.16.0.0/12", Range::kPrivate, "private"},
    {"192.168.0.0/16", Range::kPrivate, "private"},
    {"100.64.0.0/10", Range::kPrivate, "carrier-grade NAT"},
    {"fc00::/7", Range::kPrivate, "unique local"},
    {"169.254.0.0/16", Range::kLinkLocal, "link-local"},
    {"fe80::/10", Range::kLinkLocal, "link-local"},
    {"0.0.0.0/8", Range::kAlways, "unspecified"},
    {"::/128", Range::kAlways, "unspecified"},
    {"224.0.0.0/4", Range::kAlways, "multicast"},
    {"ff00::/8", Range::kAlways, "multicast"},
    {"255.255.255.255/32", Range::kAlways, "broadcast"},
};

std::string FormatIp(const Bytes& b) {
  char buf[INET6_ADDRSTRLEN];
  bool v4 =
      b[10] == 0xff && b[11] == 0xff &&
      std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; });
  if (v4) {
    inet_ntop(AF_INET, &b[12], buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, b.data(), buf, sizeof(buf));
  }
  return buf;
}

// `*` matches exactly one non-empty label.
bool MatchHost(absl::string_view pattern, absl::string_view host) {
  std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  std::vector<absl::string_view> h = absl::StrSplit(host, '.');
  if (p.size() != h.size()) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == "*") {
      if (h[i].empty()) return false;
      continue;
    }
    if (!absl::EqualsIgnoreCase(p[i], h[i])) return false;
  }
  return true;
}

// Extracts the host of an http(s) URL: scheme://[userinfo@]host[:port]/...
absl::StatusOr<std::string> UrlHost(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "https://") &&
      !absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", url, "\" must start with https:// or http://"));
  }
  size_t end = rest.find_first_of("/?#");
  absl::string_view authority = rest.substr(0, end);
  if (authority.find('@') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", url, "\" must not carry user information"));
  }
  absl::string_view host = authority;
  if (absl::StartsWith(host, "[")) {
    size_t close = host.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("URL \"", url, "\": bad IPv6 host"));
    }
    host = host.substr(1, close - 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", url, "\" has no host"));
  }
  return absl::AsciiStrToLower(host);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TargetGuard>> TargetGuard::Create(
    TargetGuardOptions options) {
  std::unique_ptr<TargetGuard> guard(new TargetGuard());
  for (const std::string& pattern : options.host_patterns) {
    if (pattern.empty() || pattern.find("**") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("host_patterns: invalid pattern \"", pattern, "\""));
    }
  }
  for (const std::string& cidr : options.allowed_networks) {
    Network n;
    if (!ParseCidr(cidr, &n.prefix, &n.bits)) {
      return absl::InvalidArgumentError(
          absl::StrCat("allowed_networks: invalid CIDR \"", cidr, "\""));
    }
    guard->networks_.push_back(n);
  }
  for (std::string& host : options.allowed_hosts) {
    absl::AsciiStrToLower(&host);
  }
  guard->options_ = std::move(options);
  return guard;
}

std::unique_ptr<TargetGuard> TargetGuard::AllowAll() {
  std::unique_ptr<TargetGuard> guard(new TargetGuard());
  guard->allow_all_ = true;
  return guard;
}

absl::Status TargetGuard::CheckUrl(absl::string_view url) const {
  absl::StatusOr<std::string> host = UrlHost(url);
  if (!host.ok()) return host.status();
  if (allow_all_) return absl::OkStatus();
  for (const std::string& allowed : options_.allowed_hosts) {
    if (*host == allowed) return absl::OkStatus();
  }
  for (const std::string& pattern : options_.host_patterns) {
    if (MatchHost(pattern, *host)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "target guard: host ", *host, " is not in the target allowlist"));
}

absl::Status TargetGuard::CheckUrlAddress(absl::string_view url) const {
  absl::StatusOr<std::string> host = UrlHost(url);
  if (!host.ok()) return host.status();
  if (*host == "localhost" || absl::EndsWith(*host, ".localhost")) {
    absl::Status s = CheckAddressText("127.0.0.1");
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat(*host, " (", s.message(), ")"));
  }
  Bytes addr;
  if (!ParseIp(*host, &addr)) return absl::OkStatus();
  return CheckAddressText(*host);
}

absl::Status TargetGuard::CheckAddressText(absl::string_view ip) const {
  Bytes addr;
  if (!ParseIp(ip, &addr)) {
    return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
  }
  if (allow_all_) return absl::OkStatus();
  for (const Network& n : networks_) {
    if (InNetwork(addr, n.prefix, n.bits)) return absl::OkStatus();
  }
  for (const Range& range : kRanges) {
    Bytes prefix;
    int bits = 0;
    ParseCidr(range.cidr, &prefix, &bits);
    if (!InNetwork(addr, prefix, bits)) continue;
    bool allowed = false;
    switch (range.kind) {
      case Range::kLoopback:
        allowed = options_.allow_loopback;
        break;
      case Range::kPrivate:
        allowed = options_.allow_private;
        break;
      case Range::kLinkLocal:
        allowed = options_.allow_link_local;
        break;
      case Range::kAlways:
        allowed = false;
        break;
    }
    if (allowed) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("target guard: address ", FormatIp(addr), " is ",
                     range.name, " and not allowed"));
  }
  return absl::OkStatus();
}

absl::Status TargetGuard::CheckAddress(const struct sockaddr* address,
                                       socklen_t length) const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr,
              buf, sizeof(buf));
  } else if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, buf,
              sizeof(buf));
  } else {
    if (allow_all_) return absl::OkStatus();
    return absl::PermissionDeniedError(
        "target guard: only IPv4 and IPv6 connections are allowed");
  }
  return CheckAddressText(buf);
}

}  // namespace fleetcanary
