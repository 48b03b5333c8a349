#include "analysis/detectors/context.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/base/const_init.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "analysis/cusum.h"
#include "analysis/detectors/common.h"

namespace fleetcanary::analysis::detectors {

double Context::CeilToGrid(double x, double steps) {
  if (x <= 0) return x;
  return std::pow(10, std::ceil(std::log10(x) * steps - 1e-9) / steps);
}

double Context::Threshold(double p0, double p1_ratio, double ic_ratio,
                          double arl0, double* p0_used) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache =  // Guarded by mu.
      new std::map<std::tuple<double, double, double, double>, double>();
  const double q0 = std::min(CeilToGrid(p0, 16), kMaxP0);
  const double q1 = std::min(p1_ratio * q0, q0 + (0.999 - q0) * 0.5);
  const double qr = std::clamp(CeilToGrid(ic_ratio, 16), 1.0, kMaxIcRatio);
  const double qa = CeilToGrid(arl0, 16);
  *p0_used = q0;
  const auto key = std::make_tuple(q0, q1, qr, qa);
  {
    absl::MutexLock lock(&mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  absl::StatusOr<double> h =
      CusumThresholdForArl0At(q0, q1, std::min(qr * q0, 0.5), qa);
  if (!h.ok()) h = CusumThresholdForArl0(q0, q1, qa);
  // Parameters are clamped by the caller, so this cannot fail; fall back
  // to the SPRT constant if it ever does.
  const double value = h.ok() ? std::max(*h, 1e-3) : std::log(99.0);
  absl::MutexLock lock(&mu);
  cache->emplace(key, value);
  return value;
}

}  // namespace fleetcanary::analysis::detectors
