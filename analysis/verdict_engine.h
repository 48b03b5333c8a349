// The verdict engine: an incremental, deterministic state machine that turns
// per-stream counts into verdicts (docs/architecture.md "Verdicts",
// docs/statistics.md). The controller runs one live; `canaryctl analyze` runs
// the same engine offline over exported outcomes (offline.h).
//
// Verdicts move HEALTHY -> SUSPECT -> REGRESSION -> RECOVERING ->
// FIX_CONFIRMED -> HEALTHY, SUSPECT being the explicit pending state
// (SUSPECT -> HEALTHY when the evidence fades). One verdict exists per kind
// and key:
//
//  STREAM_HEALTH  key = region, target, mode, size class. Bernoulli CUSUM on
//      the stream's failure rate. Failures = kStreamHealthClasses (client-
//      visible platform failures); trials = every outcome except AGENT_ERROR
//      (never counted) and OUTCOME_CLASS_UNSPECIFIED. p0 = the stream's
//      in-control rate: the posterior mean of a Beta prior (mean p0_prior,
//      weight p0_prior_weight probes) updated with the stream's clean
//      history, floored at p0_floor - never a confidence bound of a short
//      window. Clean history = probes outside episodes, added once the CUSUM
//      is back at 0 (the run that ends in an alarm is never learnt).
//      p1 = p1_ratio * p0; h from the false-alarm budget (below), met at
//      the baseline posterior's 90 % quantile (at most 2.5 x p0) rather than
//      at p0 itself, so an uncertain baseline costs sensitivity, not false
//      alarms. An episode leaves REGRESSION when a reverse CUSUM prefers p0
//      over min(p1, 4 x p0); each relapse doubles its threshold. SUSPECT at
//      S >= suspect_fraction * h, REGRESSION at S >= h. The onset is dated by
//      DateSingleChangePoint over the recent history (changepoint.h: point
//      estimate inside a profile-likelihood / Jeffreys interval).
//  MODE_DIFFERENCE  key = region, target, size class (mode unset). The two
//      modes are paired in aligned buckets (comparison_bucket); per bucket the
//      split of failures given x_S + x_B is scored by Wald's SPRT of
//      pi0 = n_S/(n_S+n_B) against pi1 for rate ratio mode_rr1, thresholds
//      ln A, ln B at alpha = beta = `alpha`; crossing ln B accepts H0
//      (SUSPECT -> HEALTHY) and restarts the SPRT, crossing ln A is a
//      REGRESSION. SUSPECT also resolves to HEALTHY when the LLR falls back
//      to <= 0, or when 3000 paired streaming probes pass without a decision
//      (the split test learns only from failures, so clean probes alone
//      never move it). The SPRT restarts at RECOVERING, FIX_CONFIRMED and
//      the return to HEALTHY: failures from before a fix never raise a new
//      SUSPECT. The buffered mode's Beta-prior rate is the baseline the fix
//      test compares against. Evidence: exact binomial p, RR with
//      Clopper-Pearson limits, SPRT LLR and Beta(1,1) mixture LR.
//  SIZE_TREND  key = region, target, mode (size class empty). Cochran-Armitage
//      over log2(bytes) per trend_window, exact when < 20 failures; one-sided
//      increasing p <= trend_alpha AND a Benjamini-Hochberg rejection at
//      trend_fdr_q across all region x target x mode families of the window.
//      One significant window -> SUSPECT, two in a row -> REGRESSION. After
//      FIX_CONFIRMED, a window that began before the confirmation never
//      raises a new SUSPECT.
//  PHANTOM_ERRORS  key = region, target, mode. Platform Errors minus the
//      failures clients saw in the same period (kPlatformVisibleClasses),
//      floored at 0, per platform invocation: a CUSUM with p0 = p0_floor
//      (phantom errors are zero on a healthy platform, so no baseline is
//      learnt), fed by ObservePlatform.
//  HARD_DOWN  key = region, target, mode. >= hard_down_consecutive
//      consecutive failures (kStreamHealthClasses) on >= hard_down_agents
//      agents; SUSPECT while one agent is in such a run. Needs ObserveProbe
//      (per-agent order); batch counts do not feed it.
//
// Recovery (every kind): while in REGRESSION the engine waits for a start
// point for fix confirmation: a declared fix time (DeclareFix, used when it is
// not before the episode's onset, once per episode - after a relapse only the
// reverse CUSUM starts a new test; the test counts probes from
// max(fix time, alarm time)), otherwise the moment a reverse CUSUM (p1 back
// to p0, threshold ln((1-alpha)/alpha)) decides the rate is back - for
// SIZE_TREND the first non-significant window, for HARD_DOWN the end of the
// rule. That moment is the RECOVERING entry; the estimated change time is
// never used as a start. At that moment the test's rates are fixed:
//   p_bad  = max(fix_p_bad or p0_floor, 2 x the pre-incident p0), and never
//            above half the incident-rate estimate (failures per probe from
//            the onset to the last failure before the start);
//   p_good = fix_p_good when below p_bad, else p_bad / 100 - mixed with
//            p_bad / 10 and p_bad / 2 (equal weights), so that a stream back
//            at a non-zero baseline can be confirmed too.
// From it, the any-time-valid likelihood-ratio test of fix_confirmation.h
// (H0 p >= p_bad vs the alternative(s), LR >= 1/fix_alpha) moves the verdict to
// FIX_CONFIRMED. So "fixed" means: the rate is proven back near the
// pre-incident baseline (<= 2x it, or <= the floor) and far below the
// incident rate; a continuing or partial fault (rate still well above
// p_bad) does not pass. The confirmation carries the change time dated by
// DateSingleChangePoint over the episode, its 95 % interval, and the
// post-start Clopper-Pearson bound. A new alarm while RECOVERING or
// FIX_CONFIRMED returns to REGRESSION. FIX_CONFIRMED becomes HEALTHY after as
// many further clean probes as the confirmation needed.
//
// Times: unset times (no onset, no start) are left unset in the Verdict,
// never filled with placeholders.
//
// Budget: each CUSUM family (stream health, phantom) gets half of
// false_alarms_per_month; per stream ARL0 = 2 * streams * probes per stream
// per month / false_alarms_per_month, with streams = max(expected_streams,
// streams seen) and probes per month from the config or, when 0, the observed
// probe rate. h is derived with CusumThresholdForArl0 when a CUSUM is armed
// (re-armed as the baseline doubles, only while S = 0).
//
// Input order: Observe/ObserveProbe in non-decreasing time (all streams
// together); ObservePlatform in non-decreasing period per key. Output order is
// deterministic: transitions in the order they happen; within one event,
// by kind then key.
//
// Restart: SaveState() captures the detectors (proto/fleetcanary/v1/
// detector_state.proto) and Restore() rebuilds an engine that continues
// exactly as the saved one would have: the same transitions and the same
// Current() for the same further input. The memoized CUSUM thresholds are not
// saved: each is a pure function of its (rounded) arguments, and the armed
// thresholds live in the saved CUSUMs.
//
// Thread-safety: not thread-safe; one owner calls it (the controller
// serializes calls).
#ifndef FLEETCANARY_ANALYSIS_VERDICT_ENGINE_H_
#define FLEETCANARY_ANALYSIS_VERDICT_ENGINE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "analysis/detection_config.h"  // ResolveDetectionConfig.
#include "fleetcanary/v1/config.pb.h"
#include "fleetcanary/v1/detector_state.pb.h"
#include "fleetcanary/v1/outcome.pb.h"
#include "fleetcanary/v1/verdict.pb.h"

