// absl::Status helpers and the single conversion between absl::Status and
// grpc::Status. Modules return absl::Status; only service adapters convert.
#ifndef FLEETCANARY_COMMON_STATUS_STATUS_UTIL_H_
#define FLEETCANARY_COMMON_STATUS_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns early with the status of `expr` when it is not OK.
#define FC_RETURN_IF_ERROR(expr)              \
  do {                                        \
    const ::absl::Status fc_status_ = (expr); \
    if (!fc_status_.ok()) return fc_status_;  \
  } while (0)

#define FC_STATUS_CONCAT_INNER_(a, b) a##b
#define FC_STATUS_CONCAT_(a, b) FC_STATUS_CONCAT_INNER_(a, b)

// `lhs = value of statusor_expr`, or return its error status.
#define FC_ASSIGN_OR_RETURN(lhs, rexpr)                                     \
  FC_ASSIGN_OR_RETURN_IMPL_(FC_STATUS_CONCAT_(fc_statusor_, __LINE__), lhs, \
                            rexpr)
#define FC_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

namespace fleetcanary {

// The canonical codes are the same numbers in both libraries; the message is
// kept as is.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Prefixes the message of a non-OK status with `context` ("loading x: ...").
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_STATUS_STATUS_UTIL_H_
