#include "emulator/server/response_stream.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/payload/payload.h"

namespace fleetcanary {
namespace emulator {
namespace {

constexpr uint64_t kMaxWrite = 64 * 1024;
// Per write when the body comes from the payload cache.
constexpr uint64_t kMaxCachedWrite = 1024 * 1024;
// Chunks at least this large are written from the cache in large writes.
constexpr uint64_t kMinExternalChunk = 16 * 1024;
constexpr uint64_t kDefaultChunk = 64 * 1024;

}  // namespace

ResponsePlan* ResponseStream::Begin() {
  plan_ = ResponsePlan();
  active_ = true;
  offset_ = 0;
  head_sent_ = false;
  delayed_ = false;
  stalled_ = false;
  return &plan_;
}

void ResponseStream::Finish(bool finished) {
  if (!active_) return;
  active_ = false;
  if (plan_.on_done) {
    Completion c;
    c.body_bytes_sent = offset_;
    c.finished = finished;
    auto done = std::move(plan_.on_done);
    plan_.on_done = nullptr;
    done(c);
  }
}

ResponseStream::Step ResponseStream::NextStep(WriteQueue* out) {
  if (!head_sent_) {
    if (!delayed_ && plan_.first_byte_delay > absl::ZeroDuration()) {
      delayed_ = true;
      return Step{Next::kPump, plan_.first_byte_delay};
    }
    AppendHead(out);
    head_sent_ = true;
  }
  const Window window = NextWindow();
  const uint64_t sent = window.end - offset_;
  AppendBody(offset_, window.end, out);
  offset_ = window.end;
  const absl::Duration pause = PacingPause(sent, window.end, window.pause);
  return Step{FollowUp(out), pause};
}

ResponseStream::Window ResponseStream::NextWindow() const {
  const bool chunked = plan_.framing == ResponsePlan::Framing::kChunked;
  uint64_t limit = plan_.body_size();
  if (plan_.cut != ResponsePlan::Cut::kNone) {
    limit = std::min(limit, plan_.cut_after);
  }
  if (plan_.stall_after.has_value() && !stalled_) {
    limit = std::min(limit, *plan_.stall_after);
  }
  // Payload bodies written from the shared block cache cost no buffer
  // memory, so they go out in larger writes (fewer system calls and
  // completions); tiny chunks would still need framing bytes per chunk.
  const uint64_t chunk = plan_.chunk_bytes ? plan_.chunk_bytes : kDefaultChunk;
  uint64_t budget = kMaxWrite;
  if (plan_.payload && cache_ != nullptr &&
      (!chunked || chunk >= kMinExternalChunk)) {
    budget = kMaxCachedWrite;
  }
  Window window;
  if (chunked && plan_.chunk_gap > absl::ZeroDuration()) {
    budget = (offset_ / chunk + 1) * chunk - offset_;
    window.pause = plan_.chunk_gap;
  }
  if (plan_.bytes_per_second > 0) {
    budget =
        std::min(budget, std::max<uint64_t>(1, plan_.bytes_per_second / 20));
  }
  if (plan_.shape_bytes_per_second > 0) {
    if (offset_ < plan_.shape_after) {
      limit = std::min(limit, plan_.shape_after);
    } else {
      budget = std::min(budget, kMaxWrite);
    }
  }
  window.end = std::min(limit, offset_ + budget);
  return window;
}

absl::Duration ResponseStream::PacingPause(uint64_t sent, uint64_t end,
                                           absl::Duration pause) const {
  if (sent == 0) return pause;
  if (plan_.bytes_per_second > 0) {
    pause = std::max(pause, absl::Seconds(static_cast<double>(sent) /
                                          plan_.bytes_per_second));
  }
  if (plan_.shape_bytes_per_second > 0 && end > plan_.shape_after) {
    pause = std::max(pause, absl::Seconds(static_cast<double>(sent) /
                                          plan_.shape_bytes_per_second));
  }
  return pause;
}

ResponseStream::Next ResponseStream::FollowUp(WriteQueue* out) {
  const bool chunked = plan_.framing == ResponsePlan::Framing::kChunked;
  const uint64_t size = plan_.body_size();
  if (plan_.cut != ResponsePlan::Cut::kNone && offset_ == plan_.cut_after &&
      offset_ < size) {
    if (plan_.cut == ResponsePlan::Cut::kReset) return Next::kReset;
    if (chunked && plan_.final_chunk_on_cut) {
      out->AppendOwned("0\r\n\r\n");
      return Next::kFinish;
    }
    return Next::kClose;
  }
  if (offset_ == size) {
    if (chunked) out->AppendOwned("0\r\n\r\n");
    return Next::kFinish;
  }
  if (plan_.stall_after.has_value() && !stalled_ &&
      offset_ == *plan_.stall_after) {
    return Next::kStall;
  }
  return Next::kPump;
}

void ResponseStream::AppendHead(WriteQueue* out) const {
  const ResponsePlan& p = plan_;
  out->AppendOwnedWith([&p](std::string* buffer) {
    absl::StrAppend(buffer, "HTTP/1.1 ", p.status, " ",
                    p.reason.empty() ? ReasonPhrase(p.status) : p.reason,
                    "\r\n");
    for (const auto& [name, value] : p.headers) {
      absl::StrAppend(buffer, name, ": ", value, "\r\n");
    }
    if (p.framing == ResponsePlan::Framing::kChunked) {
      buffer->append("Transfer-Encoding: chunked\r\n");
    } else {
      absl::StrAppend(buffer, "Content-Length: ", p.body_size(), "\r\n");
    }
    buffer->append(p.close_connection ? "Connection: close\r\n\r\n"
                                      : "Connection: keep-alive\r\n\r\n");
  });
}

void ResponseStream::AppendBody(uint64_t from, uint64_t to, WriteQueue* out) {
  const bool chunked = plan_.framing == ResponsePlan::Framing::kChunked;
  const uint64_t chunk = plan_.chunk_bytes ? plan_.chunk_bytes : kDefaultChunk;
  uint64_t pos = from;
  while (pos < to) {
    uint64_t end = to;
    if (chunked) end = std::min(to, (pos / chunk + 1) * chunk);
    if (chunked) {
      out->AppendOwnedWith([n = end - pos](std::string* buffer) {
        absl::StrAppend(buffer, absl::Hex(n), "\r\n");
      });
    }
    if (plan_.corrupt_offset >= 0 &&
        static_cast<uint64_t>(plan_.corrupt_offset) >= pos &&
        static_cast<uint64_t>(plan_.corrupt_offset) < end) {
      const uint64_t bad = static_cast<uint64_t>(plan_.corrupt_offset);
      AppendBodyBytes(pos, bad, out);
      char byte;
      if (plan_.payload) {
        FillPayload(plan_.payload_seed, bad, &byte, 1);
      } else {
        byte = plan_.body[bad];
      }
      byte ^= static_cast<char>(0xFF);
      out->AppendOwned(absl::string_view(&byte, 1));
      AppendBodyBytes(bad + 1, end, out);
    } else {
      AppendBodyBytes(pos, end, out);
    }
    if (chunked) out->AppendOwned("\r\n");
    pos = end;
  }
}

void ResponseStream::AppendBodyBytes(uint64_t from, uint64_t to,
                                     WriteQueue* out) {
  if (!plan_.payload) {
    return out->AppendExternal(plan_.body.data() + from, to - from);
  }
  constexpr uint64_t kBlock = PayloadBlockCache::kBlockBytes;
  uint64_t pos = from;
  while (pos < to) {
    const uint64_t index = pos / kBlock;
    const uint64_t block_start = index * kBlock;
    const uint64_t end = std::min(to, block_start + kBlock);
    const uint64_t in_body =
        std::min(plan_.payload_size, block_start + kBlock) - block_start;
    if (cache_ != nullptr && in_body >= kBlock / 2) {
      std::shared_ptr<const std::string> block =
          cache_->Get(plan_.payload_seed, index);
      out->AppendExternal(block->data() + (pos - block_start), end - pos);
      out->Pin(std::move(block));
    } else {
      FillPayload(plan_.payload_seed, pos, out->AppendOwnedSpace(end - pos),
                  end - pos);
    }
    pos = end;
  }
}

}  // namespace emulator
}  // namespace fleetcanary
