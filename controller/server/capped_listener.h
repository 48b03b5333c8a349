// A TCP listener with a hard cap on open connections, feeding a gRPC server.
//
// gRPC (1.51) has no connection limit: every accepted socket costs a
// descriptor until its handshake times out, and once accept fails for lack
// of descriptors its listener stops for good. The controller therefore
// accepts on its own socket and hands each connection to the gRPC server
// through an ExternalConnectionAcceptor (TLS and the handshake timeout apply
// as for gRPC's own listener). While `max_connections` connections are open,
// a new one is closed at once: counted (on_refused) and logged at most once
// per `log_interval` (log `grpc_connections_refused` with how many).
//
// A connection counts as open from accept until gRPC closes its descriptor
// (client gone, handshake timeout, idle timeout): the listener remembers
// each descriptor with its socket inode and, when at the cap, forgets those
// whose descriptor no longer holds that socket.
//
// The listening socket outlives server rebuilds: SetAcceptor switches the
// server new connections go to. Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_CONTROLLER_SERVER_CAPPED_LISTENER_H_
#define FLEETCANARY_CONTROLLER_SERVER_CAPPED_LISTENER_H_

#include <grpcpp/server_builder.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fleetcanary {
namespace controller {

struct CappedListenerOptions {
  // Names the listener in logs ("grpc", "admin").
  std::string name = "grpc";
  // Open connections at most (> 0).
  int max_connections = 1024;
  absl::Duration log_interval = absl::Seconds(10);
  // Told how many connections were refused, as they are (must not block).
  std::function<void(uint64_t)> on_refused;
  // Told when accept fails for lack of descriptors or memory (the
  // connection waits in the backlog; accept is retried 100 ms later).
  std::function<void()> on_accept_failed;
};

class CappedListener {
 public:
  // Binds and listens on `address` ("host:port", "[v6]:port"; port 0 =
  // ephemeral) and starts the accept thread. UNAVAILABLE naming the address
  // when it cannot bind; INVALID_ARGUMENT for a bad address or cap.
  static absl::StatusOr<std::unique_ptr<CappedListener>> Listen(
      const std::string& address, const CappedListenerOptions& options);
  ~CappedListener();

  int port() const { return port_; }

  // New connections go to `acceptor` from now on (null: they are closed).
  void SetAcceptor(
      std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor);

  // Connections open now (as far as the listener can tell).
  int open_connections();
  uint64_t refused_total();

  // Stops accepting and closes the listening socket. Idempotent.
  void Stop();

 private:
  CappedListener(const CappedListenerOptions& options, int fd, int port);
  void AcceptLoop();
  // Forgets connections whose descriptor no longer holds their socket.
  void PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Handle(int fd);
  void LogRefusedLocked(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CappedListenerOptions options_;
  const int listen_fd_;
  const int port_;
  int wake_[2] = {-1, -1};
  std::thread thread_;

  absl::Mutex mu_;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_
      ABSL_GUARDED_BY(mu_);
  // Accepted descriptor -> inode of its socket.
  std::map<int, uint64_t> open_ ABSL_GUARDED_BY(mu_);
  uint64_t refused_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SERVER_CAPPED_LISTENER_H_
