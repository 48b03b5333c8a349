// The shared payload block cache: bytes equal the payload stream, hits share
// one buffer, memory stays within its bound (least recently used out first),
// and a block held by a response outlives its eviction.
#include "emulator/server/payload_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "common/payload/payload.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace emulator {
namespace {

constexpr uint64_t kBlock = PayloadBlockCache::kBlockBytes;

std::string Expected(uint64_t seed, uint64_t index) {
  std::string out(kBlock, '\0');
  FillPayload(seed, index * kBlock, out.data(), kBlock);
  return out;
}

TEST(PayloadBlockCacheTest, BlocksAreThePayloadStreamAtTheirOffset) {
  PayloadBlockCache cache(4 * kBlock);
  for (uint64_t seed : {0ull, 1ull, 18446744073709551615ull}) {
    for (uint64_t index : {0ull, 1ull, 63ull}) {
      EXPECT_EQ(*cache.Get(seed, index), Expected(seed, index))
          << "seed " << seed << " block " << index;
    }
  }
  // Block 1 continues block 0: together they are the first 128 KiB.
  EXPECT_EQ(*cache.Get(9, 0) + *cache.Get(9, 1), MakePayload(9, 2 * kBlock));
}

TEST(PayloadBlockCacheTest, SecondGetSharesTheFirstBuffer) {
  PayloadBlockCache cache(4 * kBlock);
  auto a = cache.Get(5, 2);
  auto b = cache.Get(5, 2);
  EXPECT_EQ(a.get(), b.get());
  PayloadCacheStats s = cache.stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.cached_bytes, kBlock);
}

TEST(PayloadBlockCacheTest, StaysWithinItsBoundEvictingLeastRecentlyUsed) {
  PayloadBlockCache cache(2 * kBlock);
  const std::string* a = cache.Get(1, 0).get();
  cache.Get(2, 0);
  EXPECT_EQ(cache.Get(1, 0).get(), a);  // (1,0) is now the most recent.
  cache.Get(3, 0);                      // Evicts (2,0).
  PayloadCacheStats s = cache.stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.cached_bytes, 2 * kBlock);
  EXPECT_EQ(cache.Get(1, 0).get(), a);  // Still cached: a hit.
  const uint64_t misses = cache.stats().misses;
  cache.Get(2, 0);  // Gone: generated again.
  EXPECT_EQ(cache.stats().misses, misses + 1);
}

TEST(PayloadBlockCacheTest, HeldBlockOutlivesEviction) {
  PayloadBlockCache cache(kBlock);
  std::shared_ptr<const std::string> held = cache.Get(7, 3);
  cache.Get(8, 0);  // Evicts (7,3) from the cache, not from `held`.
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(*held, Expected(7, 3));
}

TEST(PayloadBlockCacheTest, BelowOneBlockNothingIsKept) {
  PayloadBlockCache cache(kBlock - 1);
  auto a = cache.Get(4, 0);
  auto b = cache.Get(4, 0);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(*a, Expected(4, 0));
  EXPECT_EQ(*b, *a);
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(cache.stats().cached_bytes, 0u);
}

TEST(PayloadBlockCacheTest, ConcurrentReadersGetTheSameBytes) {
  PayloadBlockCache cache(3 * kBlock);
  const std::string expected[4] = {Expected(11, 0), Expected(11, 1),
                                   Expected(12, 0), Expected(12, 1)};
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const int k = (t + i) % 4;
        if (*cache.Get(11 + k / 2, k % 2) != expected[k]) ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
  EXPECT_LE(cache.stats().cached_bytes, 3 * kBlock);
}

}  // namespace
}  // namespace emulator
}  // namespace fleetcanary
