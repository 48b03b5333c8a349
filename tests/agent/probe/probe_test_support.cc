#include "tests/agent/probe/probe_test_support.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace testing {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

std::string Describe(const v1::Outcome& o) {
  return absl::StrCat(v1::OutcomeClass_Name(o.outcome_class()), "/",
                      v1::TransferEnd_Name(o.transfer_end()),
                      " status=", o.status(), " http=", o.http_version(),
                      " received=", o.received_bytes(), "/", o.expected_bytes(),
                      " detail=", o.detail());
}

v1::Outcome RunProbe(ProbeEngine* engine, ProbeRequest request,
                     absl::Duration bound) {
  absl::Notification done;
  v1::Outcome outcome;
  engine->Start(std::move(request), [&](v1::Outcome o) {
    outcome = std::move(o);
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(bound));
  return outcome;
}

bool RunProbesConcurrently(ProbeEngine* engine,
                           const std::vector<ProbeRequest>& requests,
                           absl::Duration bound,
                           std::vector<v1::Outcome>* outcomes) {
  // Shared with the callbacks, which may outlive this call on a timeout.
  struct State {
    absl::Mutex mu;
    std::vector<v1::Outcome> got;
    int remaining = 0;
  };
  auto state = std::make_shared<State>();
  state->got.resize(requests.size());
  state->remaining = static_cast<int>(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    engine->Start(requests[i], [state, i](v1::Outcome o) {
      absl::MutexLock lock(&state->mu);
      state->got[i] = std::move(o);
      --state->remaining;
    });
  }
  absl::MutexLock lock(&state->mu);
  if (!state->mu.AwaitWithTimeout(
          absl::Condition(
              +[](int* n) { return *n == 0; }, &state->remaining),
          bound)) {
    return false;
  }
  *outcomes = state->got;
  return true;
}

}  // namespace testing
}  // namespace fleetcanary
