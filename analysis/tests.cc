#include "analysis/tests.h"

#include <algorithm>
#include <boost/math/distributions/binomial.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "analysis/math_policy.h"

namespace fleetcanary::analysis {
namespace {

using internal::NoThrowPolicy;

// Relative tolerance of "no more likely than the observed outcome".
constexpr double kRelTol = 1e-7;

double LogChoose(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

double NormalUpperTail(double z) {
  return 0.5 * boost::math::erfc(z / std::sqrt(2.0), NoThrowPolicy());
}

absl::Status CheckTrendInput(const std::vector<uint64_t>& x,
                             const std::vector<uint64_t>& n,
                             const std::vector<double>& scores) {
  if (x.size() != n.size() || x.size() != scores.size()) {
    return absl::InvalidArgumentError(
        "trend test: x, n and scores must have the same length");
  }
  if (x.size() < 2) {
    return absl::InvalidArgumentError("trend test: needs at least 2 groups");
  }
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] > n[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("trend test: x[", i, "] > n[", i, "]"));
    }
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("trend test: scores[", i, "] is not finite"));
    }
  }
  if (std::accumulate(n.begin(), n.end(), uint64_t{0}) == 0) {
    return absl::InvalidArgumentError("trend test: no trials");
  }
  return absl::OkStatus();
}

}  // namespace

double FisherExactTwoSided(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  const double r1 = static_cast<double>(a + b);
  const double r2 = static_cast<double>(c + d);
  const double c1 = static_cast<double>(a + c);
  const double total = r1 + r2;
  const uint64_t lo = (a + c > c + d) ? a + c - (c + d) : 0;
  const uint64_t hi = std::min(a + b, a + c);
  const double log_norm = LogChoose(total, c1);
  auto log_pmf = [&](uint64_t x) {
    const double xd = static_cast<double>(x);
    return LogChoose(r1, xd) + LogChoose(r2, c1 - xd) - log_norm;
  };
  const double observed = log_pmf(a) + std::log1p(kRelTol);
  double p = 0;
  for (uint64_t x = lo; x <= hi; ++x) {
    const double lp = log_pmf(x);
    if (lp <= observed) p += std::exp(lp);
  }
  return std::min(1.0, p);
}

double BinomialTestTwoSided(uint64_t successes, uint64_t trials, double p) {
  const boost::math::binomial_distribution<double, NoThrowPolicy> dist(
      static_cast<double>(trials), p);
  const double observed =
      boost::math::pdf(dist, static_cast<double>(successes)) * (1 + kRelTol);
  double sum = 0;
  for (uint64_t i = 0; i <= trials; ++i) {
    const double pi = boost::math::pdf(dist, static_cast<double>(i));
    if (pi <= observed) sum += pi;
  }
  return std::min(1.0, sum);
}

double SplitAlternative(uint64_t n_s, uint64_t n_b, double rr1) {
  const double s = rr1 * static_cast<double>(n_s);
  return s / (s + static_cast<double>(n_b));
}

double SplitLogLikelihoodRatio(uint64_t x_s, uint64_t x_b, double pi0,
                               double pi1) {
  double llr = 0;
  if (x_s > 0) llr += static_cast<double>(x_s) * std::log(pi1 / pi0);
  if (x_b > 0) {
    llr += static_cast<double>(x_b) * std::log((1 - pi1) / (1 - pi0));
  }
  return llr;
}

double SplitMixtureLikelihoodRatio(uint64_t x_s, uint64_t x_b, double pi0) {
  const double s = static_cast<double>(x_s);
  const double b = static_cast<double>(x_b);
  const double log_marginal =
      std::lgamma(s + 1) + std::lgamma(b + 1) - std::lgamma(s + b + 2);
  double log_null = 0;
  if (x_s > 0) log_null += s * std::log(pi0);
  if (x_b > 0) log_null += b * std::log1p(-pi0);
  return std::exp(log_marginal - log_null);
}

ErrorSplit ErrorSplitTest(uint64_t x_s, uint64_t n_s, uint64_t x_b,
                          uint64_t n_b, double confidence, double rr1) {
  ErrorSplit out;
  const uint64_t errors = x_s + x_b;
  out.pi0 = static_cast<double>(n_s) / static_cast<double>(n_s + n_b);
  out.pi1 = SplitAlternative(n_s, n_b, rr1);
  out.sprt_llr = SplitLogLikelihoodRatio(x_s, x_b, out.pi0, out.pi1);
  out.mixture_lr = SplitMixtureLikelihoodRatio(x_s, x_b, out.pi0);
  if (errors == 0) {
    out.rate_ratio = 1;
    out.rate_ratio_interval = {0, std::numeric_limits<double>::infinity()};
    return out;
  }
  out.pi_hat = static_cast<double>(x_s) / static_cast<double>(errors);
  out.p_value = BinomialTestTwoSided(x_s, errors, out.pi0);
  const double exposure = static_cast<double>(n_b) / static_cast<double>(n_s);
  auto to_rr = [&](double pi) {
    return pi >= 1 ? std::numeric_limits<double>::infinity()
                   : pi / (1 - pi) * exposure;
  };
  out.rate_ratio = to_rr(out.pi_hat);
  const RateInterval pi_ci = ClopperPearsonInterval(x_s, errors, confidence);
  out.rate_ratio_interval = {to_rr(pi_ci.lower), to_rr(pi_ci.upper)};
  return out;
}

