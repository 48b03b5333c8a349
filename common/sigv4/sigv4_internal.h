// Helpers shared by the SigV4 signer (sigv4.cc), the canonical request
// builder (canonical_request.cc) and the verifier (verify.cc). Internal to
// the sigv4 library; sigv4.h is the public interface.
//
// Thread-safety: every function is thread-safe (no shared state).
#ifndef FLEETCANARY_COMMON_SIGV4_SIGV4_INTERNAL_H_
#define FLEETCANARY_COMMON_SIGV4_SIGV4_INTERNAL_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/sigv4/sigv4.h"

namespace fleetcanary {
namespace sigv4 {
namespace internal {

// Last element of every credential scope.
inline constexpr char kTerminator[] = "aws4_request";

// 0..15 for a hex digit (either case), -1 for anything else.
int HexValue(char c);

// Lower-case hex of raw bytes.
std::string ToHex(absl::string_view raw);

// True when header `name` equals `lower` (a lower-case name), ignoring case.
bool HeaderNameIs(absl::string_view name, absl::string_view lower);

// Values of every header named `lower` (case-insensitive), in order. The
// views point into `headers`.
std::vector<absl::string_view> FindHeaders(absl::Span<const HeaderView> headers,
                                           absl::string_view lower);

// Lower-case hex signature of `string_to_sign` with the key derived from
// `secret` for the scope date/region/service.
std::string SignatureHex(absl::string_view secret, absl::string_view date,
                         absl::string_view region, absl::string_view service,
                         absl::string_view string_to_sign);

}  // namespace internal
}  // namespace sigv4
}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_SIGV4_SIGV4_INTERNAL_H_
