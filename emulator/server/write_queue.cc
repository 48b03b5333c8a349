#include "emulator/server/write_queue.h"

namespace fleetcanary {
namespace emulator {

const std::vector<boost::asio::const_buffer>& WriteQueue::Buffers() {
  // Owned runs are resolved only now: out_ may have moved while growing.
  buffers_.clear();
  for (const Piece& piece : pieces_) {
    buffers_.emplace_back(
        piece.external != nullptr ? piece.external : out_.data() + piece.offset,
        piece.size);
  }
  return buffers_;
}

}  // namespace emulator
}  // namespace fleetcanary
