// Gathers what the status page shows from the controller's live objects: the
// current verdicts and their history, per-minute client error rates by invoke
// mode and by body size, per-period platform error rates (CloudWatch Errors /
// Invocations) by mode, and the agents.
//
// Thread-safety: as thread-safe as the objects passed in (all are).
#ifndef FLEETCANARY_CONTROLLER_WEB_STATUS_DATA_H_
#define FLEETCANARY_CONTROLLER_WEB_STATUS_DATA_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/api/verdict_source.h"
#include "controller/fleet/scheduler.h"
#include "controller/store/store.h"
#include "controller/web/status_page.h"

namespace fleetcanary {

// Reads the last `window` before `now`. The matrix counts come from the
// incident report's builder (analysis/report/report_builder.h) over the
// same window, so they equal the report's whole-window numbers. `verdicts` and
// `scheduler` may be null (their sections stay empty). Client error rate =
// failures other than AGENT_ERROR / probes, scheduled probes only (ad-hoc
// probes are excluded).
absl::StatusOr<StatusPageData> CollectStatusPageData(
    controller::Store* store, controller::VerdictSource* verdicts,
    controller::Scheduler* scheduler, absl::Time now, absl::Duration window);

}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_WEB_STATUS_DATA_H_
