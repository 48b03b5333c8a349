// A one-line progress bar redrawn in place on a terminal:
//   [=========>          ]  412/1000  41%  3 failed  118.2/s  eta 5s
//
// Redraws at most every `min_redraw` of the injected clock; Finish() clears
// the line. Disabled bars draw nothing (non-TTY stderr without --progress).
//
// Thread-safe: Update() may be called from any thread (the probe engine's
// done callbacks).
#ifndef FLEETCANARY_CLI_UI_PROGRESS_BAR_H_
#define FLEETCANARY_CLI_UI_PROGRESS_BAR_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace cli {

class ProgressBar {
 public:
  // `out` and `clock` must outlive the bar.
  ProgressBar(std::ostream* out, Clock* clock, uint64_t total, bool enabled,
              absl::Duration min_redraw = absl::Milliseconds(100));

  // Records progress: `done` of `total` finished, `failed` of them failed.
  void Update(uint64_t done, uint64_t failed);
  // Clears the bar's line (no-op when disabled or never drawn).
  void Finish();

  // The line for the given state (without "\r"); for tests.
  static std::string Render(uint64_t done, uint64_t total, uint64_t failed,
                            absl::Duration elapsed, int width = 30);

 private:
  std::ostream* const out_;
  Clock* const clock_;
  const uint64_t total_;
  const bool enabled_;
  const absl::Duration min_redraw_;
  const absl::Duration start_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  absl::Duration last_draw_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
  size_t drawn_width_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_UI_PROGRESS_BAR_H_
