// A throwaway PKI for tests: a CA and leaf certificates made with the
// `openssl` command line tool in a directory the test owns (e.g. under
// ::testing::TempDir()). Shared test infrastructure (fleetcanary::testing_pki).
//
// Example:
//   FC_ASSIGN_OR_RETURN(TestPki pki, TestPki::Create(dir));
//   FC_RETURN_IF_ERROR(pki.Leaf("server", "DNS:localhost,IP:127.0.0.1"));
//   ... serve with pki.Path("server", "pem") / pki.Path("server", "key"),
//       trust pki.ca() ...
//
// Thread-safety: Leaf() runs child processes and writes files; do not call it
// concurrently for the same name. Keys are 2048-bit RSA, valid for two days.
#ifndef FLEETCANARY_TESTS_TESTING_PKI_H_
#define FLEETCANARY_TESTS_TESTING_PKI_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fleetcanary {
namespace testing {

class TestPki {
 public:
  // Creates `dir` (and parents) if missing, then a self-signed CA with the
  // given common name: <dir>/ca.pem and <dir>/ca.key.
  static absl::StatusOr<TestPki> Create(
      const std::string& dir,
      const std::string& ca_name = "fleetcanary-test-ca");

  // A leaf certificate signed by the CA, with subjectAltName `san` (e.g.
  // "DNS:localhost,IP:127.0.0.1"): <dir>/<name>.pem and <dir>/<name>.key.
  absl::Status Leaf(const std::string& name, const std::string& san) const;

  // "<dir>/<name>.<ext>".
  std::string Path(const std::string& name, const std::string& ext) const;
  std::string ca() const { return Path("ca", "pem"); }
  std::string ca_key() const { return Path("ca", "key"); }
  const std::string& dir() const { return dir_; }

 private:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// Runs `argv` (argv[0] looked up in PATH) with stdout/stderr discarded and
// waits for it. INTERNAL naming the command when it cannot start or exits
// non-zero.
absl::Status RunQuietly(const std::vector<std::string>& argv);

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_PKI_H_
