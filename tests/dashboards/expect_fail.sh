#!/usr/bin/env bash
# Runs a checker on deliberately broken input and passes only when the checker
# fails AND reports every expected problem (so a checker that rejects
# everything, or nothing, does not pass).
#
# Usage: expect_fail.sh "expected 1" ["expected 2" ...] -- command args...
set -uo pipefail
expected=()
while [[ $# -gt 0 && "$1" != "--" ]]; do expected+=("$1"); shift; done
shift || { echo "usage: expect_fail.sh EXPECTED... -- COMMAND..." >&2; exit 2; }
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [[ $rc -eq 0 ]]; then
  echo "expect_fail: the command accepted broken input" >&2
  exit 1
fi
missing=0
for e in "${expected[@]}"; do
  if ! grep -qF -- "$e" <<<"$out"; then
    echo "expect_fail: not reported: $e" >&2
    missing=1
  fi
done
[[ $missing -eq 0 ]] && echo "expect_fail: rejected as expected (${#expected[@]} problems reported)"
exit $missing