namespace fleetcanary::analysis {

// Failure classes watched by STREAM_HEALTH, MODE_DIFFERENCE, SIZE_TREND and
// HARD_DOWN: the platform failed the client. HTTP_4XX and THROTTLED are trials
// but not failures (configuration and quota, not platform defects);
// AGENT_ERROR is neither.
bool IsStreamHealthFailure(v1::OutcomeClass c);
// Failures the platform itself would have seen as an invocation error
// (HTTP_5XX, TRUNCATED, RESET, STALLED, TIMEOUT, INTEGRITY): what is
// subtracted from platform Errors to get phantom errors.
bool IsPlatformVisibleFailure(v1::OutcomeClass c);
// Whether an outcome is a trial at all (everything but AGENT_ERROR and
// OUTCOME_CLASS_UNSPECIFIED).
bool IsTrial(v1::OutcomeClass c);

// Counts of one batch of probes of one stream, by outcome class.
struct ClassCounts {
  static constexpr int kSize = v1::OutcomeClass_ARRAYSIZE;
  std::array<uint64_t, kSize> by_class{};

  void Add(v1::OutcomeClass c, uint64_t n = 1) { by_class[c] += n; }
  uint64_t Trials() const;
  uint64_t StreamHealthFailures() const;
};

class VerdictEngine {
 public:
  // `config` is resolved with ResolveDetectionConfig; `expected_streams` is
  // the number of STREAM_HEALTH streams the budget is shared by (0 = count
  // them as they appear). Errors: INVALID_ARGUMENT from the config.
  static absl::StatusOr<std::unique_ptr<VerdictEngine>> Create(
      const v1::DetectionConfig& config, int expected_streams = 0);
  virtual ~VerdictEngine() = default;

