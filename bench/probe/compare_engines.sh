#!/usr/bin/env bash
# Probe engine A/B: two builds' probe_bench against the same endpoint, with
# wrk as the reference, in one run.
#
#   bench/probe/compare_engines.sh BEFORE_BUILD AFTER_BUILD [ENDPOINT_BUILD]
#
# ENDPOINT_BUILD (default AFTER_BUILD) provides the function-url-emulator
# (one region, 1 I/O thread, pinned to SERVER_CPU, default 1), so both
# engines probe the very same server. Each of ROUNDS rounds (default 5) runs,
# per mode (BUFFERED, RESPONSE_STREAM), wrk then the before engine then the
# after engine, one after the other on CLIENT_CPU (default 0): 1 KiB bodies,
# CONC (32) keep-alive connections, COUNT (15000) probes. Outside load hits
# the three alike. Prints each round, then per mode the medians of
# engine/wrk for each build and of after/before: the figure to read is
# after/before (1.00 = unchanged).
#
# Only flags that every probe_bench since the first one understands are
# used, so old builds can be compared too.
set -euo pipefail

BEFORE=${1:?usage: compare_engines.sh BEFORE_BUILD AFTER_BUILD [ENDPOINT_BUILD]}
AFTER=${2:?usage: compare_engines.sh BEFORE_BUILD AFTER_BUILD [ENDPOINT_BUILD]}
ENDPOINT_BUILD=${3:-$AFTER}
CONC=${CONC:-32}
COUNT=${COUNT:-15000}
DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER="$ENDPOINT_BUILD/emulator/function-url-emulator"
for bin in "$SERVER" "$BEFORE/bench/probe/probe_bench" "$AFTER/bench/probe/probe_bench"; do
  [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 1; }
done
for tool in wrk bc taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

tmp=$(mktemp -d)
server_pid=""
trap '[[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
taskset -c "$SERVER_CPU" "$SERVER" --regions=us-east-1 --io_threads=1 \
  --max_connections=1000 >"$tmp/endpoint.out" &
server_pid=$!
for _ in $(seq 200); do grep -q '^ready' "$tmp/endpoint.out" && break; sleep 0.05; done
url_of() { awk -v m="mode=$1" '$1 == "url" && index($0, m) {sub(/.*url=/, ""); print}' "$tmp/endpoint.out"; }
declare -A url=([buffered]=$(url_of BUFFERED) [stream]=$(url_of RESPONSE_STREAM))
[[ -n "${url[buffered]}" && -n "${url[stream]}" ]] || {
  echo "endpoint did not start:" >&2
  cat "$tmp/endpoint.out" >&2
  exit 1
}
echo "== endpoint ${url[buffered]} ${url[stream]}; load average $(cut -d' ' -f1-3 /proc/loadavg)"

wrk_rate() {  # MODE -> requests/s
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONC" -d"$DURATION" "${url[$1]}canary?bytes=1024&seed=7" |
    awk '/Requests\/sec/ {print $2}'
}
engine_rate() {  # BUILD MODE -> probes/s
  taskset -c "$CLIENT_CPU" "$1/bench/probe/probe_bench" --url_"$2"="${url[$2]}" \
    --count="$COUNT" --concurrency="$CONC" --size=1Ki |
    awk -v k="${2}_probes_per_second" '$1 == k {print $2}'
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

for mode in buffered stream; do : >"$tmp/$mode.before" >"$tmp/$mode.after" >"$tmp/$mode.ab"; done
for round in $(seq "$ROUNDS"); do
  for mode in buffered stream; do
    w=$(wrk_rate "$mode")
    b=$(engine_rate "$BEFORE" "$mode")
    a=$(engine_rate "$AFTER" "$mode")
    bc -l <<<"$b / $w" >>"$tmp/$mode.before"
    bc -l <<<"$a / $w" >>"$tmp/$mode.after"
    bc -l <<<"$a / $b" >>"$tmp/$mode.ab"
    printf 'round %d %-8s wrk %8.0f before %8.0f after %8.0f after/before %.2f loadavg %s\n' \
      "$round" "$mode" "$w" "$b" "$a" "$(bc -l <<<"$a / $b")" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
for mode in buffered stream; do
  printf '%s: before/wrk %.2f after/wrk %.2f after/before %.2f (medians of %d rounds)\n' "$mode" \
    "$(median <"$tmp/$mode.before")" "$(median <"$tmp/$mode.after")" "$(median <"$tmp/$mode.ab")" "$ROUNDS"
done
