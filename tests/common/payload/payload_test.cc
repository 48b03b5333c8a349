#include "common/payload/payload.h"

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace {

TEST(PayloadTest, MatchesCommittedConformanceVectors) {
  std::ifstream in(std::string(FLEETCANARY_SOURCE_DIR) +
                   "/tests/testdata/payload_conformance.json");
  ASSERT_TRUE(in) << "missing tests/testdata/payload_conformance.json";
  nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_GE(doc["vectors"].size(), 10u);
  for (const auto& v : doc["vectors"]) {
    uint64_t seed = 0;
    ASSERT_TRUE(absl::SimpleAtoi(v["seed"].get<std::string>(), &seed));
    uint64_t size = v["size"].get<uint64_t>();
    SCOPED_TRACE(testing::Message() << "seed=" << seed << " size=" << size);
    EXPECT_EQ(PayloadSha256Hex(seed, size), v["sha256"].get<std::string>());
    std::string body = MakePayload(seed, size);
    EXPECT_EQ(absl::BytesToHexString(body.substr(0, 16)),
              v["first16_hex"].get<std::string>());
    EXPECT_EQ(
        absl::BytesToHexString(size >= 16 ? body.substr(size - 16) : body),
        v["last16_hex"].get<std::string>());
  }
}

TEST(PayloadTest, FillIsSeekable) {
  std::string whole = MakePayload(77, 1000);
  for (uint64_t off : {0, 1, 7, 8, 9, 500, 993}) {
    std::string part(1000 - off, '\0');
    FillPayload(77, off, part.data(), part.size());
    EXPECT_EQ(part, whole.substr(off)) << off;
  }
}

TEST(PayloadVerifierTest, AcceptsExactBodyInOneGo) {
  std::string body = MakePayload(5, 4096);
  PayloadVerifier v(5, body.size());
  v.Update(body);
  EXPECT_EQ(v.result(), PayloadVerifier::kPending);
  v.Finish();
  EXPECT_EQ(v.result(), PayloadVerifier::kOk);
  EXPECT_EQ(v.first_bad_offset(), -1);
  EXPECT_EQ(v.received(), 4096u);
}

TEST(PayloadVerifierTest, EmptyBody) {
  PayloadVerifier v(1, 0);
  v.Finish();
  EXPECT_EQ(v.result(), PayloadVerifier::kOk);
}

// Feeds `body` to a verifier in random chunk sizes.
PayloadVerifier FeedRandomly(uint64_t seed, uint64_t expected,
                             const std::string& body, std::mt19937_64& rng) {
  PayloadVerifier v(seed, expected);
  size_t pos = 0;
  while (pos < body.size()) {
    size_t max_chunk =
        std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? 3 : 700;
    size_t n = std::uniform_int_distribution<size_t>(1, max_chunk)(rng);
    n = std::min(n, body.size() - pos);
    v.Update(absl::string_view(body).substr(pos, n));
    pos += n;
  }
  v.Finish();
  return v;
}

// Property: for random sizes, offsets and chunkings, a flipped byte, a missing
// tail and extra bytes are each detected at the exact offset.
TEST(PayloadVerifierTest, PropertyDetectsEveryDefectAtAnyOffsetAndChunking) {
  std::mt19937_64 rng(20240204);
  for (int iter = 0; iter < 400; ++iter) {
    uint64_t seed = rng();
    size_t size = std::uniform_int_distribution<size_t>(1, 5000)(rng);
    std::string good = MakePayload(seed, size);
    SCOPED_TRACE(testing::Message() << "iter=" << iter << " size=" << size);

    EXPECT_EQ(FeedRandomly(seed, size, good, rng).result(),
              PayloadVerifier::kOk);

    size_t flip = std::uniform_int_distribution<size_t>(0, size - 1)(rng);
    std::string flipped = good;
    flipped[flip] ^= static_cast<char>(1 << (rng() % 8));
    PayloadVerifier f = FeedRandomly(seed, size, flipped, rng);
    EXPECT_EQ(f.result(), PayloadVerifier::kWrongByte);
    EXPECT_EQ(f.first_bad_offset(), static_cast<int64_t>(flip));

    size_t keep = std::uniform_int_distribution<size_t>(0, size - 1)(rng);
    PayloadVerifier s = FeedRandomly(seed, size, good.substr(0, keep), rng);
    EXPECT_EQ(s.result(), PayloadVerifier::kShort);
    EXPECT_EQ(s.first_bad_offset(), static_cast<int64_t>(keep));
    EXPECT_EQ(s.received(), keep);

    size_t extra = std::uniform_int_distribution<size_t>(1, 64)(rng);
    PayloadVerifier e = FeedRandomly(
        seed, size, good + MakePayload(seed, size + extra).substr(size), rng);
    EXPECT_EQ(e.result(), PayloadVerifier::kExtra);
    EXPECT_EQ(e.first_bad_offset(), static_cast<int64_t>(size));
    EXPECT_EQ(e.received(), size + extra);
  }
}

TEST(PayloadVerifierTest, WrongSeedIsWrongByteAtZero) {
  std::string body = MakePayload(1, 64);
  PayloadVerifier v(2, 64);
  v.Update(body);
  v.Finish();
  EXPECT_EQ(v.result(), PayloadVerifier::kWrongByte);
  EXPECT_EQ(v.first_bad_offset(), 0);
  EXPECT_STREQ(PayloadResultName(v.result()), "wrong_byte");
}

}  // namespace
}  // namespace fleetcanary