  // One probe of `key` by `agent_id` started at `time`. Feeds every detector
  // including HARD_DOWN. AGENT_ERROR is ignored.
  // Errors: INVALID_ARGUMENT for an incomplete key (region, target, mode,
  // size_class), a size class that is not a byte size, or time going back.
  virtual absl::Status ObserveProbe(const v1::StreamKey& key,
                                    const std::string& agent_id,
                                    absl::Time time,
                                    v1::OutcomeClass outcome_class) = 0;

  // A batch of probes of `key` (e.g. one minute from the store) at `time`.
  // Same as ObserveProbe for each, in one grouped step, except HARD_DOWN.
  virtual absl::Status Observe(const v1::StreamKey& key, absl::Time time,
                               const ClassCounts& counts) = 0;

  // One platform-metrics period of (region, target, mode) starting at
  // `period_start`: the platform's Errors and Invocations sums and what the
  // clients saw in the same period (client_failures counted with
  // IsPlatformVisibleFailure). key.size_class is ignored.
  // Errors: INVALID_ARGUMENT for an incomplete key, negative or non-finite
  // values, client_failures > client_probes, or period_start going back.
  virtual absl::Status ObservePlatform(const v1::StreamKey& key,
                                       absl::Time period_start,
                                       double platform_errors,
                                       double platform_invocations,
                                       uint64_t client_failures,
                                       uint64_t client_probes) = 0;

  // Declares that a fix was deployed at `time` (see "Recovery" above).
  virtual void DeclareFix(absl::Time time) = 0;

  // Closes the open comparison buckets and trend windows (end of input).
  virtual void Flush() = 0;

  // Current verdict of every kind and key seen, ordered by kind then key.
  virtual std::vector<v1::Verdict> Current() const = 0;
  // Transitions since the last call, in the order they happened.
  virtual std::vector<v1::Verdict> TakeTransitions() = 0;

  // Serializes every piece of detector state needed to continue exactly as
  // this engine would (plus a fingerprint of the resolved DetectionConfig and
  // expected_streams). Transitions not yet taken are NOT part of the state:
  // call TakeTransitions() (and persist what it returns) before saving, or a
  // restored engine will not report them. Times are kept at nanosecond
  // resolution (that of every Timestamp the engine is fed). Never fails.
  virtual v1::DetectorState SaveState() const = 0;

  // Creates an engine from `config`/`expected_streams` (as Create) and a
  // state saved by SaveState(); it has no pending transitions.
  // Errors: INVALID_ARGUMENT from the config; FAILED_PRECONDITION when the
  // state was saved under another resolved detection config or
  // expected_streams (fingerprint differs) or has another format_version -
  // callers then start fresh with Create; INVALID_ARGUMENT naming the field
  // for a malformed or inconsistent state (unknown enum, bad or duplicate
  // key, failures > trials, out-of-range rates, ...). Never crashes on
  // hostile input: a state that passes the checks yields a working engine.
  // Example:
  //   v1::DetectorState saved = engine->SaveState();  // After TakeTransitions.
  //   ... restart ...
  //   auto e = VerdictEngine::Restore(config, streams, saved);
  //   if (absl::IsFailedPrecondition(e.status())) e = Create(config, streams);
  static absl::StatusOr<std::unique_ptr<VerdictEngine>> Restore(
      const v1::DetectionConfig& config, int expected_streams,
      const v1::DetectorState& state);
};

}  // namespace fleetcanary::analysis

#endif  // FLEETCANARY_ANALYSIS_VERDICT_ENGINE_H_
