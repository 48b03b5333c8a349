// Agents faked at the admin core's session boundary
// (AdminCoreDeps::send_adhoc): they record every ad-hoc probe they are sent
// (with the monotonic time of its arrival, and of the first cancel per
// agent) and, while answering is on (the default), answer each probe that
// is not a cancel with OK outcomes, one per (repetition, size, URL), the last
// marked done, delivered to the core's OnAdhocResult from a thread of their
// own (never inside the core's send call). Shared test infrastructure
// (fleetcanary::testing_fake_adhoc_agents).
//
// Thread-safety: all methods are thread-safe. set_core must be called before
// the first probe is sent.
#ifndef FLEETCANARY_TESTS_TESTING_FAKE_ADHOC_AGENTS_H_
#define FLEETCANARY_TESTS_TESTING_FAKE_ADHOC_AGENTS_H_

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "controller/api/admin_core.h"
#include "fleetcanary/v1/session.pb.h"

namespace fleetcanary {
namespace testing {

class FakeAdhocAgents {
 public:
  // `clock` times arrivals (not owned).
  explicit FakeAdhocAgents(Clock* clock);
  ~FakeAdhocAgents();  // Stops answering; joins the thread.

  // The core results go to (not owned).
  void set_core(controller::AdminCore* core) { core_ = core; }
  // Whether probes are answered from now on (a probe sent while off is never
  // answered).
  void set_answer(bool answer);

  // The send_adhoc hook: records the probe and queues it for an answer.
  absl::Status Send(const std::string& agent, const v1::AdhocProbe& p);

  // Monotonic time at which `agent` got a cancel, waiting up to `timeout`.
  std::optional<absl::Duration> CancelTime(const std::string& agent,
                                           absl::Duration timeout);

  // Ad-hoc messages (probes and cancels) sent to `agent` so far.
  size_t received(const std::string& agent);

 private:
  struct Received {
    std::string agent;
    v1::AdhocProbe probe;
    absl::Duration at;
  };
  void Loop();

  Clock* const clock_;
  controller::AdminCore* core_ = nullptr;
  std::thread worker_;
  absl::Mutex mu_;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Duration> cancel_at_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, v1::AdhocProbe>> work_ ABSL_GUARDED_BY(mu_);
  bool answer_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_FAKE_ADHOC_AGENTS_H_
