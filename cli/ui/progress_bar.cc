#include "cli/ui/progress_bar.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fleetcanary {
namespace cli {

ProgressBar::ProgressBar(std::ostream* out, Clock* clock, uint64_t total,
                         bool enabled, absl::Duration min_redraw)
    : out_(out),
      clock_(clock),
      total_(total),
      enabled_(enabled),
      min_redraw_(min_redraw),
      start_(clock->MonotonicNow()) {}

std::string ProgressBar::Render(uint64_t done, uint64_t total, uint64_t failed,
                                absl::Duration elapsed, int width) {
  const double frac =
      total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int filled = static_cast<int>(frac * width);
  std::string bar(filled, '=');
  if (filled < width) {
    bar.push_back('>');
    bar.append(width - filled - 1, ' ');
  }
  const double secs = absl::ToDoubleSeconds(elapsed);
  const double rate = secs > 0 ? done / secs : 0;
  std::string line =
      absl::StrFormat("[%s] %*d/%d %3d%%  %d failed  %.1f/s", bar,
                      static_cast<int>(absl::StrCat(total).size()), done, total,
                      static_cast<int>(frac * 100), failed, rate);
  if (rate > 0 && done < total) {
    absl::StrAppend(&line, "  eta ",
                    absl::FormatDuration(absl::Seconds(
                        static_cast<int64_t>((total - done) / rate + 0.5))));
  }
  return line;
}

void ProgressBar::Update(uint64_t done, uint64_t failed) {
  if (!enabled_) return;
  absl::MutexLock lock(&mu_);
  const absl::Duration now = clock_->MonotonicNow();
  if (last_draw_ != absl::InfiniteDuration() &&
      now - last_draw_ < min_redraw_ && done < total_) {
    return;
  }
  last_draw_ = now;
  const std::string line = Render(done, total_, failed, now - start_);
  std::string padded = line;
  if (padded.size() < drawn_width_)
    padded.append(drawn_width_ - padded.size(), ' ');
  drawn_width_ = line.size();
  *out_ << "\r" << padded << std::flush;
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  absl::MutexLock lock(&mu_);
  if (drawn_width_ == 0) return;
  *out_ << "\r" << std::string(drawn_width_, ' ') << "\r" << std::flush;
  drawn_width_ = 0;
}

}  // namespace cli
}  // namespace fleetcanary
