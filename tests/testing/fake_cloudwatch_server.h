// A CloudWatch GetMetricData endpoint for tests: a real HTTP/1.1 server on
// 127.0.0.1 (port 0), built on Boost.Beast, that speaks what the agent's
// CloudWatch client sends (agent/platform/cloudwatch_client.h): POST / with
// X-Amz-Target GraniteServiceVersion20100801.GetMetricData and an AWS JSON 1.0
// body. Shared test infrastructure (fleetcanary::testing_fake_cloudwatch).
//
// Contract:
//   - Every request's SigV4 signature (service "monitoring",
//     Options::region, Options::credentials, at Options::clock's time, 5 min
//     skew) is checked with common/sigv4's verifier; a bad one is answered
//     403 SignatureDoesNotMatch. Unsigned clients are therefore refused.
//   - Answers come from an in-memory table of datapoints (Set): for each
//     query, the datapoints of series (FunctionName, Resource, MetricName,
//     Stat) of namespace AWS/Lambda with StartTime <= t < EndTime, in time
//     order, `page_size` datapoints per response; a cut result is
//     PartialData and the response carries NextToken "page-<offset>".
//   - Faults on demand: a forced result StatusCode (ForceStatusCode), the
//     next N requests answered with a given HTTP status and body (FailNext,
//     checked after the signature), or requests read and never answered
//     (SetHang).
//   - Every request is recorded (requests()), signed or not.
//
// Thread-safety: all methods are thread-safe. Connections are served one at
// a time on the server's own thread (keep-alive honoured).
#ifndef FLEETCANARY_TESTS_TESTING_FAKE_CLOUDWATCH_SERVER_H_
#define FLEETCANARY_TESTS_TESTING_FAKE_CLOUDWATCH_SERVER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sigv4/sigv4.h"
#include "common/time/clock.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace testing {

class FakeCloudWatchServer {
 public:
  struct Options {
    sigv4::Credentials credentials;
    std::string region = "us-east-1";
    Clock* clock = nullptr;   // Verification time; not owned.
    size_t page_size = 1000;  // Datapoints per response.
  };

  struct Recorded {
    std::string target;        // X-Amz-Target.
    std::string content_type;  // Content-Type.
    nlohmann::json body;       // Parsed request body (null if malformed).
    std::string verify_error;  // Empty when the signature verified.
  };

  // Binds 127.0.0.1:0 and starts serving. Aborts the test on failure.
  explicit FakeCloudWatchServer(const Options& options);
  ~FakeCloudWatchServer();

  // "http://127.0.0.1:<port>/".
  std::string endpoint() const;

  // Sets the datapoint of series (function, resource, metric, stat) at `t`.
  // `resource` empty = the {FunctionName}-only series.
  void Set(const std::string& function, const std::string& resource,
           const std::string& metric, const std::string& stat, absl::Time t,
           double value);
  // Every result gets this StatusCode (e.g. "Forbidden") instead of the
  // computed one; empty restores normal behaviour.
  void ForceStatusCode(const std::string& status);
  // The next `count` requests get this HTTP status and body.
  void FailNext(int count, int http_status, const std::string& body);
  // While set, requests are read but never answered.
  void SetHang(bool hang);

  std::vector<Recorded> requests();

 private:
  void Serve();
  // Returns {status, body} for one request.
  std::pair<int, std::string> Handle(const std::string& method,
                                     const std::string& target,
                                     const std::vector<sigv4::HeaderView>& h,
                                     const std::string& body);

  const Options options_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  absl::Mutex mu_;
  // State below is protected by mu_.
  using SeriesKey =
      std::tuple<std::string, std::string, std::string, std::string>;
  std::map<SeriesKey, std::map<absl::Time, double>> series_
      ABSL_GUARDED_BY(mu_);
  std::string forced_status_ ABSL_GUARDED_BY(mu_);
  int fail_count_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_status_ ABSL_GUARDED_BY(mu_) = 0;
  std::string fail_body_ ABSL_GUARDED_BY(mu_);
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Recorded> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace fleetcanary

#endif  // FLEETCANARY_TESTS_TESTING_FAKE_CLOUDWATCH_SERVER_H_
