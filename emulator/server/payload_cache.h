// A bounded, shared, read-only cache of canary payload blocks.
//
// The canary payload (common/payload) is a pure function of seed and offset,
// so the bytes of a block never change once generated. The cache keeps whole
// blocks of kBlockBytes, keyed by (seed, block index), and hands out shared,
// immutable buffers that the HTTP server writes to the socket directly
// (scatter/gather), without copying them into a per-connection buffer.
//
// Memory is bounded by `max_bytes` (whole blocks, least recently used evicted
// first). A block handed out stays alive while its holder keeps the pointer,
// even after eviction, so a response in flight never sees its bytes change.
// With max_bytes < kBlockBytes nothing is kept: Get() generates a fresh block
// on every call.
//
// Thread-safety: every method may be called from any thread.
#ifndef FLEETCANARY_EMULATOR_SERVER_PAYLOAD_CACHE_H_
#define FLEETCANARY_EMULATOR_SERVER_PAYLOAD_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace fleetcanary {
namespace emulator {

struct PayloadCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t cached_bytes = 0;
};

class PayloadBlockCache {
 public:
  // Bytes per block; blocks start at multiples of it.
  static constexpr uint64_t kBlockBytes = 64 * 1024;

  explicit PayloadBlockCache(size_t max_bytes);
  PayloadBlockCache(const PayloadBlockCache&) = delete;
  PayloadBlockCache& operator=(const PayloadBlockCache&) = delete;

  // Payload bytes [index * kBlockBytes, (index + 1) * kBlockBytes) of the
  // stream for `seed`: FillPayload(seed, index * kBlockBytes, ...). Never
  // null; generated (outside the lock) on a miss.
  std::shared_ptr<const std::string> Get(uint64_t seed, uint64_t index);

  PayloadCacheStats stats() const;

 private:
  using Key = std::pair<uint64_t, uint64_t>;  // (seed, block index)
  struct Entry {
    std::shared_ptr<const std::string> block;
    std::list<Key>::iterator lru;  // Position in lru_.
  };

  const size_t max_blocks_;
  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  absl::flat_hash_map<Key, Entry> blocks_ ABSL_GUARDED_BY(mu_);
  std::list<Key> lru_ ABSL_GUARDED_BY(mu_);  // Most recently used first.
  PayloadCacheStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SERVER_PAYLOAD_CACHE_H_
