// libcurl multi in socket-action mode over epoll (see multi_loop.h).
#include "agent/probe/multi_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace probe_internal {

MultiLoop::~MultiLoop() {
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status MultiLoop::Init(int max_connections) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("epoll_create1: ", std::strerror(errno)));
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return absl::InternalError(
        absl::StrCat("epoll_ctl: ", std::strerror(errno)));
  }
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return absl::InternalError("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &SocketCallback);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &TimerCallback);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(max_connections));
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(max_connections));
  return absl::OkStatus();
}

void MultiLoop::Wake() {
  const uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void MultiLoop::OnSocketOpened(int fd) {
  if (fd < 0) return;
  if (static_cast<size_t>(fd) >= tracked_.size()) {
    tracked_.resize(std::max<size_t>(fd + 1, tracked_.size() * 2));
  }
  tracked_[fd] = Tracked{};
  tracked_[fd].open = true;
}

void MultiLoop::WatchCloses(CURL* easy) {
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &CloseSocketCallback);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
}

int MultiLoop::CloseSocketCallback(void* clientp, curl_socket_t fd) {
  auto* self = static_cast<MultiLoop*>(clientp);
  // Closing removes the socket from the epoll set (nothing else holds it).
  if (Tracked* t = self->TrackedOrNull(fd)) *t = Tracked{};
  return close(fd);
}

MultiLoop::Tracked* MultiLoop::TrackedOrNull(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= tracked_.size()) return nullptr;
  Tracked* t = &tracked_[fd];
  return t->open ? t : nullptr;
}

void MultiLoop::Control(int op, int fd, uint32_t events) {
  epoll_event ev{};
  ev.data.fd = fd;
  ev.events = events;
  if (epoll_ctl(epoll_fd_, op, fd, &ev) == 0) return;
  // A descriptor number reused behind our back: try the other operation.
  const int other = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(epoll_fd_, other, fd, &ev) != 0) {
    LogWarning("probe_epoll_ctl_failed",
               {{"fd", absl::StrCat(fd)}, {"errno", std::strerror(errno)}});
  }
}

int MultiLoop::SocketCallback(CURL*, curl_socket_t s, int what, void* userp,
                              void* socketp) {
  auto* self = static_cast<MultiLoop*>(userp);
  uint32_t events = 0;
  if (what & CURL_POLL_IN) events |= EPOLLIN;
  if (what & CURL_POLL_OUT) events |= EPOLLOUT;
  if (Tracked* t = self->TrackedOrNull(s)) {
    if (what == CURL_POLL_REMOVE) {
      t->watched = false;  // Stays registered until it is ready unwatched.
      return 0;
    }
    t->watched = true;
    if (t->registered && t->events == events) return 0;
    self->Control(t->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, events);
    t->registered = true;
    t->events = events;
    return 0;
  }
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(self->epoll_fd_, EPOLL_CTL_DEL, s, nullptr);
    curl_multi_assign(self->multi_, s, nullptr);
    return 0;
  }
  self->Control(socketp == nullptr ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, events);
  if (socketp == nullptr) {
    curl_multi_assign(self->multi_, s, reinterpret_cast<void*>(1));
  }
  return 0;
}

int MultiLoop::TimerCallback(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<MultiLoop*>(userp);
  if (timeout_ms < 0) {
    self->curl_timer_.reset();
  } else {
    self->curl_timer_ =
        Clock::Real()->MonotonicNow() + absl::Milliseconds(timeout_ms);
  }
  return 0;
}

int MultiLoop::PollTimeoutMs(absl::Duration max_wait) const {
  absl::Duration wait = max_wait;
  if (curl_timer_) {
    wait = std::min(wait, *curl_timer_ - Clock::Real()->MonotonicNow());
  }
  if (wait <= absl::ZeroDuration()) return 0;
  // Round up so that we never wake just before a deadline.
  return static_cast<int>(absl::ToInt64Microseconds(wait) / 1000 + 1);
}

void MultiLoop::RunOnce(absl::Duration max_wait,
                        absl::FunctionRef<void(int fd)> on_readable) {
  int running = 0;
  const int n =
      epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                 PollTimeoutMs(max_wait));
  for (int i = 0; i < n; ++i) {
    const int fd = events_[i].data.fd;
    if (fd == wake_fd_) {
      uint64_t count;
      while (read(wake_fd_, &count, sizeof(count)) > 0) {
      }
      continue;
    }
    Tracked* t = TrackedOrNull(fd);
    if (t != nullptr && !t->watched) {
      // Ready while libcurl does not watch it (an idle keep-alive
      // connection closed or written to): libcurl looks at it when it
      // reuses it; until then, no more events.
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      t->registered = false;
      continue;
    }
    int flags = 0;
    if (events_[i].events & EPOLLIN) {
      flags |= CURL_CSELECT_IN;
      on_readable(fd);
    }
    if (events_[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events_[i].events & (EPOLLERR | EPOLLHUP)) {
      flags |= CURL_CSELECT_ERR;
    }
    curl_multi_socket_action(multi_, fd, flags, &running);
  }
  if (curl_timer_ && *curl_timer_ <= Clock::Real()->MonotonicNow()) {
    curl_timer_.reset();
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  }
}

}  // namespace probe_internal
}  // namespace fleetcanary
