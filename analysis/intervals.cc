#include "analysis/intervals.h"

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/special_functions/beta.hpp>
#include <cmath>

#include "analysis/math_policy.h"

namespace fleetcanary::analysis {

using internal::NoThrowPolicy;

RateInterval WilsonInterval(uint64_t failures, uint64_t trials,
                            double confidence) {
  if (trials == 0) return {0.0, 1.0};
  const boost::math::normal_distribution<double, NoThrowPolicy> normal;
  const double z = boost::math::quantile(normal, 0.5 + confidence / 2);
  const double n = static_cast<double>(trials);
  const double k = static_cast<double>(failures);
  const double z2 = z * z;
  const double center = (k + z2 / 2) / (n + z2);
  const double half = z / (n + z2) * std::sqrt(k * (n - k) / n + z2 / 4);
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

RateInterval ClopperPearsonInterval(uint64_t failures, uint64_t trials,
                                    double confidence) {
  if (trials == 0) return {0.0, 1.0};
  const double tail = (1 - confidence) / 2;
  const double k = static_cast<double>(failures);
  const double n = static_cast<double>(trials);
  RateInterval out{0.0, 1.0};
  if (failures > 0) {
    out.lower = boost::math::ibeta_inv(k, n - k + 1, tail, NoThrowPolicy());
  }
  if (failures < trials) {
    out.upper = boost::math::ibeta_inv(k + 1, n - k, 1 - tail, NoThrowPolicy());
  }
  return out;
}

double ClopperPearsonUpperBound(uint64_t failures, uint64_t trials,
                                double confidence) {
  if (trials == 0 || failures >= trials) return 1.0;
  const double k = static_cast<double>(failures);
  const double n = static_cast<double>(trials);
  return boost::math::ibeta_inv(k + 1, n - k, confidence, NoThrowPolicy());
}

uint64_t ZeroFailureSampleSize(double p_star, double alpha) {
  return static_cast<uint64_t>(
      std::ceil(std::log(alpha) / std::log1p(-p_star)));
}

double BetaQuantile(double a, double b, double prob) {
  return boost::math::ibeta_inv(a, b, prob, NoThrowPolicy());
}

}  // namespace fleetcanary::analysis
