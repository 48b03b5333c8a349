#!/usr/bin/env bash
# Runs the whole test suite:
#   1. every test of the main build in BUILD_DIR (GoogleTest cases, Node,
#      promtool, Python, the end-to-end demo under Prometheus and Chromium);
#   2. the unit tests again, built with AddressSanitizer +
#      UndefinedBehaviorSanitizer (BUILD_DIR-asan);
#   3. the concurrent modules' tests built with ThreadSanitizer
#      (BUILD_DIR-tsan), against Debian's abseil rebuilt with TSan so that
#      absl::Mutex is visible to it (scripts/build-tsan-abseil.sh).
# No test is retried: a test that fails once fails the run. Any sanitizer
# report fails the test that caused it. Ends with one line
# "tests: N passed, N failed" counting all three passes.
#
# Usage: scripts/run-tests.sh [BUILD_DIR]
#   SANITIZERS=0   skip passes 2 and 3 (a quick local run)
#   CTEST_JOBS=N   parallel tests per pass (default 2)
#   CTEST_ARGS=... extra ctest arguments for every pass (e.g. -R Clock)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
jobs=${CTEST_JOBS:-2}

# Network tests open many loopback sockets at once: take every descriptor the
# hard limit allows. A test that needs more than that says so in one line.
hard=$(ulimit -Hn)
if [[ "$hard" == unlimited ]]; then hard=$(cat /proc/sys/fs/nr_open); fi
ulimit -Sn "$hard"
echo "run-tests: open-file limit $(ulimit -Sn)"

passed=0
failed=0
failed_names=()
# Runs ctest with the given arguments, echoes its output, adds its counts.
run_ctest() {
  local log rc=0
  log=$(mktemp)
  ctest --output-on-failure --timeout 600 -j "$jobs" ${CTEST_ARGS:-} "$@" \
    2>&1 | tee "$log" || rc=$?
  local line
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  if [[ -n "$line" ]]; then
    local f total
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + total - f))
    failed=$((failed + f))
    local name
    while IFS= read -r name; do
      failed_names+=("$pass_name: $name")
    done < <(sed -n '/The following tests FAILED:/,$p' "$log" |
             sed -nE 's/^[[:space:]]+[0-9]+ - (.*)$/\1/p')
  else
    echo "run-tests: ctest ran no test (exit $rc) for: $*" >&2
    failed=$((failed + 1))
    failed_names+=("$pass_name: ctest ran no test (exit $rc)")
  fi
  rm -f "$log"
  return 0
}

echo "run-tests: pass 1/3: main build ($build_dir)"
pass_name=main
run_ctest --test-dir "$build_dir"

if [[ "${SANITIZERS:-1}" != 0 ]]; then
  configure() {  # DIR SANITIZE [extra cmake args]
    local dir=$1 san=$2
    shift 2
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DFLEETCANARY_SANITIZE="$san" "$@" >/dev/null
  }

  echo "run-tests: pass 2/3: unit tests under AddressSanitizer + UBSan (${build_dir}-asan)"
  pass_name=asan
  configure "${build_dir}-asan" address,undefined
  cmake --build "${build_dir}-asan" -j "$(nproc)" --target fleetcanary_unit_tests
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest --test-dir "${build_dir}-asan" -L '^unit'

  echo "run-tests: pass 3/3: concurrent modules under ThreadSanitizer (${build_dir}-tsan)"
  pass_name=tsan
  absl_tsan=${FLEETCANARY_TSAN_ABSEIL:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetcanary/absl-tsan}
  bash scripts/build-tsan-abseil.sh "$absl_tsan"
  configure "${build_dir}-tsan" thread
  cmake --build "${build_dir}-tsan" -j "$(nproc)" --target fleetcanary_concurrent_tests
  LD_LIBRARY_PATH="$absl_tsan/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp \
    run_ctest --test-dir "${build_dir}-tsan" -L '^unit_concurrent$'
fi

# Every failure again, by pass, so that the end of the log names them all.
for name in "${failed_names[@]}"; do echo "run-tests: FAILED $name"; done
echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
