#include "emulator/function/canary_model.h"

#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

constexpr char kPath[] = "/canary";
constexpr uint64_t kMaxSeed = ~uint64_t{0};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Length in bytes of the valid UTF-8 sequence starting at s[i], or 0.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t min = 0;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// Invalid UTF-8 bytes become U+FFFD, as a UTF-8 decoder with replacement.
std::string ReplaceInvalidUtf8(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

// The first `units` UTF-16 code units of valid UTF-8 `s` (JavaScript's
// String.prototype.slice(0, units)); a pair is never split.
std::string SliceUtf16(absl::string_view s, size_t units) {
  size_t i = 0, used = 0;
  while (i < s.size()) {
    const size_t n = Utf8SequenceLength(s, i);
    const size_t cost = n == 4 ? 2 : 1;
    if (used + cost > units) break;
    used += cost;
    i += n == 0 ? 1 : n;
  }
  return std::string(s.substr(0, i));
}

using Params = std::map<std::string, std::vector<std::string>>;

Params ParseParams(absl::string_view raw_query) {
  Params out;
  for (absl::string_view pair : absl::StrSplit(raw_query, '&')) {
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const absl::string_view name = pair.substr(0, eq);
    const absl::string_view value = eq == absl::string_view::npos
                                        ? absl::string_view()
                                        : pair.substr(eq + 1);
    out[ReplaceInvalidUtf8(DecodeFormComponent(name))].push_back(
        ReplaceInvalidUtf8(DecodeFormComponent(value)));
  }
  return out;
}

struct IntResult {
  uint64_t value = 0;
  std::string error;
};

// canary.mjs parseInteger: `def` when absent and not required.
IntResult ParseInteger(const Params& params, const std::string& name,
                       bool required, uint64_t def, uint64_t min,
                       uint64_t max) {
  auto it = params.find(name);
  if (it == params.end()) {
    if (required) {
      return {0, absl::StrCat("missing query parameter \"", name, "\"")};
    }
    return {def, ""};
  }
  if (it->second.size() > 1) {
    return {
        0, absl::StrCat("query parameter \"", name, "\" given more than once")};
  }
  const std::string& raw = it->second[0];
  bool decimal = !raw.empty() && raw.size() <= 20;
  for (char c : raw) decimal = decimal && absl::ascii_isdigit(c);
  if (!decimal) {
    return {0, absl::StrCat("query parameter \"", name,
                            "\" must be a decimal integer, got \"",
                            SliceUtf16(raw, 32), "\"")};
  }
  uint64_t value = 0;
  // Up to 20 digits: above 2^64 - 1 is out of every range.
  const bool fits = absl::SimpleAtoi(raw, &value);
  if (!fits || value < min || value > max) {
    return {0, absl::StrCat("query parameter \"", name, "\" must be in [", min,
                            ", ", max, "], got ", raw)};
  }
  return {value, ""};
}

CanaryAdmission Error(int status, const std::string& message,
                      bool allow_get = false) {
  CanaryAdmission a;
  a.status = status;
  a.headers = {{"content-type", "application/json"},
               {"cache-control", "no-store"}};
  if (allow_get) a.headers.emplace_back("allow", "GET");
  a.body = nlohmann::json{{"error", message}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  return a;
}

}  // namespace

std::string DecodeFormComponent(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

CanaryLimits CanaryLimitsFromConfig(const v1::EmulatorCanaryLimits& config) {
  CanaryLimits l;
  if (config.max_bytes() > 0) {
    l.max_bytes_buffered = config.max_bytes();
    l.max_bytes_stream = config.max_bytes();
  }
  if (config.max_chunk() > 0) l.max_chunk = config.max_chunk();
  if (config.max_gap_ms() > 0) l.max_gap_ms = config.max_gap_ms();
  if (config.max_total_gap_ms() > 0) {
    l.max_total_gap_ms = config.max_total_gap_ms();
  }
  return l;
}

CanaryAdmission AdmitCanaryRequest(absl::string_view method,
                                   absl::string_view path,
                                   absl::string_view raw_query,
                                   const std::string* probe_id,
                                   v1::InvokeMode mode,
                                   const CanaryLimits& limits) {
  if (path != kPath) {
    return Error(404, absl::StrCat("no such path; use GET ", kPath,
                                   "?bytes=N&chunk=C&gap_ms=G&seed=S"));
  }
  if (method != "GET") {
    return Error(405, absl::StrCat("method ", method, " not allowed; use GET"),
                 true);
  }
  if (probe_id != nullptr) {
    bool ok =
        !probe_id->empty() && probe_id->size() <= limits.max_probe_id_length;
    for (char c : *probe_id) ok = ok && c >= 0x21 && c <= 0x7e;
    if (!ok) {
      return Error(400, absl::StrCat("header x-canary-probe-id must be 1-",
                                     limits.max_probe_id_length,
                                     " visible ASCII characters"));
    }
  }
  const Params params = ParseParams(raw_query);
  const bool stream = mode == v1::RESPONSE_STREAM;
  const uint64_t max_bytes =
      stream ? limits.max_bytes_stream : limits.max_bytes_buffered;
  CanaryAdmission a;
  IntResult r = ParseInteger(params, "bytes", true, 0, 0, max_bytes);
  if (!r.error.empty()) return Error(400, r.error);
  a.request.bytes = r.value;
  r = ParseInteger(params, "chunk", false, limits.max_chunk, 1,
                   limits.max_chunk);
  if (!r.error.empty()) return Error(400, r.error);
  a.request.chunk = r.value;
  r = ParseInteger(params, "gap_ms", false, 0, 0, limits.max_gap_ms);
  if (!r.error.empty()) return Error(400, r.error);
  a.request.gap_ms = r.value;
  r = ParseInteger(params, "seed", false, 0, 0, kMaxSeed);
  if (!r.error.empty()) return Error(400, r.error);
  a.request.seed = r.value;
  if (stream) {
    const uint64_t writes =
        (a.request.bytes + a.request.chunk - 1) / a.request.chunk;
    const uint64_t gaps = writes > 0 ? writes - 1 : 0;
    if (gaps * a.request.gap_ms > limits.max_total_gap_ms) {
      return Error(
          400, absl::StrCat("bytes/chunk*gap_ms asks for ",
                            gaps * a.request.gap_ms, " ms of gaps; at most ",
                            limits.max_total_gap_ms, " ms"));
    }
  }
  a.headers = {{"content-type", "application/octet-stream"},
               {"cache-control", "no-store"},
               {"x-canary-bytes", absl::StrCat(a.request.bytes)},
               {"x-canary-seed", absl::StrCat(a.request.seed)},
               {"x-canary-mode", stream ? "stream" : "buffered"}};
  if (probe_id != nullptr)
    a.headers.emplace_back("x-canary-probe-id", *probe_id);
  return a;
}

}  // namespace emulator
}  // namespace fleetcanary
