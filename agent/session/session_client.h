// The agent side of AgentSession.Connect: one bidirectional stream to the
// controller, kept for the agent's lifetime.
//
// A driver thread runs the protocol (SessionProtocol, session_protocol.h,
// which also defines AssignmentSink); a gRPC callback reactor per stream only
// moves messages (reads are queued for the driver, writes are issued one at
// a time) and never blocks. Per stream:
//   Hello (identity, region, last acknowledged sequence) → Welcome: the
//   outbox drops everything up to the controller's applied sequence and the
//   send cursor restarts right after it, so everything not acknowledged is
//   resent; AssignmentSets are handed to the AssignmentSink; OutcomeBatches
//   of up to max_batch_outcomes are sent from the outbox with at most
//   max_unacked_batches awaiting their Ack; each Ack deletes what it covers;
//   Heartbeats every heartbeat_interval (the controller's, from Welcome);
//   a stream with no controller message for 2 heartbeat intervals is
//   cancelled.
// On any error the driver waits a jittered exponential backoff (between
// reconnect_min and reconnect_max, from the injected seed) and reconnects.
//
// Thread-safety: all public methods are thread-safe.
#ifndef FLEETCANARY_AGENT_SESSION_SESSION_CLIENT_H_
#define FLEETCANARY_AGENT_SESSION_SESSION_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/outbox/outbox.h"
#include "agent/session/session_protocol.h"
#include "common/grpc/security.h"
#include "common/time/clock.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace agent {

struct SessionClientOptions {
  // "host:port" of the controller's gRPC listener, or a comma-separated
  // list of controller replicas: the client starts with the first, and after
  // a stream that got no Welcome goes to the leader the refusing replica
  // named ("leader=host:port" in its status), else to the next one. A name
  // resolving to several addresses counts as that many entries (TLS still
  // verifies the name), and a leader named by a refusal that is in no entry
  // is dialled directly (at most 8 such), so agents follow the leader behind
  // one DNS name too.
  std::string controller_address;
  // Transport: TLS verifying the controller against tls.ca_file (client
  // certificate cert_file/key_file for mTLS), or plaintext with tls.insecure.
  TlsOptions tls;
  // Identity sent in Hello (last_acked_sequence is filled in).
  v1::Hello hello;
  // Used until the controller's Welcome says otherwise.
  absl::Duration heartbeat_interval = absl::Seconds(10);
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(30);
  // Longest wait for Welcome after opening a stream.
  absl::Duration welcome_timeout = absl::Seconds(10);
  int max_batch_outcomes = 500;
  size_t max_batch_bytes = 1 << 20;
  int max_unacked_batches = 4;
  // Seed of the backoff jitter.
  uint64_t seed = 1;
  size_t max_platform_queue = 100000;
  // Reports in-flight probes in heartbeats (optional).
  std::function<uint32_t()> in_flight;
  // Receives the controller's ad-hoc probes (start or cancel), on the driver
  // thread; must not block. Unset: they are logged and ignored.
  std::function<void(const v1::AdhocProbe&)> on_adhoc_probe;
};

struct SessionClientStats {
  bool connected = false;         // Welcome received on the current stream.
  uint64_t connects_total = 0;    // Streams that got a Welcome.
  uint64_t reconnects_total = 0;  // Streams that ended (then retried).
  uint64_t batches_sent_total = 0;
  uint64_t outcomes_sent_total = 0;
  uint64_t acks_total = 0;
  uint64_t assignment_version = 0;
  uint64_t acked_sequence = 0;
  uint64_t platform_samples_sent_total = 0;
  uint64_t platform_samples_dropped_total = 0;
};

class SessionClient {
 public:
  virtual ~SessionClient() = default;

  // Starts the driver thread (connecting right away). `outbox`, `sink` and
  // `clock` must outlive the client.
  static absl::StatusOr<std::unique_ptr<SessionClient>> Create(
      const SessionClientOptions& options, Outbox* outbox, AssignmentSink* sink,
      Clock* clock);

  // New outcomes were appended to the outbox: send them soon.
  virtual void Notify() = 0;

  // Sends an ad-hoc result live on the stream once it is welcomed (best
  // effort, at most 10000 queued: the outcome also travels through the
  // outbox).
  virtual void SendAdhocResult(v1::AdhocResult result) = 0;

  // Queues platform samples for the controller, sent on the next welcomed
  // stream. The controller upserts them by (region, target, mode, metric,
  // stat, period), so a resend is harmless; samples written to a stream that
  // then breaks may be lost (the reader reports a datapoint again only when
  // it changes). At most `max_platform_queue` samples wait; older ones are
  // dropped and counted.
  virtual void SendPlatformMetrics(v1::PlatformMetricBatch batch) = 0;

  // Blocks until every outcome stored so far is acknowledged, or `timeout`
  // passes (outcomes the outbox's bound dropped are not waited for: they are
  // counted in dropped_total). Returns whether the outbox was emptied.
  virtual bool WaitForFlush(absl::Duration timeout) = 0;

  virtual SessionClientStats stats() = 0;

  // Clean shutdown: sends Goodbye (with the outbox depth) on the current or
  // next welcomed stream, then waits until the controller closes that stream
  // (it marks the agent DRAINED, not LOST) or `timeout` passes. Nothing is
  // sent and no stream is opened after it. Call after WaitForFlush, before
  // Shutdown. Returns whether the controller took the goodbye.
  virtual bool Goodbye(const std::string& reason, absl::Duration timeout) = 0;

  // Half-closes the stream and stops the driver. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace agent
}  // namespace fleetcanary

#endif  // FLEETCANARY_AGENT_SESSION_SESSION_CLIENT_H_
