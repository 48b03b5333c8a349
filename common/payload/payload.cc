#include "common/payload/payload.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/escaping.h"

namespace fleetcanary {
namespace {

inline uint64_t Word(uint64_t seed, uint64_t index) {
  return SplitMix64(seed + index);
}

// Little-endian bytes of word `index`, regardless of host order.
inline void WordBytes(uint64_t seed, uint64_t index, unsigned char out[8]) {
  uint64_t w = Word(seed, index);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(w >> (8 * i));
}

}  // namespace

uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void FillPayload(uint64_t seed, uint64_t offset, char* out, size_t size) {
  unsigned char word[8];
  size_t done = 0;
  while (done < size) {
    uint64_t pos = offset + done;
    uint64_t index = pos / 8;
    size_t in_word = pos % 8;
    WordBytes(seed, index, word);
    size_t n = std::min<size_t>(8 - in_word, size - done);
    std::memcpy(out + done, word + in_word, n);
    done += n;
  }
}

std::string MakePayload(uint64_t seed, size_t size) {
  std::string body(size, '\0');
  FillPayload(seed, 0, body.data(), size);
  return body;
}

std::string PayloadSha256Hex(uint64_t seed, uint64_t size) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  char buf[64 * 1024];
  for (uint64_t off = 0; off < size; off += sizeof(buf)) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof(buf), size - off));
    FillPayload(seed, off, buf, n);
    EVP_DigestUpdate(ctx.get(), buf, n);
  }
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

PayloadVerifier::PayloadVerifier(uint64_t seed, uint64_t expected_size)
    : seed_(seed), expected_size_(expected_size) {}

void PayloadVerifier::Update(absl::string_view data) {
  if (result_ != kPending) {
    received_ += data.size();
    return;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  // Only the bytes inside the declared length are compared.
  size_t in_range = static_cast<size_t>(std::min<uint64_t>(
      n, expected_size_ > received_ ? expected_size_ - received_ : 0));
  unsigned char word[8];
  size_t i = 0;
  while (i < in_range) {
    uint64_t pos = received_ + i;
    size_t in_word = pos % 8;
    WordBytes(seed_, pos / 8, word);
    size_t m = std::min<size_t>(8 - in_word, in_range - i);
    if (std::memcmp(p + i, word + in_word, m) != 0) {
      for (size_t k = 0; k < m; ++k) {
        if (p[i + k] != word[in_word + k]) {
          first_bad_offset_ = static_cast<int64_t>(pos + k);
          break;
        }
      }
      result_ = kWrongByte;
      received_ += n;
      return;
    }
    i += m;
  }
  if (n > in_range) {
    result_ = kExtra;
    first_bad_offset_ = static_cast<int64_t>(expected_size_);
  }
  received_ += n;
}

void PayloadVerifier::Finish() {
  if (result_ != kPending) return;
  if (received_ < expected_size_) {
    result_ = kShort;
    first_bad_offset_ = static_cast<int64_t>(received_);
  } else {
    result_ = kOk;
  }
}

const char* PayloadResultName(PayloadVerifier::Result result) {
  switch (result) {
    case PayloadVerifier::kOk:
      return "ok";
    case PayloadVerifier::kPending:
      return "pending";
    case PayloadVerifier::kWrongByte:
      return "wrong_byte";
    case PayloadVerifier::kShort:
      return "short";
    case PayloadVerifier::kExtra:
      return "extra";
  }
  return "unknown";
}

}  // namespace fleetcanary
