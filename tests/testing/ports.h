// Loopback ports for tests that need an address nobody serves.
//
// Thread-safety: thread-safe.
#ifndef FLEETCANARY_TESTS_TESTING_PORTS_H_
#define FLEETCANARY_TESTS_TESTING_PORTS_H_

namespace fleetcanary {
namespace testing {

// A TCP port on 127.0.0.1 that nothing listens on right now: the kernel
// picks it for a socket that is then closed without listening. Connecting
// to it is refused until some process binds it again; a test that needs it
// free later (to start a server on it) races only with other processes.
int UnusedLoopbackPort();

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_PORTS_H_