absl::StatusOr<TrendTest> CochranArmitage(const std::vector<uint64_t>& x,
                                          const std::vector<uint64_t>& n,
                                          const std::vector<double>& scores) {
  if (absl::Status s = CheckTrendInput(x, n, scores); !s.ok()) return s;
  double total_n = 0, total_x = 0, sum_ns = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    total_n += static_cast<double>(n[i]);
    total_x += static_cast<double>(x[i]);
    sum_ns += static_cast<double>(n[i]) * scores[i];
  }
  const double s_bar = sum_ns / total_n;
  const double p_bar = total_x / total_n;
  double numerator = 0, spread = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ds = scores[i] - s_bar;
    numerator += static_cast<double>(x[i]) * ds;
    spread += static_cast<double>(n[i]) * ds * ds;
  }
  TrendTest out;
  const double variance = p_bar * (1 - p_bar) * spread;
  if (variance > 0) {
    out.z = numerator / std::sqrt(variance);
    out.chi2 = out.z * out.z;
    out.p_two_sided = std::min(1.0, 2 * NormalUpperTail(std::fabs(out.z)));
    out.p_increasing = NormalUpperTail(out.z);
  }
  if (total_x < static_cast<double>(kExactTrendBelow) && variance > 0) {
    absl::StatusOr<double> exact = ExactTrendPValue(x, n, scores);
    if (!exact.ok()) return exact.status();
    out.p_increasing = *exact;
    out.exact = true;
  }
  return out;
}

absl::StatusOr<double> ExactTrendPValue(const std::vector<uint64_t>& x,
                                        const std::vector<uint64_t>& n,
                                        const std::vector<double>& scores) {
  if (absl::Status s = CheckTrendInput(x, n, scores); !s.ok()) return s;
  constexpr double kQuantum = 1e7;  // Partial sums are compared at 1e-7.
  constexpr size_t kMaxStates = 2'000'000;
  uint64_t total_x = 0, total_n = 0;
  double observed = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    total_x += x[i];
    total_n += n[i];
    observed += static_cast<double>(x[i]) * scores[i];
  }
  const double log_n = std::log(static_cast<double>(total_n));
  // dist[j][key] = sum over assignments of j failures to the groups seen so
  // far with sum(x_i s_i) == key / kQuantum of prod C(n_i, x_i) N^-x_i.
  std::vector<std::map<int64_t, double>> dist(total_x + 1);
  dist[0][0] = 1.0;
  size_t states = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    std::vector<std::map<int64_t, double>> next(total_x + 1);
    const uint64_t max_here = std::min(n[i], total_x);
    std::vector<double> weight(max_here + 1);
    for (uint64_t k = 0; k <= max_here; ++k) {
      weight[k] = std::exp(
          LogChoose(static_cast<double>(n[i]), static_cast<double>(k)) -
          static_cast<double>(k) * log_n);
    }
    states = 0;
    for (uint64_t j = 0; j <= total_x; ++j) {
      for (const auto& [key, w] : dist[j]) {
        for (uint64_t k = 0; k <= max_here && j + k <= total_x; ++k) {
          const int64_t add =
              std::llround(static_cast<double>(k) * scores[i] * kQuantum);
          next[j + k][key + add] += w * weight[k];
        }
      }
    }
    for (const auto& m : next) states += m.size();
    if (states > kMaxStates) {
      return absl::ResourceExhaustedError(
          "exact trend test: too many distinct sums; use the asymptotic test");
    }
    dist = std::move(next);
  }
  const int64_t observed_key = std::llround(observed * kQuantum);
  double tail = 0, all = 0;
  for (const auto& [key, w] : dist[total_x]) {
    all += w;
    if (key >= observed_key - static_cast<int64_t>(x.size())) tail += w;
  }
  return all > 0 ? std::min(1.0, tail / all) : 1.0;
}

BhResult BenjaminiHochberg(const std::vector<double>& p_values, double q) {
  const size_t m = p_values.size();
  BhResult out;
  out.reject.assign(m, false);
  out.adjusted.assign(m, 1.0);
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return p_values[a] < p_values[b];
  });
  double running = 1.0;
  for (size_t r = m; r-- > 0;) {
    const size_t i = order[r];
    const double scaled =
        p_values[i] * static_cast<double>(m) / static_cast<double>(r + 1);
    running = std::min(running, std::min(1.0, scaled));
    out.adjusted[i] = running;
    out.reject[i] = running <= q;
  }
  return out;
}

}  // namespace fleetcanary::analysis
