// The canary function contract's body (docs/function-contract.md, "Body"):
// exactly N bytes of a deterministic, seekable pseudo-random
// stream derived from a seed S. Word i (bytes 8i..8i+7) is the little-endian
// encoding of SplitMix64(S + i). Any byte can be produced or checked from its
// offset alone, so bodies are generated and verified incrementally, in any
// chunking, without buffering.
//
// The same stream is implemented by the emulator (C++, this file) and the
// reference Lambda function (deploy/lambda, JavaScript); both are checked
// against tests/testdata/payload_conformance.json.
//
// Thread-safety: PayloadVerifier is not thread-safe; the free functions are.
#ifndef FLEETCANARY_COMMON_PAYLOAD_PAYLOAD_H_
#define FLEETCANARY_COMMON_PAYLOAD_PAYLOAD_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace fleetcanary {

// The SplitMix64 finaliser applied to x (Steele, Lea, Flood 2014).
uint64_t SplitMix64(uint64_t x);

// Writes body bytes [offset, offset + size) for `seed` into `out`.
void FillPayload(uint64_t seed, uint64_t offset, char* out, size_t size);

// Convenience: the whole body of `size` bytes (tests, small bodies).
std::string MakePayload(uint64_t seed, size_t size);

// Lower-case hex SHA-256 of the first `size` bytes of the stream, computed in
// bounded memory.
std::string PayloadSha256Hex(uint64_t seed, uint64_t size);

// Checks a body as it arrives.
//
// Example:
//   PayloadVerifier v(seed, declared_bytes);
//   for (chunk : body) v.Update(chunk);     // stops checking after first error
//   v.Finish();
//   if (v.result() != PayloadVerifier::kOk) ... v.first_bad_offset() ...
class PayloadVerifier {
 public:
  enum Result {
    kOk,         // Every byte right and exactly `expected_size` of them.
    kPending,    // Right so far; Finish() not called yet.
    kWrongByte,  // A byte differs at first_bad_offset().
    kShort,  // Finish() before expected_size bytes (first_bad_offset = end).
    kExtra,  // More than expected_size bytes (first_bad_offset = expected).
  };

  PayloadVerifier(uint64_t seed, uint64_t expected_size);

  // Feeds the next bytes of the body. Cheap once a mismatch was found.
  void Update(absl::string_view data);
  // Declares the end of the body; turns kPending into kOk or kShort.
  void Finish();

  Result result() const { return result_; }
  // Offset of the first wrong byte, of the missing tail, or of the first
  // extra byte; -1 while nothing is wrong.
  int64_t first_bad_offset() const { return first_bad_offset_; }
  uint64_t received() const { return received_; }
  uint64_t expected_size() const { return expected_size_; }

 private:
  uint64_t seed_;
  uint64_t expected_size_;
  uint64_t received_ = 0;
  Result result_ = kPending;
  int64_t first_bad_offset_ = -1;
};

const char* PayloadResultName(PayloadVerifier::Result result);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_PAYLOAD_PAYLOAD_H_
