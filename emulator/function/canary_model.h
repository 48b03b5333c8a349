// The canary function as the emulator runs it: the same request admission as
// the reference function in deploy/lambda (src/index.mjs `admit`, src/
// canary.mjs `parseCanaryQuery` and `parseProbeId`), so a probe gets the
// same status, headers and error body from the emulator as from the function
// deployed on AWS (docs/function-contract.md). Every path reaches the
// function, as behind a real Function URL; the function answers 404 for any
// path but /canary.
//
// Order of checks (the reference's): path (404), method (405, `allow: GET`),
// x-canary-probe-id (400), then the query parameters bytes, chunk, gap_ms,
// seed in that order (400 naming the first bad one), then, streaming only,
// the total of the gaps (400). Query parameters are decoded as the WHATWG
// URLSearchParams does ('+' is a space, %XX escapes, invalid UTF-8 replaced).
// Error bodies are {"error":"<message>"} with the reference's messages.
//
// Thread-safety: pure functions.
#ifndef FLEETCANARY_EMULATOR_FUNCTION_CANARY_MODEL_H_
#define FLEETCANARY_EMULATOR_FUNCTION_CANARY_MODEL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "fleetcanary/v1/outcome.pb.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

// The reference function's limits (canary.mjs DEFAULT_LIMITS; on AWS the
// CANARY_MAX_* environment variables change them).
struct CanaryLimits {
  uint64_t max_bytes_buffered = 4 * 1024 * 1024;
  uint64_t max_bytes_stream = 64 * 1024 * 1024;
  uint64_t max_chunk = 1024 * 1024;
  uint64_t max_gap_ms = 10000;
  uint64_t max_total_gap_ms = 60000;
  uint64_t max_probe_id_length = 128;
};

// `config` over the defaults: each non-zero field replaces its default
// (max_bytes, like CANARY_MAX_BYTES, sets both modes' byte limits).
CanaryLimits CanaryLimitsFromConfig(const v1::EmulatorCanaryLimits& config);

struct CanaryRequest {
  uint64_t bytes = 0;
  uint64_t chunk = 0;
  uint64_t gap_ms = 0;
  uint64_t seed = 0;
};

// What the function answers before any body byte: either an error response
// (status != 200, with its headers and body) or 200 with the success headers
// and the parsed request.
struct CanaryAdmission {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // Error responses only.
  CanaryRequest request;
};

// Admits one request. `probe_id` is the x-canary-probe-id header's value, or
// nullptr when the header is absent.
CanaryAdmission AdmitCanaryRequest(absl::string_view method,
                                   absl::string_view path,
                                   absl::string_view raw_query,
                                   const std::string* probe_id,
                                   v1::InvokeMode mode,
                                   const CanaryLimits& limits);

// URLSearchParams decoding of one name or value: '+' -> ' ', %XX -> byte
// (malformed escapes kept as they are).
std::string DecodeFormComponent(absl::string_view s);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_FUNCTION_CANARY_MODEL_H_
