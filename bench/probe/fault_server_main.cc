// Standalone fault server (tests/testing/fault_server.h) for benchmarks and
// manual runs: serves the canary contract on loopback until killed.
//
//   fleetcanary-fault-server --port=0 --threads=1
// prints "listening <port>" on stdout once ready.
#include <csignal>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "tests/testing/fault_server.h"

ABSL_FLAG(std::string, address, "127.0.0.1", "Loopback address to bind");
ABSL_FLAG(int, port, 0, "Port (0 = any free port, printed on stdout)");
ABSL_FLAG(int, threads, 1, "Server threads");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  fleetcanary::testing::FaultServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.port = absl::GetFlag(FLAGS_port);
  options.threads = absl::GetFlag(FLAGS_threads);
  auto server = fleetcanary::testing::FaultServer::Create(options);
  if (!server.ok()) {
    std::cerr << "fault server: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "listening " << (*server)->port() << std::endl;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  (*server)->Shutdown();
  return 0;
}
