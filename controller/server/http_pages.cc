// The controller's HTTP side: /metrics and the pages beside it.
#include "absl/strings/str_cat.h"
#include "common/metrics/process_metrics.h"
#include "common/status/status_util.h"
#include "controller/server/controller_server_impl.h"
#include "controller/server/report_page.h"
#include "controller/web/status_data.h"

namespace fleetcanary {
namespace controller {

absl::Status ControllerServerImpl::StartHttp() {
  const v1::ControllerConfig& c = options_.config;
  if (c.http_listen().empty()) return absl::OkStatus();
  FC_ASSIGN_OR_RETURN(http_, MetricsHttpServer::Create(c.http_listen()));
  http_->Register(metrics_->collectable());
  process_metrics_ = NewProcessMetrics({"fleetcanary-controller"});
  http_->Register(process_metrics_);
  http_->AddPage("/status", [this] { return StatusPage(); });
  http_->AddQueryPage("/report", [this](const std::string& query) {
    return ReportPage(query);
  });
  http_->AddPage("/readyz", [this] { return ReadyPage(); });
  // Liveness: the process serves HTTP. A failing store is a readiness
  // matter (a restart would not fix a full or locked disk).
  http_->AddPage("/healthz", [] {
    return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
  });
  return absl::OkStatus();
}

HttpPage ControllerServerImpl::StatusPage() {
  VerdictSource* source = verdicts_ != nullptr
                              ? static_cast<VerdictSource*>(verdicts_.get())
                              : verdict_source_.get();
  absl::StatusOr<StatusPageData> data = CollectStatusPageData(
      store_.get(), source, scheduler_.get(), clock_->Now(), absl::Hours(6));
  if (!data.ok()) {
    return HttpPage{"text/plain; charset=utf-8",
                    std::string(data.status().message()), 500};
  }
  return HttpPage{"text/html; charset=utf-8", RenderStatusPage(*data)};
}

HttpPage ControllerServerImpl::ReportPage(const std::string& query) {
  return ServeReportPage(admin_core_.get(), clock_, query);
}

HttpPage ControllerServerImpl::ReadyPage() {
  absl::MutexLock lock(&health_mu_);
  if (draining_) {
    return HttpPage{"text/plain; charset=utf-8", "draining\n", 503};
  }
  if (!store_up_) {
    return HttpPage{"text/plain; charset=utf-8",
                    absl::StrCat("store: ", store_error_, "\n"), 503};
  }
  return HttpPage{"text/plain; charset=utf-8", "ok\n", 200};
}

}  // namespace controller
}  // namespace fleetcanary
