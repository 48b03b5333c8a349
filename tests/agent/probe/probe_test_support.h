// What the probe engine's tests share: protobuf durations in and out, a
// one-line description of an outcome for failure messages, and running one
// probe, or many at once, to their outcomes.
//
// Thread-safety: functions are thread-safe; RunProbe blocks its caller.
#ifndef FLEETCANARY_TESTS_AGENT_PROBE_PROBE_TEST_SUPPORT_H_
#define FLEETCANARY_TESTS_AGENT_PROBE_PROBE_TEST_SUPPORT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/probe/probe_engine.h"
#include "fleetcanary/v1/outcome.pb.h"
#include "google/protobuf/duration.pb.h"

namespace fleetcanary {
namespace testing {

// `d` as an absl::Duration.
absl::Duration FromProto(const google::protobuf::Duration& d);

// Sets `out` to `d` (nanosecond precision).
void SetDuration(absl::Duration d, google::protobuf::Duration* out);

// "CLASS/TRANSFER_END status=.. http=.. received=n/m detail=..".
std::string Describe(const v1::Outcome& o);

// Starts `request` on `engine` and returns its outcome. Fails the test (not
// fatally; an empty outcome is returned) when it does not complete within
// `bound`, a safety limit.
v1::Outcome RunProbe(ProbeEngine* engine, ProbeRequest request,
                     absl::Duration bound);

// Starts every request on `engine` at once and waits until all completed,
// at most `bound` (a safety limit). Returns whether they all did; then
// (*outcomes)[i] is the outcome of requests[i].
bool RunProbesConcurrently(ProbeEngine* engine,
                           const std::vector<ProbeRequest>& requests,
                           absl::Duration bound,
                           std::vector<v1::Outcome>* outcomes);

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_AGENT_PROBE_PROBE_TEST_SUPPORT_H_
