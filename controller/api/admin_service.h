// The CanaryAdmin gRPC service: a thin adapter over AdminCore (callback API).
//
// Per call: authorize the `authorization` metadata with AdminAuthorizer for
// the method name, hand the request to the core, convert absl::Status to
// grpc::Status (only here). RunProbe and WatchVerdicts have one reactor each:
// events are queued and written one at a time; a client that reads too
// slowly loses outcome events (counted in Done) but never summaries; a
// WatchVerdicts client that falls `max_queued_messages` behind is finished
// with RESOURCE_EXHAUSTED. Client cancellation or deadline cancels the run
// (AdhocProbe{cancel} to its agents). Analyze runs on a worker thread, never
// on a gRPC callback thread.
//
// Thread-safety: gRPC calls it from its threads; all state is locked.
// Ownership: `core` and `authorizer` must outlive the service, and the
// service must outlive the server it is registered with.
#ifndef FLEETCANARY_CONTROLLER_API_ADMIN_SERVICE_H_
#define FLEETCANARY_CONTROLLER_API_ADMIN_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "controller/api/admin_auth.h"
#include "controller/api/admin_core.h"
#include "fleetcanary/v1/admin.grpc.pb.h"

namespace fleetcanary {
namespace controller {

// Default largest admin request: small, since it is buffered whole before
// the service sees it (the bearer token is checked earlier, see
// admin_gate.h).
inline constexpr int kAdminMaxRequestBytes = 1 << 20;

struct AdminServiceOptions {
  // Events queued per stream before outcome events are dropped (RunProbe)
  // or the stream is ended (WatchVerdicts).
  size_t max_queued_messages = 10000;
  // Analyze calls running at once (RESOURCE_EXHAUSTED beyond).
  int max_concurrent_analyze = 4;
  // Largest request accepted (RESOURCE_EXHAUSTED beyond, logged
  // admin_request_too_large). A listener shared with agent sessions
  // receives up to its own, larger limit; an admin-only listener should set
  // SetMaxReceiveMessageSize to this, so gRPC refuses before parsing.
  size_t max_request_bytes = kAdminMaxRequestBytes;
};

class AdminService;

// Creates the service. `core` and `authorizer` must outlive it. A null
// `authorizer` refuses every call (UNAUTHENTICATED, saying how to open it).
std::unique_ptr<AdminService> CreateAdminService(
    const AdminServiceOptions& options, AdminCore* core,
    const AdminAuthorizer* authorizer);

class AdminService : public v1::CanaryAdmin::CallbackService {
 public:
  ~AdminService() override = default;
  // Waits for Analyze workers. Call after the server stopped.
  virtual void Shutdown() = 0;
};

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_API_ADMIN_SERVICE_H_
