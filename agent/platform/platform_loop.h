// Feeds the platform-metrics reader from the agent's assignments and sends
// what it reads to the controller.
//
// On every AssignmentSet, the assigned (region, target, mode) streams whose
// Function URL carries a CloudWatch identity become the reader's targets. A
// thread polls the reader at NextPollTime() (on the injected Clock) and
// hands the samples to the session (SessionClient::SendPlatformMetrics).
//
// Thread-safety: all public methods are thread-safe.
#ifndef FLEETCANARY_AGENT_PLATFORM_PLATFORM_LOOP_H_
#define FLEETCANARY_AGENT_PLATFORM_PLATFORM_LOOP_H_

#include <memory>

#include "absl/status/statusor.h"
#include "agent/platform/metrics_reader.h"
#include "agent/session/session_client.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace agent {

class PlatformLoop : public AssignmentSink {
 public:
  ~PlatformLoop() override = default;

  // Starts the polling thread. Dependencies must outlive the loop; the
  // session may be set later (samples read before are kept until then).
  static absl::StatusOr<std::unique_ptr<PlatformLoop>> Create(
      platform::PlatformMetricsReader* reader, Clock* clock);

  virtual void SetSession(SessionClient* session) = 0;
  // Stops polling. Idempotent.
  virtual void Stop() = 0;
  virtual uint64_t polls_total() = 0;
  virtual uint64_t poll_errors_total() = 0;
  // Wall time of the last successful poll; InfinitePast() before one.
  virtual absl::Time last_success() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PLATFORM_PLATFORM_LOOP_H_
