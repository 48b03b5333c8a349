// The bytes of the next write of a response, as one scatter/gather list:
// runs copied into a buffer the queue owns (head, chunk framing, generated
// payload, short runs) and runs referenced where they already live (cached
// payload blocks, which the queue keeps alive, and the plan's body).
//
// A connection keeps one queue and clears it before each write, so in steady
// state queuing allocates nothing: the owned buffer and the lists keep their
// capacity.
//
// Thread-compatible: owned by one connection and used on its strand.
#ifndef FLEETCANARY_EMULATOR_SERVER_WRITE_QUEUE_H_
#define FLEETCANARY_EMULATOR_SERVER_WRITE_QUEUE_H_

#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace fleetcanary {
namespace emulator {

class WriteQueue {
 public:
  // Referenced runs shorter than this are copied instead: an iovec entry
  // costs more than a small memcpy.
  static constexpr size_t kMinExternalBytes = 1024;

  // Forgets everything queued and releases the pinned blocks; keeps the
  // capacity. REQUIRES: no write from Buffers() is in flight.
  void Clear() {
    out_.clear();
    pieces_.clear();
    pinned_.clear();
  }

  bool empty() const { return pieces_.empty(); }

  // Queues a copy of `bytes`.
  void AppendOwned(absl::string_view bytes) {
    const size_t at = out_.size();
    out_.append(bytes.data(), bytes.size());
    AddOwnedPiece(at, bytes.size());
  }

  // Queues what `append(std::string* buffer)` appends to the owned buffer
  // (it may only append). Formats in place, without a temporary string.
  template <class AppendFn>
  void AppendOwnedWith(AppendFn&& append) {
    const size_t at = out_.size();
    append(&out_);
    AddOwnedPiece(at, out_.size() - at);
  }

  // Queues `n` owned bytes and returns where to write them; the pointer is
  // valid until the next call that appends.
  char* AppendOwnedSpace(size_t n) {
    const size_t at = out_.size();
    out_.resize(at + n);
    AddOwnedPiece(at, n);
    return &out_[at];
  }

  // Queues `n` bytes at `data` by reference. REQUIRES: they stay valid and
  // unchanged until the write completes (pin them when they are a cached
  // block). Runs under kMinExternalBytes are copied.
  void AppendExternal(const char* data, size_t n) {
    if (n < kMinExternalBytes) return AppendOwned(absl::string_view(data, n));
    pieces_.push_back(Piece{data, 0, n});
  }

  // Keeps `block` alive until Clear().
  void Pin(std::shared_ptr<const std::string> block) {
    pinned_.push_back(std::move(block));
  }

  // The queued runs in order, for one gather write. Valid until the next
  // call of any other method.
  const std::vector<boost::asio::const_buffer>& Buffers();

 private:
  // Records that out_[at, at + n) goes out next (merged with the previous
  // run when that one ends at `at`).
  void AddOwnedPiece(size_t at, size_t n) {
    if (n == 0) return;
    if (!pieces_.empty() && pieces_.back().external == nullptr &&
        pieces_.back().offset + pieces_.back().size == at) {
      pieces_.back().size += n;
      return;
    }
    pieces_.push_back(Piece{nullptr, at, n});
  }

  struct Piece {
    const char* external;  // nullptr: out_[offset, offset + size).
    size_t offset;
    size_t size;
  };
  std::string out_;
  std::vector<Piece> pieces_;
  std::vector<std::shared_ptr<const std::string>> pinned_;
  std::vector<boost::asio::const_buffer> buffers_;
};

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_SERVER_WRITE_QUEUE_H_
