// Private to controller/server: the controller's GET /report page, the
// incident evidence report of the admin API's Report RPC rendered as HTML
// (or JSON / Markdown).
//
// Thread-safety: as the AdminCore it reads.
#ifndef FLEETCANARY_CONTROLLER_SERVER_REPORT_PAGE_H_
#define FLEETCANARY_CONTROLLER_SERVER_REPORT_PAGE_H_

#include <string>

#include "common/metrics/metrics_export.h"
#include "common/time/clock.h"
#include "controller/api/admin_core.h"

namespace fleetcanary {
namespace controller {

// Answers GET /report?`query`: ?target=T (default: the target of the current
// non-healthy verdicts), ?since=DURATION (default 6h), ?format=html|json|
// markdown (default html). Same numbers as the Report RPC over
// [now - since, now + 1s] by `clock`.
// Errors are plain-text pages: 400 for a bad parameter or request, 404 when
// there is no current incident or the target is unknown, 503 when `admin`
// is null (the admin API is not up), 500 otherwise.
HttpPage ServeReportPage(AdminCore* admin, Clock* clock,
                         const std::string& query);

}  // namespace controller
}  // namespace fleetcanary

#endif  // FLEETCANARY_CONTROLLER_SERVER_REPORT_PAGE_H_
