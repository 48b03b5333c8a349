#include "analysis/detection_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fleetcanary::analysis {

absl::StatusOr<v1::DetectionConfig> ResolveDetectionConfig(
    const v1::DetectionConfig& in) {
  v1::DetectionConfig c = in;
  auto dflt = [](double v, double d) { return v == 0 ? d : v; };
  c.set_false_alarms_per_month(dflt(c.false_alarms_per_month(), 1));
  c.set_p0_floor(dflt(c.p0_floor(), 1e-4));
  c.set_p1_ratio(dflt(c.p1_ratio(), 10));
  c.set_mode_rr1(dflt(c.mode_rr1(), 3));
  c.set_alpha(dflt(c.alpha(), 0.01));
  c.set_p0_prior(dflt(c.p0_prior(), 5e-4));
  c.set_p0_prior_weight(dflt(c.p0_prior_weight(), 3000));
  c.set_fix_alpha(dflt(c.fix_alpha(), 0.05));
  c.set_trend_alpha(dflt(c.trend_alpha(), 0.01));
  c.set_trend_fdr_q(dflt(c.trend_fdr_q(), 0.05));
  c.set_suspect_fraction(dflt(c.suspect_fraction(), 0.5));
  if (c.hard_down_consecutive() == 0) c.set_hard_down_consecutive(3);
  if (c.hard_down_agents() == 0) c.set_hard_down_agents(2);
  if (!c.has_trend_window() ||
      (c.trend_window().seconds() == 0 && c.trend_window().nanos() == 0)) {
    c.mutable_trend_window()->set_seconds(3600);
  }
  if (!c.has_comparison_bucket() || (c.comparison_bucket().seconds() == 0 &&
                                     c.comparison_bucket().nanos() == 0)) {
    c.mutable_comparison_bucket()->set_seconds(60);
  }
  auto in_range = [](const char* name, double v, double lo, double hi,
                     bool open_lo) -> absl::Status {
    const bool ok = std::isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi;
    if (ok) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("detection.", name, ": ", v, " is out of range ",
                     open_lo ? "(" : "[", lo, ", ", hi, "]"));
  };
  for (absl::Status s : {
           in_range("false_alarms_per_month", c.false_alarms_per_month(), 0,
                    1e6, true),
           in_range("p0_floor", c.p0_floor(), 0, 0.5, true),
           in_range("p1_ratio", c.p1_ratio(), 1.01, 1e4, false),
           in_range("mode_rr1", c.mode_rr1(), 1.01, 1e3, false),
           in_range("alpha", c.alpha(), 0, 0.5, true),
           in_range("fix_p_bad", c.fix_p_bad(), 0, 0.5, false),
           in_range("fix_p_good", c.fix_p_good(), 0, 0.5, false),
           in_range("p0_prior", c.p0_prior(), 0, 0.5, true),
           in_range("p0_prior_weight", c.p0_prior_weight(), 0, 1e9, true),
           in_range("fix_alpha", c.fix_alpha(), 0, 0.5, true),
           in_range("trend_alpha", c.trend_alpha(), 0, 0.5, true),
           in_range("trend_fdr_q", c.trend_fdr_q(), 0, 0.5, true),
           in_range("suspect_fraction", c.suspect_fraction(), 0, 0.99, true),
           in_range("probes_per_stream_per_month",
                    c.probes_per_stream_per_month(), 0, 1e12, false),
       }) {
    if (!s.ok()) return s;
  }
  if (c.fix_p_bad() > 0 && c.fix_p_good() >= c.fix_p_bad()) {
    return absl::InvalidArgumentError(
        "detection.fix_p_good must be below detection.fix_p_bad");
  }
  if (c.trend_window().seconds() < 0 || c.comparison_bucket().seconds() < 0) {
    return absl::InvalidArgumentError(
        "detection.trend_window and comparison_bucket must be positive");
  }
  return c;
}

}  // namespace fleetcanary::analysis
