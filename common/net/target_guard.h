// Target guard against server-side request forgery. Agents fetch URLs that
// come from configuration and from the admin API; the guard makes sure those
// fetches only reach canary endpoints.
//
// Two checks, both required:
//   1. CheckUrl, before a probe starts: the URL's scheme is http(s) and its
//      host matches the allowlist (default `*.lambda-url.*.on.aws`, the
//      Function URL hosts of every partition, China included, plus the hosts
//      of the configured targets).
//   2. CheckAddress, on the socket address actually being connected (after DNS
//      resolution, from libcurl's open-socket callback): loopback, private,
//      link-local (169.254.169.254 metadata among them), CGNAT, unspecified and
//      multicast addresses are refused unless explicitly allowed. A name that
//      passes check 1 but resolves (or re-resolves, DNS rebinding) to such an
//      address is refused here, before any connection is made.
//
// Thread-safety: immutable after Create(); all methods are const and
// thread-safe.
#ifndef FLEETCANARY_COMMON_NET_TARGET_GUARD_H_
#define FLEETCANARY_COMMON_NET_TARGET_GUARD_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fleetcanary {

struct TargetGuardOptions {
  // Host patterns; `*` matches one whole DNS label. Matching ignores case.
  // Default: Function URL hosts, `<id>.lambda-url.<region>.on.aws` in every
  // partition (aws, aws-us-gov and aws-cn alike).
  std::vector<std::string> host_patterns = {"*.lambda-url.*.on.aws"};
  // Exact hosts (names or IP literals) also allowed, e.g. those the fleet
  // file names.
  std::vector<std::string> allowed_hosts;
  // Networks in CIDR form ("127.0.0.0/8", "fd00::/8") always allowed, even
  // when in a refused range.
  std::vector<std::string> allowed_networks;
  // Range switches (all off by default; the local demo turns loopback on).
  bool allow_loopback = false;
  bool allow_private = false;
  bool allow_link_local = false;
};

class TargetGuard {
 public:
  // INVALID_ARGUMENT naming the bad pattern or network.
  static absl::StatusOr<std::unique_ptr<TargetGuard>> Create(
      TargetGuardOptions options);

  // A guard that allows everything (for `canaryctl probe --direct`, where
  // the person at the keyboard chooses the URL). Never used by agents.
  static std::unique_ptr<TargetGuard> AllowAll();

  // OK, or PERMISSION_DENIED saying why ("host x is not in the target
  // allowlist"), or INVALID_ARGUMENT for an unparsable URL.
  absl::Status CheckUrl(absl::string_view url) const;

  // OK, or PERMISSION_DENIED naming the address and its range
  // ("169.254.169.254 is link-local (cloud metadata)").
  absl::Status CheckAddress(const struct sockaddr* address,
                            socklen_t length) const;
  // Same for a textual IP address.
  absl::Status CheckAddressText(absl::string_view ip) const;
  // The address check a URL can get before any DNS lookup: on its host when
  // that is an IP literal ("localhost" and *.localhost count as 127.0.0.1);
  // OK for other names, which CheckAddress judges when they are connected
  // to. INVALID_ARGUMENT for an unparsable URL.
  absl::Status CheckUrlAddress(absl::string_view url) const;

 private:
  // An IP network; IPv4 is held as IPv4-mapped IPv6.
  struct Network {
    std::array<uint8_t, 16> prefix{};
    int bits = 0;
  };
  TargetGuard() = default;

  bool allow_all_ = false;
  TargetGuardOptions options_;
  std::vector<Network> networks_;
};

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_NET_TARGET_GUARD_H_
