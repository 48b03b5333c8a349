// A real PostgreSQL server for tests: initdb into a fresh temporary data
// directory, started with pg_ctl on a free loopback port (Unix socket in the
// same directory), stopped and deleted at the end. PostgreSQL refuses to run
// as root, so when the test runs as root (CI) the server runs as the
// `postgres` system user that Debian's package creates (via runuser).
//
// The binaries (initdb, pg_ctl, postgres) are found under
// $FLEETCANARY_PG_BINDIR, else the newest /usr/lib/postgresql/<N>/bin. When
// they are missing Start() fails with a message naming them and the Debian
// package: PostgreSQL is a required test dependency, never a skip. Servers
// left behind by test processes that died (crash, timeout kill) are stopped
// and deleted by the next Start().
//
// Example:
//   PostgresServer* pg = SharedPostgresServer();  // Started once per process.
//   ASSERT_NE(pg, nullptr) << SharedPostgresServerError();
//   auto url = pg->CreateDatabase("t1");  // postgresql://...:port/t1
//
// Thread-safety: a PostgresServer is used from one thread at a time.
#ifndef FLEETCANARY_TESTS_TESTING_POSTGRES_SERVER_H_
#define FLEETCANARY_TESTS_TESTING_POSTGRES_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fleetcanary {
namespace testing {

class PostgresServer {
 public:
  // initdb + start; bounded (pg_ctl waits at most 60 s).
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  // Stops the server (immediate) and deletes its directory.
  ~PostgresServer();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // postgresql://postgres@127.0.0.1:<port>/<database>
  std::string Url(const std::string& database = "postgres") const;
  // Creates an empty database (name: [a-z0-9_]+) and returns its URL.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  // Runs SQL with psql against `database` (ON_ERROR_STOP); stdout returned
  // (unaligned, tuples only).
  absl::StatusOr<std::string> Psql(const std::string& database,
                                   const std::string& sql);

  // Stops the server: "fast" (clients disconnected, clean shutdown) or
  // "immediate" (like a crash; recovery on the next start).
  absl::Status Stop(const std::string& mode = "fast");
  // Starts it again on the same port and data directory.
  absl::Status Restart();

 private:
  PostgresServer() = default;
  absl::Status RunAsOwner(const std::vector<std::string>& argv);
  absl::Status StartServer();

  std::string bindir_;
  std::string dir_;  // Temporary directory: data/, socket, log.
  int port_ = 0;
  bool as_postgres_user_ = false;
  bool running_ = false;
};

// One server per test process, started on first use and stopped at exit.
// Null when it could not start; SharedPostgresServerError() says why.
PostgresServer* SharedPostgresServer();
std::string SharedPostgresServerError();

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_POSTGRES_SERVER_H_
