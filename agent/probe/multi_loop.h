// The I/O half of the probe engine's loop (internal to agent/probe/; the
// public contract is probe_engine.h): libcurl's multi interface in
// socket-action mode over epoll, so thousands of transfers cost O(active
// sockets) per event, plus an eventfd that wakes the loop from other
// threads.
//
// Each RunOnce sleeps until a socket libcurl watches is ready, Wake() was
// called, libcurl's own timer is due or the caller's wait ends, whichever
// comes first; then it lets libcurl act on every ready socket and on its
// timer. Finished transfers are read from multi() by the caller.
// libcurl's timer runs on the real monotonic clock (libcurl's own).
//
// Sockets the engine opens itself (OnSocketOpened) and libcurl closes
// through the hook WatchCloses installs are registered with epoll lazily:
// when libcurl stops watching one (a keep-alive connection back in the
// cache), it stays registered, and is removed only if it becomes ready while
// unwatched; when libcurl watches it again for the same events (the next
// probe on that connection), nothing is done. That saves two epoll_ctl calls
// per keep-alive probe. Other sockets (e.g. a resolver's) are registered and
// removed as libcurl asks.
//
// Thread-safety: Wake() may be called from any thread once Init succeeded;
// everything else runs on the loop thread (Init before it starts).
#ifndef FLEETCANARY_AGENT_PROBE_MULTI_LOOP_H_
#define FLEETCANARY_AGENT_PROBE_MULTI_LOOP_H_

#include <curl/curl.h>
#include <sys/epoll.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace probe_internal {

class MultiLoop {
 public:
  MultiLoop() = default;
  // Cleans up the multi handle (its easy handles must be removed and freed
  // by then) and closes the descriptors.
  ~MultiLoop();
  MultiLoop(const MultiLoop&) = delete;
  MultiLoop& operator=(const MultiLoop&) = delete;

  // Creates the epoll instance, the wake eventfd and the multi handle, with
  // at most `max_connections` connections open and kept for reuse.
  absl::Status Init(int max_connections);

  // The multi handle transfers are added to and removed from.
  CURLM* multi() const { return multi_; }

  // Makes the current or next RunOnce return without waiting.
  void Wake();

  // `fd` was just opened for a transfer and will be closed by libcurl
  // through the hook WatchCloses installed on its handle.
  void OnSocketOpened(int fd);

  // Makes libcurl close the sockets of `easy`'s connections through this
  // loop (CURLOPT_CLOSESOCKETFUNCTION), so that it knows when a descriptor
  // number is free again. Once per new or reset handle.
  void WatchCloses(CURL* easy);

  // One turn (see above), sleeping at most `max_wait` (<= 0: not at all).
  // `on_readable(fd)` runs for each ready socket with input, before libcurl
  // reads it.
  void RunOnce(absl::Duration max_wait,
               absl::FunctionRef<void(int fd)> on_readable);

 private:
  static int SocketCallback(CURL* easy, curl_socket_t s, int what, void* userp,
                            void* socketp);
  static int TimerCallback(CURLM* multi, long timeout_ms, void* userp);
  static int CloseSocketCallback(void* clientp, curl_socket_t fd);

  // What epoll and libcurl know of one socket the engine opened.
  struct Tracked {
    bool open = false;        // Opened by OnSocketOpened and not closed.
    bool registered = false;  // In the epoll set, with `events`.
    bool watched = false;     // libcurl wants `events` on it.
    uint32_t events = 0;
  };
  Tracked* TrackedOrNull(int fd);
  // epoll_ctl, trying the other of ADD and MOD if the first fails.
  void Control(int op, int fd, uint32_t events);

  // Milliseconds epoll_wait may sleep for a wait of `max_wait`.
  int PollTimeoutMs(absl::Duration max_wait) const;

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  CURLM* multi_ = nullptr;
  std::optional<absl::Duration> curl_timer_;  // Real monotonic time.
  std::vector<epoll_event> events_ = std::vector<epoll_event>(256);
  // Indexed by descriptor.
  std::vector<Tracked> tracked_;
};

}  // namespace probe_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_MULTI_LOOP_H_
