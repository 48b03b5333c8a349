#include "controller/server/capped_listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace controller {
namespace {

// "host:port" or "[v6]:port" -> host (may be empty) and port.
bool SplitAddress(const std::string& address, std::string* host,
                  std::string* port) {
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    *host = address.substr(1, close - 1);
    *port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    *host = address.substr(0, colon);
    *port = address.substr(colon + 1);
  }
  return !port->empty();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CappedListener>> CappedListener::Listen(
    const std::string& address, const CappedListenerOptions& options) {
  if (options.max_connections <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.name, ": max_connections must be > 0"));
  }
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.name, ": \"", address, "\" is not host:port"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int gai =
      getaddrinfo(host.empty() || host == "*" ? nullptr : host.c_str(),
                  port.c_str(), &hints, &found);
  if (gai != 0) {
    return absl::UnavailableError(absl::StrCat(
        options.name, ": cannot bind ", address, ": ", gai_strerror(gai)));
  }
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        listen(fd, SOMAXCONN) == 0) {
      break;
    }
    error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat(options.name, ": cannot bind ", address, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::unique_ptr<CappedListener> listener(
      new CappedListener(options, fd, bound_port));
  if (pipe2(listener->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(
        absl::StrCat(options.name, ": pipe: ", std::strerror(errno)));
  }
  CappedListener* self = listener.get();
  listener->thread_ = std::thread([self] { self->AcceptLoop(); });
  return listener;
}

CappedListener::CappedListener(const CappedListenerOptions& options, int fd,
                               int port)
    : options_(options), listen_fd_(fd), port_(port) {}

CappedListener::~CappedListener() {
  Stop();
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
}

void CappedListener::SetAcceptor(
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor) {
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> old;
  absl::MutexLock lock(&mu_);
  old = std::move(acceptor_);
  acceptor_ = std::move(acceptor);
}

int CappedListener::open_connections() {
  absl::MutexLock lock(&mu_);
  PruneLocked();
  return static_cast<int>(open_.size());
}

uint64_t CappedListener::refused_total() {
  absl::MutexLock lock(&mu_);
  return refused_total_;
}

void CappedListener::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  const char byte = 1;
  if (write(wake_[1], &byte, 1) < 0) {
    // The pipe is non-blocking and has room: cannot happen.
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  absl::MutexLock lock(&mu_);
  LogRefusedLocked(/*force=*/true);
  acceptor_.reset();
}

void CappedListener::AcceptLoop() {
  absl::Time last_accept_error = absl::InfinitePast();
  for (;;) {
    int timeout_ms = -1;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      // Refusals not logged yet are logged when their interval ends.
      if (refused_unlogged_ > 0) {
        const absl::Duration left =
            last_log_ + options_.log_interval - Clock::Real()->Now();
        timeout_ms = static_cast<int>(
            std::max<int64_t>(0, absl::ToInt64Milliseconds(left) + 1));
      }
    }
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int n = poll(fds, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) return;
    if (n == 0) {
      absl::MutexLock lock(&mu_);
      LogRefusedLocked(/*force=*/false);
      continue;
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    for (;;) {
      const int fd =
          accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        Handle(fd);
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // Out of descriptors or memory: the connection waits in the backlog;
      // try again shortly (the cap normally keeps this from happening).
      if (options_.on_accept_failed) options_.on_accept_failed();
      const absl::Time now = Clock::Real()->Now();
      if (now - last_accept_error >= options_.log_interval) {
        last_accept_error = now;
        LogError("grpc_accept_failed", {{"listener", options_.name},
                                        {"error", std::strerror(errno)}});
      }
      pollfd wake = {wake_[0], POLLIN, 0};
      if (poll(&wake, 1, 100) > 0) return;
      break;
    }
  }
}

void CappedListener::Handle(int fd) {
  struct stat st {};
  fstat(fd, &st);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  absl::MutexLock lock(&mu_);
  if (stopped_ || acceptor_ == nullptr) {
    close(fd);
    return;
  }
  open_.erase(fd);  // A descriptor number gRPC closed and the kernel reused.
  if (static_cast<int>(open_.size()) >= options_.max_connections) {
    PruneLocked();
  }
  if (static_cast<int>(open_.size()) >= options_.max_connections) {
    close(fd);
    ++refused_total_;
    ++refused_unlogged_;
    if (options_.on_refused) options_.on_refused(1);
    LogRefusedLocked(/*force=*/false);
    return;
  }
  open_[fd] = static_cast<uint64_t>(st.st_ino);
  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters p;
  p.listener_fd = listen_fd_;
  p.fd = fd;
  acceptor_->HandleNewConnection(&p);
}

void CappedListener::PruneLocked() {
  for (auto it = open_.begin(); it != open_.end();) {
    struct stat st {};
    if (fstat(it->first, &st) != 0 || !S_ISSOCK(st.st_mode) ||
        static_cast<uint64_t>(st.st_ino) != it->second) {
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
}

void CappedListener::LogRefusedLocked(bool force) {
  if (refused_unlogged_ == 0) return;
  const absl::Time now = Clock::Real()->Now();
  if (!force && now - last_log_ < options_.log_interval) return;
  LogWarning("grpc_connections_refused",
             {{"listener", options_.name},
              {"refused", absl::StrCat(refused_unlogged_)},
              {"open", absl::StrCat(open_.size())},
              {"max_connections", absl::StrCat(options_.max_connections)}});
  last_log_ = now;
  refused_unlogged_ = 0;
}

}  // namespace controller
}  // namespace fleetcanary
