#include "analysis/offline.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/replay.h"
#include "analysis/verdict_engine.h"
#include "common/proto/time_convert.h"
#include "common/units/units.h"

namespace fleetcanary::analysis {
namespace {

absl::Status LineError(uint64_t line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

bool ValidMode(v1::InvokeMode m) {
  return m == v1::BUFFERED || m == v1::RESPONSE_STREAM;
}

using ModeKey = std::tuple<std::string, std::string, int>;

struct Probe {
  absl::Time time;
  uint32_t stream;  // Index into streams.
  uint32_t agent;   // Index into agents.
  v1::OutcomeClass cls;
};

// An outcome as the platform reconciliation sees it (ad-hoc ones included:
// they invoke the same function).
struct ClientOutcome {
  absl::Time time;
  uint32_t stream;  // Index into client_keys.
  v1::OutcomeClass cls;
};

// Everything read from the input, in the order read: probe streams and agents
// interned to indexes, the probes, every outcome by mode key, the platform
// table, and the report so far (first and last outcome times).
struct OfflineInput {
  std::vector<v1::StreamKey> streams;
  std::map<std::tuple<std::string, std::string, int, std::string>, uint32_t>
      stream_index;
  std::vector<std::string> agents;
  std::map<std::string, uint32_t> agent_index;
  std::vector<Probe> probes;
  std::vector<ModeKey> client_keys;
  std::map<ModeKey, uint32_t> client_key_index;
  std::vector<ClientOutcome> client_outcomes;
  PlatformPeriodTable platform;
  v1::AnalysisReport report;
  uint64_t outcomes = 0, samples = 0;
  absl::Time last_outcome = absl::InfinitePast();
};

// Reads one line of at most `max_bytes` (without its '\n') into `*line`.
// Sets `*got` to false at end of input; InvalidArgument if the line is longer.
absl::Status ReadBoundedLine(std::istream& in, size_t max_bytes,
                             uint64_t line_no, std::string* line, bool* got) {
  line->clear();
  *got = false;
  for (int c; (c = in.get()) != EOF;) {
    *got = true;
    if (c == '\n') break;
    if (line->size() >= max_bytes) {
      return LineError(line_no + 1,
                       absl::StrCat("line longer than ", max_bytes, " bytes"));
    }
    line->push_back(static_cast<char>(c));
  }
  return absl::OkStatus();
}

// InvalidArgument unless `o` has a valid mode, a region, a target, a start
// time and an outcome class.
absl::Status ValidateOutcome(const v1::Outcome& o, uint64_t line_no) {
  if (!ValidMode(o.mode())) {
    return LineError(line_no,
                     "outcome.mode must be BUFFERED or RESPONSE_STREAM");
  }
  if (o.region().empty()) return LineError(line_no, "outcome.region is empty");
  if (o.target().empty()) return LineError(line_no, "outcome.target is empty");
  if (!o.has_start_time()) {
    return LineError(line_no, "outcome.start_time is missing");
  }
  if (o.outcome_class() == v1::OUTCOME_CLASS_UNSPECIFIED) {
    return LineError(line_no, "outcome.outcome_class is missing");
  }
  return absl::OkStatus();
}

// Adds a valid outcome to `input`: every outcome counts for the platform
// reconciliation, non-ad-hoc ones are also probes of their stream.
// InvalidArgument if it starts before the previous outcome.
absl::Status AddOutcome(const v1::Outcome& o, uint64_t line_no,
                        OfflineInput& input) {
  const absl::Time t = TimeFromProto(o.start_time());
  if (t < input.last_outcome) {
    return LineError(line_no,
                     absl::StrCat("outcome.start_time ", absl::FormatTime(t),
                                  " is before the previous outcome's ",
                                  absl::FormatTime(input.last_outcome)));
  }
  input.last_outcome = t;
  if (input.outcomes == 0) {
    *input.report.mutable_first_outcome() = o.start_time();
  }
  *input.report.mutable_last_outcome() = o.start_time();
  ++input.outcomes;
  const ModeKey mk{o.region(), o.target(), o.mode()};
  auto cit = input.client_key_index.find(mk);
  if (cit == input.client_key_index.end()) {
    cit = input.client_key_index.emplace(mk, input.client_keys.size()).first;
    input.client_keys.push_back(mk);
  }
  input.client_outcomes.push_back({t, cit->second, o.outcome_class()});
  if (!o.adhoc_id().empty()) return absl::OkStatus();
  const std::string size = FormatBytes(o.requested_bytes());
  auto key =
      std::make_tuple(o.region(), o.target(), static_cast<int>(o.mode()), size);
  auto it = input.stream_index.find(key);
  if (it == input.stream_index.end()) {
    v1::StreamKey sk;
    sk.set_region(o.region());
    sk.set_target(o.target());
    sk.set_mode(o.mode());
    sk.set_size_class(size);
    it = input.stream_index.emplace(key, input.streams.size()).first;
    input.streams.push_back(sk);
  }
  auto ait = input.agent_index.find(o.agent_id());
  if (ait == input.agent_index.end()) {
    ait = input.agent_index.emplace(o.agent_id(), input.agents.size()).first;
    input.agents.push_back(o.agent_id());
  }
  input.probes.push_back({t, it->second, ait->second, o.outcome_class()});
  return absl::OkStatus();
}

// Parses one non-blank line (an outcome or a platform sample) into `input`.
absl::Status AddRecord(
    const std::string& line, uint64_t line_no,
    const google::protobuf::util::JsonParseOptions& parse_options,
    OfflineInput& input) {
  v1::AnalysisInputLine record;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(line, &record, parse_options);
  if (!parsed.ok()) {
    return LineError(line_no, std::string(parsed.message()));
  }
  if (record.has_outcome()) {
    const v1::Outcome& o = record.outcome();
    if (absl::Status s = ValidateOutcome(o, line_no); !s.ok()) return s;
    return AddOutcome(o, line_no, input);
  }
  if (record.has_platform_sample()) {
    // Re-read, duplicated and out-of-order datapoints are fine: the table
    // keeps one value per period (replay.h).
    absl::StatusOr<bool> added =
        input.platform.AddSample(record.platform_sample());
    if (!added.ok()) {
      return LineError(line_no, std::string(added.status().message()));
    }
    ++input.samples;
    return absl::OkStatus();
  }
  return LineError(line_no,
                   "expected {\"outcome\": {...}} or "
                   "{\"platform_sample\": {...}}");
}

// Reads every line of `in` into `input`, skipping blank lines; stops at the
// first bad line or when the records exceed options.max_records.
absl::Status ReadInput(std::istream& in, const AnalyzeOptions& options,
                       OfflineInput& input) {
  google::protobuf::util::JsonParseOptions parse_options;
  parse_options.ignore_unknown_fields = false;
  std::string line;
  uint64_t line_no = 0;
  while (true) {
    bool got = false;
    absl::Status read =
        ReadBoundedLine(in, options.max_line_bytes, line_no, &line, &got);
    if (!read.ok()) return read;
    if (!got) break;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (input.outcomes + input.samples >= options.max_records) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "line ", line_no, ": more than ", options.max_records, " records"));
    }
    if (absl::Status s = AddRecord(line, line_no, parse_options, input);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The platform periods complete after adding, per period (replay.h), the
// client counts from every outcome of that mode key.
std::vector<PlatformPeriod> CompletePlatformPeriods(OfflineInput& input) {
  for (const ClientOutcome& c : input.client_outcomes) {
    const ModeKey& k = input.client_keys[c.stream];
    input.platform.AddOutcome(std::get<0>(k), std::get<1>(k),
                              static_cast<v1::InvokeMode>(std::get<2>(k)),
                              c.time, c.cls);
  }
  return input.platform.CompletePeriods();
}

// Feeds `e` the probes in order, each preceded by the platform periods that
// ended by its time, then the remaining periods; stops at the first error.
absl::Status Replay(const OfflineInput& input,
                    const std::vector<PlatformPeriod>& events,
                    VerdictEngine& e) {
  size_t next_event = 0;
  auto feed_platform_until = [&](absl::Time t) -> absl::Status {
    for (; next_event < events.size() &&
           events[next_event].start + events[next_event].length <= t;
         ++next_event) {
      const PlatformPeriod& ev = events[next_event];
      v1::StreamKey k;
      k.set_region(ev.region);
      k.set_target(ev.target);
      k.set_mode(ev.mode);
      absl::Status s =
          e.ObservePlatform(k, ev.start, ev.errors, ev.invocations,
                            ev.visible_failures(), ev.client_probes);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  };
  for (const Probe& p : input.probes) {
    if (absl::Status s = feed_platform_until(p.time); !s.ok()) return s;
    absl::Status s = e.ObserveProbe(input.streams[p.stream],
                                    input.agents[p.agent], p.time, p.cls);
    if (!s.ok()) return s;
  }
  return feed_platform_until(absl::InfiniteFuture());
}

}  // namespace

absl::StatusOr<v1::AnalysisReport> AnalyzeJsonLines(
    std::istream& in, const AnalyzeOptions& options) {
  absl::StatusOr<std::unique_ptr<VerdictEngine>> engine =
      VerdictEngine::Create(options.detection, options.expected_streams);
  if (!engine.ok()) return engine.status();

  OfflineInput input;
  if (absl::Status s = ReadInput(in, options, input); !s.ok()) return s;
  const std::vector<PlatformPeriod> events = CompletePlatformPeriods(input);

  v1::AnalysisReport& report = input.report;
  VerdictEngine& e = **engine;
  if (options.declared_fix_time) {
    e.DeclareFix(*options.declared_fix_time);
    *report.mutable_declared_fix_time() =
        TimeToProto(*options.declared_fix_time);
  }
  if (absl::Status s = Replay(input, events, e); !s.ok()) return s;
  e.Flush();
  report.set_outcomes(input.outcomes);
  report.set_platform_samples(input.samples);
  for (v1::Verdict& v : e.Current()) *report.add_verdicts() = std::move(v);
  for (v1::Verdict& v : e.TakeTransitions()) {
    *report.add_transitions() = std::move(v);
  }
  return std::move(report);
}

}  // namespace fleetcanary::analysis
