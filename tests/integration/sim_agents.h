// Simulated agents: many AgentSession streams from one process, to load a
// real controller (its ingest benchmark, soak and backpressure test).
//
// Each simulated agent opens one Connect stream (Hello → Welcome), then
// behaves like the agent's session client over a durable outbox: outcomes
// enter its outbox at `rate_per_agent` (or the outbox is always full when
// the rate is 0), and it sends them as OutcomeBatches of at most `batch`
// outcomes with at most `window` batches awaiting their Ack. An Ack removes
// what it covers from the outbox. When the controller stops reading (flow
// control), writes stall, Acks stop and the outbox grows: nothing is lost,
// it is sent later. Heartbeats go every half of the controller's interval
// (from Welcome), queued behind the batches as the agent's are. The outbox is
// a counter (the outcomes are generated from
// their sequence number), so the load generator's memory stays flat.
//
// The outcomes belong to the streams SimFleetYaml() assigns to every agent,
// so the controller stores them (rather than rejecting them as unassigned),
// and their start_time is when they are sent, as for a live agent.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLEETCANARY_TESTS_INTEGRATION_SIM_AGENTS_H_
#define FLEETCANARY_TESTS_INTEGRATION_SIM_AGENTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace testing {

// A realistic outcome (about 160 bytes serialized) of one of the streams
// SimFleetYaml() assigns; `i` varies its stream, timings and class.
v1::Outcome SimOutcome(uint64_t i);

// A fleet file (--fleet) whose schedule assigns every stream of SimOutcome to
// every agent of region "us-east-1" (up to 1,000 agents). Its URLs are on
// loopback (the controller needs --target_allow_loopback); nothing probes
// them.
std::string SimFleetYaml();

struct SimAgentsOptions {
  // The controller's gRPC address (plaintext).
  std::string address;
  int agents = 1000;
  // Most outcomes per OutcomeBatch.
  int batch = 200;
  // Most batches awaiting their Ack per agent.
  int window = 4;
  // HTTP/2 connections per 1,000 agents (streams are multiplexed on them).
  int channels_per_1000 = 50;
  // Outcomes/s entering each agent's outbox; 0 = the outbox is never empty
  // (the agent sends as fast as its window allows).
  double rate_per_agent = 0;
  // How often the outboxes are looked at for outcomes to send (besides on
  // every Ack); with a rate, the batches are about rate × this.
  absl::Duration send_interval = absl::Milliseconds(100);
  // Agent ids are "<id_prefix><n>".
  std::string id_prefix = "sim-";
};

// Totals over all agents, in outcomes.
struct SimAgentsStats {
  uint64_t produced = 0;  // Entered the outboxes.
  uint64_t sent = 0;      // Written to the streams (first time).
  uint64_t acked = 0;     // Acknowledged (committed by the controller).
  int welcomed = 0;
  // Streams the controller (or the transport) ended before Stop().
  int streams_ended = 0;
};

class SimAgents {
 public:
  // Opens every agent's stream and waits (up to `bound`) until each was
  // welcomed; nothing is produced before Start().
  static absl::StatusOr<std::unique_ptr<SimAgents>> Connect(
      const SimAgentsOptions& options, absl::Duration bound);
  // Cancels every stream and waits for them to end.
  virtual ~SimAgents() = default;

  // Outcomes start entering the outboxes (time 0 of the rate).
  virtual void Start() = 0;
  // No more outcomes enter the outboxes; what is in them is still sent.
  virtual void StopProducing() = 0;
  // Whether every produced outcome was acknowledged, within `bound`. False
  // at once when a stream ended (it is not reconnected).
  virtual bool WaitAllAcked(absl::Duration bound) = 0;

  virtual SimAgentsStats Stats() = 0;
  // Ack latencies (batch written → its Ack read) since the last call, in
  // milliseconds, unsorted.
  virtual std::vector<double> TakeAckLatenciesMs() = 0;
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_INTEGRATION_SIM_AGENTS_H_
