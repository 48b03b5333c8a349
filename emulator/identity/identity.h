// Temporary AWS credentials, emulated: an STS endpoint (Query protocol:
// AssumeRoleWithWebIdentity, AssumeRole, GetCallerIdentity), an EC2 instance
// metadata endpoint (IMDSv2: PUT /latest/api/token first), and a container
// credentials endpoint (ECS / EKS Pod Identity). Every credential issued
// expires after the configured lifetime; the issuer answers SigV4 lookups
// for them, so the Function URLs and CloudWatch accept issued credentials
// until they expire and refuse them after ("ExpiredToken"), and refuse
// session tokens they never issued.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_EMULATOR_IDENTITY_IDENTITY_H_
#define FLEETCANARY_EMULATOR_IDENTITY_IDENTITY_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "emulator/server/http_server.h"
#include "fleetcanary/v1/scenario.pb.h"

namespace fleetcanary {
namespace emulator {

struct IssuedCredentials {
  sigv4::Credentials keys;
  absl::Time expiration;
  std::string role_arn;
  // Requests that presented these keys while valid, by the service they
  // were verified for ("lambda", "monitoring", "sts").
  std::map<std::string, uint64_t> uses;
};

class CredentialIssuer {
 public:
  // `static_credentials`: long-term keys always accepted. `clock` must
  // outlive the issuer.
  CredentialIssuer(const v1::EmulatorIdentity& config,
                   std::vector<v1::EmulatorCredential> static_credentials,
                   Clock* clock, uint64_t seed);

  // New session credentials for `role_arn`, valid for `lifetime` (zero = the
  // configured lifetime, default 1h).
  IssuedCredentials Issue(absl::string_view role_arn,
                          absl::Duration lifetime = absl::ZeroDuration());

  // SigV4 lookup: static or issued credentials of `access_key_id`.
  // NOT_FOUND when unknown; PERMISSION_DENIED "ExpiredToken: ..." when the
  // session expired. A valid session counts one use of `service`.
  absl::StatusOr<sigv4::Credentials> Lookup(absl::string_view access_key_id,
                                            absl::string_view service = "");

  // Every session issued so far (expired ones included), by access key id.
  std::vector<IssuedCredentials> Sessions();

  // Handlers of the three endpoints.
  void HandleSts(const HttpRequest& request, ResponsePlan* plan);
  void HandleImds(const HttpRequest& request, ResponsePlan* plan);
  void HandleContainer(const HttpRequest& request, ResponsePlan* plan);

  uint64_t issued_total();

 private:
  std::string RandomToken(size_t chars, absl::string_view alphabet);
  // Verifies the SigV4 signature of an STS call against static and issued
  // credentials, in the region the caller signed for. PERMISSION_DENIED
  // (message starting with the reason) when it does not hold.
  absl::Status VerifyStsSignature(const HttpRequest& request);
  absl::Duration lifetime() const;

  const v1::EmulatorIdentity config_;
  const std::vector<v1::EmulatorCredential> static_;
  Clock* const clock_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, IssuedCredentials> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> imds_tokens_ ABSL_GUARDED_BY(mu_);
  uint64_t issued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
};

// An AWS Query-protocol XML document: <root xmlns=ns> with nested elements.
// Values are escaped. Exposed for the CloudWatch Query handler.
struct XmlNode {
  std::string name;
  std::string text;
  std::vector<XmlNode> children;
  XmlNode& Add(std::string child_name, std::string child_text = "");
};
std::string RenderXml(const XmlNode& root, absl::string_view xmlns);
// The Query-protocol error document (<ErrorResponse><Error>...).
std::string QueryErrorXml(absl::string_view xmlns, absl::string_view code,
                          absl::string_view message,
                          absl::string_view request_id);

}  // namespace emulator
}  // namespace fleetcanary

#endif  // FLEETCANARY_EMULATOR_IDENTITY_IDENTITY_H_
