#include "controller/metrics/metric_keys.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/metrics_export.h"

namespace fleetcanary {
namespace controller {
namespace {

// Persisted names: "platform|<metric>|<region>|<target>|<mode label>" and
// "phantom|<region>|<target>|<mode label>".
constexpr char kPlatformPrefix[] = "platform|";
constexpr char kPhantomPrefix[] = "phantom|";

// The mode whose ModeLabel is `label`.
std::optional<v1::InvokeMode> ModeFromLabel(const std::string& label) {
  for (v1::InvokeMode mode :
       {v1::INVOKE_MODE_UNSPECIFIED, v1::BUFFERED, v1::RESPONSE_STREAM}) {
    if (ModeLabel(mode) == label) return mode;
  }
  return std::nullopt;
}

std::optional<PlatformMetric> PlatformMetricFromName(const std::string& name) {
  if (name == "Errors") return PlatformMetric::kErrors;
  if (name == "Invocations") return PlatformMetric::kInvocations;
  if (name == "Url5xxCount") return PlatformMetric::kUrl5xxCount;
  return std::nullopt;
}

// Decodes "<region>|<target>|<mode label>" from parts[first..first+2].
std::optional<TargetMode> TargetModeFrom(const std::vector<std::string>& parts,
                                         size_t first) {
  std::optional<v1::InvokeMode> mode = ModeFromLabel(parts[first + 2]);
  if (!mode) return std::nullopt;
  return TargetMode{parts[first], parts[first + 1], *mode};
}

}  // namespace

SizedStream SizedStreamOf(const v1::StreamKey& key) {
  return {key.region(), key.target(), key.mode(), key.size_class()};
}

std::string PlatformCounterName(const std::string& metric,
                                const std::string& region,
                                const std::string& target,
                                v1::InvokeMode mode) {
  return absl::StrCat(kPlatformPrefix, metric, "|", region, "|", target, "|",
                      ModeLabel(mode));
}

std::string PhantomCounterName(const std::string& region,
                               const std::string& target, v1::InvokeMode mode) {
  return absl::StrCat(kPhantomPrefix, region, "|", target, "|",
                      ModeLabel(mode));
}

CounterKey ParseCounterName(const std::string& name) {
  if (name.rfind(kPlatformPrefix, 0) == 0) {
    std::vector<std::string> p = absl::StrSplit(name, '|');
    if (p.size() == 5) {
      std::optional<PlatformMetric> metric = PlatformMetricFromName(p[1]);
      std::optional<TargetMode> stream = TargetModeFrom(p, 2);
      if (metric && stream) return PlatformCounter{*metric, *stream};
    }
  } else if (name.rfind(kPhantomPrefix, 0) == 0) {
    std::vector<std::string> p = absl::StrSplit(name, '|');
    if (p.size() == 4) {
      if (std::optional<TargetMode> stream = TargetModeFrom(p, 1)) {
        return PhantomCounter{*stream};
      }
    }
  }
  return name;
}

}  // namespace controller
}  // namespace fleetcanary
