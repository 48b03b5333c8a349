#include "analysis/detection_config.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/duration.pb.h"

namespace fleetcanary::analysis {

namespace {

// `d` when `v` is unset (0), else `v`.
double OrDefault(double v, double d) { return v == 0 ? d : v; }

// Whether `d` is unset or zero.
bool IsZero(bool has, const google::protobuf::Duration& d) {
  return !has || (d.seconds() == 0 && d.nanos() == 0);
}

// Fills the documented defaults into the zero fields of `c`.
void FillDefaults(v1::DetectionConfig* c) {
  c->set_false_alarms_per_month(OrDefault(c->false_alarms_per_month(), 1));
  c->set_p0_floor(OrDefault(c->p0_floor(), 1e-4));
  c->set_p1_ratio(OrDefault(c->p1_ratio(), 10));
  c->set_mode_rr1(OrDefault(c->mode_rr1(), 3));
  c->set_alpha(OrDefault(c->alpha(), 0.01));
  c->set_p0_prior(OrDefault(c->p0_prior(), 5e-4));
  c->set_p0_prior_weight(OrDefault(c->p0_prior_weight(), 3000));
  c->set_fix_alpha(OrDefault(c->fix_alpha(), 0.05));
  c->set_trend_alpha(OrDefault(c->trend_alpha(), 0.01));
  c->set_trend_fdr_q(OrDefault(c->trend_fdr_q(), 0.05));
  c->set_suspect_fraction(OrDefault(c->suspect_fraction(), 0.5));
  if (c->hard_down_consecutive() == 0) c->set_hard_down_consecutive(3);
  if (c->hard_down_agents() == 0) c->set_hard_down_agents(2);
  if (IsZero(c->has_trend_window(), c->trend_window())) {
    c->mutable_trend_window()->set_seconds(3600);
  }
  if (IsZero(c->has_comparison_bucket(), c->comparison_bucket())) {
    c->mutable_comparison_bucket()->set_seconds(60);
  }
}

// OK when `v` is finite and in [lo, hi] ((lo, hi] when `open_lo`).
absl::Status InRange(const char* name, double v, double lo, double hi,
                     bool open_lo) {
  const bool ok = std::isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi;
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("detection.", name, ": ", v, " is out of range ",
                   open_lo ? "(" : "[", lo, ", ", hi, "]"));
}

// The first field of `c` out of its range, in field order.
absl::Status CheckRanges(const v1::DetectionConfig& c) {
  for (absl::Status s : {
           InRange("false_alarms_per_month", c.false_alarms_per_month(), 0, 1e6,
                   true),
           InRange("p0_floor", c.p0_floor(), 0, 0.5, true),
           InRange("p1_ratio", c.p1_ratio(), 1.01, 1e4, false),
           InRange("mode_rr1", c.mode_rr1(), 1.01, 1e3, false),
           InRange("alpha", c.alpha(), 0, 0.5, true),
           InRange("fix_p_bad", c.fix_p_bad(), 0, 0.5, false),
           InRange("fix_p_good", c.fix_p_good(), 0, 0.5, false),
           InRange("p0_prior", c.p0_prior(), 0, 0.5, true),
           InRange("p0_prior_weight", c.p0_prior_weight(), 0, 1e9, true),
           InRange("fix_alpha", c.fix_alpha(), 0, 0.5, true),
           InRange("trend_alpha", c.trend_alpha(), 0, 0.5, true),
           InRange("trend_fdr_q", c.trend_fdr_q(), 0, 0.5, true),
           InRange("suspect_fraction", c.suspect_fraction(), 0, 0.99, true),
           InRange("probes_per_stream_per_month",
                   c.probes_per_stream_per_month(), 0, 1e12, false),
       }) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::DetectionConfig> ResolveDetectionConfig(
    const v1::DetectionConfig& in) {
  v1::DetectionConfig c = in;
  FillDefaults(&c);
  if (absl::Status s = CheckRanges(c); !s.ok()) return s;
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
