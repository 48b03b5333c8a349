// The detection config the verdict engine runs with (verdict_engine.h):
// documented defaults for unset fields and range checks.
#ifndef FLEETCANARY_ANALYSIS_DETECTION_CONFIG_H_
#define FLEETCANARY_ANALYSIS_DETECTION_CONFIG_H_

#include "absl/status/statusor.h"
#include "fleetcanary/v1/config.pb.h"

namespace fleetcanary::analysis {

// Fills the documented defaults into the zero fields of `config` and checks
// ranges. Errors: INVALID_ARGUMENT naming the field.
absl::StatusOr<v1::DetectionConfig> ResolveDetectionConfig(
    const v1::DetectionConfig& config);

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_DETECTION_CONFIG_H_
