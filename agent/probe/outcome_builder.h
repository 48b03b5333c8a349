// Outcome building for the probe engine (internal to agent/probe/; the
// public contract is probe_engine.h): turns what was observed about one
// invocation into its v1::Outcome. The decision (class, transfer end,
// detail) is classify.h's; this file gathers the facts for it and records
// labels, timings and byte counts.
//
// Timings: DNS, connect and TLS come from libcurl's timers and are left
// unset on a reused connection; request_sent only once the connection was
// ready; headers_received, first_body_byte, last_byte and total are measured
// from the transfer's start on the engine's clock.
//
// Thread-safety: called on the engine's loop thread (pure functions of
// their arguments, plus libcurl's getinfo on the transfer's handle).
#ifndef FLEETCANARY_AGENT_PROBE_OUTCOME_BUILDER_H_
#define FLEETCANARY_AGENT_PROBE_OUTCOME_BUILDER_H_

#include <curl/curl.h>

#include <string>

#include "absl/time/time.h"
#include "agent/probe/probe_engine.h"
#include "agent/probe/transfer.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace probe_internal {

// Copies `r`'s labels (agent, region, target, mode, sizes, ids, seed) into
// `o` and sets its start_time to `start_time`.
void FillLabels(const ProbeRequest& r, absl::Time start_time, v1::Outcome* o);

// The outcome of a request that never became a transfer (refused before
// touching the network, or the engine shut down first): AGENT_ERROR with
// `detail`, labels of `r` started at `start_time`, zero total time.
v1::Outcome NotStartedOutcome(const ProbeRequest& r, absl::Time start_time,
                              std::string detail);

// Completes `t->outcome` (labels already filled) for a transfer that libcurl
// ended with `code` (CURLE_OK when the engine removed it itself) and that
// ended at `now` on the engine's monotonic clock. Reads libcurl's timers and
// counters from `t->easy`, which must still be held. A transfer whose every
// address the target guard refused becomes AGENT_ERROR.
void CompleteOutcome(Transfer* t, CURLcode code, absl::Duration now);

}  // namespace probe_internal
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_PROBE_OUTCOME_BUILDER_H_
