#include "emulator/server/payload_cache.h"

#include "common/payload/payload.h"

namespace fleetcanary {
namespace emulator {

PayloadBlockCache::PayloadBlockCache(size_t max_bytes)
    : max_blocks_(max_bytes / kBlockBytes) {}

std::shared_ptr<const std::string> PayloadBlockCache::Get(uint64_t seed,
                                                          uint64_t index) {
  const Key key(seed, index);
  {
    absl::MutexLock lock(&mu_);
    auto it = blocks_.find(key);
    if (it != blocks_.end()) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.block;
    }
    ++stats_.misses;
  }
  auto fresh = std::make_shared<std::string>();
  // resize_and_overwrite is C++23; the zero fill is paid once per miss.
  fresh->resize(kBlockBytes);
  FillPayload(seed, index * kBlockBytes, fresh->data(), kBlockBytes);
  std::shared_ptr<const std::string> block = std::move(fresh);
  if (max_blocks_ == 0) return block;
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = blocks_.try_emplace(key);
  if (!inserted) {  // Another thread generated it meanwhile: share theirs.
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.block;
  }
  lru_.push_front(key);
  it->second.block = block;
  it->second.lru = lru_.begin();
  stats_.cached_bytes += kBlockBytes;
  while (blocks_.size() > max_blocks_) {
    blocks_.erase(lru_.back());
    lru_.pop_back();
    ++stats_.evictions;
    stats_.cached_bytes -= kBlockBytes;
  }
  return block;
}

PayloadCacheStats PayloadBlockCache::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace emulator
}  // namespace fleetcanary
