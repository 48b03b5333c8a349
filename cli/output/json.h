// Machine output: proto messages as JSON (the proto3 JSON mapping, original
// field names), one document per call, so scripts read what the admin API
// returns, made friendlier for scripts:
//   - every scalar field is printed, zeros included (an error rate of 0 is
//     "error_rate": 0, not a missing key);
//   - 64-bit integers are JSON numbers, not strings;
//   - floating-point values are rounded to 10 significant digits and values
//     below 1e-12 in magnitude are 0 (no 2.7e-17 from floating-point noise);
//   - unset times are absent: a Timestamp at the Unix epoch or at the limits
//     of the representable range (placeholders for "never") is left out.
// Outcome files (`probe --outcomes`) are the input of `canaryctl analyze`:
// one {"outcome": ...} line per probe, sorted by start time.
//
// Thread-safety: the functions are thread-safe; an OutcomesFile is used from
// one thread at a time.
#ifndef FLEETCANARY_CLI_OUTPUT_JSON_H_
#define FLEETCANARY_CLI_OUTPUT_JSON_H_

#include <google/protobuf/message.h>

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fleetcanary/v1/outcome.pb.h"

namespace fleetcanary {
namespace cli {

// `msg` as friendly JSON (see above), pretty-printed when `pretty`.
std::string FriendlyJson(const google::protobuf::Message& msg, bool pretty);

// Writes FriendlyJson(msg, pretty) followed by a newline.
void PrintJson(const google::protobuf::Message& msg, std::ostream* out);
// Writes `msg` as one compact JSON line, in the exact proto3 mapping
// (JSON Lines files that are read back by JsonToMessage).
void PrintJsonLine(const google::protobuf::Message& msg, std::ostream* out);

// Collects the outcomes of a probe run and writes them, on Close(), as
// `canaryctl analyze` input: {"outcome": ...} lines ordered by start time
// (outcomes finish out of order), ad-hoc ids cleared, an empty target named
// "adhoc" and an empty region "local", so the offline engine analyses them as
// streams.
class OutcomesFile {
 public:
  // Creates (truncates) `path`; an empty path disables the file.
  absl::Status Open(const std::string& path);
  bool is_open() const { return !path_.empty(); }
  void Add(const v1::Outcome& outcome);
  // Writes every outcome added; also called on a partial (interrupted) run.
  absl::Status Close();

 private:
  std::string path_;
  std::vector<v1::Outcome> outcomes_;
};

}  // namespace cli
}  // namespace fleetcanary

#endif  // FLEETCANARY_CLI_OUTPUT_JSON_H_
