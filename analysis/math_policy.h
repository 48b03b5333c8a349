// Private to analysis/: the Boost.Math policy every function here
// uses. Errors become NaN/errno instead of exceptions (fleetcanary does not
// use exceptions); callers validate their inputs first, so NaN means a bug.
#ifndef FLEETCANARY_ANALYSIS_MATH_POLICY_H_
#define FLEETCANARY_ANALYSIS_MATH_POLICY_H_

#include <boost/math/policies/policy.hpp>

namespace fleetcanary::analysis::internal {

using NoThrowPolicy = boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::errno_on_error>,
    boost::math::policies::pole_error<boost::math::policies::errno_on_error>,
    boost::math::policies::overflow_error<
        boost::math::policies::errno_on_error>,
    boost::math::policies::evaluation_error<
        boost::math::policies::errno_on_error>,
    boost::math::policies::promote_double<false>>;

}  // namespace fleetcanary::analysis::internal

#endif  // FLEETCANARY_ANALYSIS_MATH_POLICY_H_
