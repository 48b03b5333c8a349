#!/usr/bin/env bash
# Probe engine vs wrk against the same local canary server (the fault server
# in plain mode), 1 KiB bodies, BUFFERED (Content-Length) and RESPONSE_STREAM
# (chunked) framing; then peak RSS with 5,000 concurrent streaming probes.
#
#   bench/probe/run_probe_bench.sh [build-dir]   (default: build)
#
# wrk is the reference for raw HTTP/1.1 on this machine: one thread, the same
# number of keep-alive connections, no verification. The engine verifies
# every byte and records every timing. Aim: >= 0.5x wrk's request rate.
set -euo pipefail

BUILD=${1:-build}
CONC=${CONC:-32}
COUNT=${COUNT:-30000}
DURATION=${DURATION:-5s}
SERVER="$BUILD/bench/probe/fleetcanary-fault-server"
BENCH="$BUILD/bench/probe/probe_bench"
for bin in "$SERVER" "$BENCH"; do
  [[ -x "$bin" ]] || { echo "missing $bin: ninja -C $BUILD fleetcanary-fault-server probe_bench" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

out=$(mktemp)
ulimit -n "$(ulimit -Hn)"
"$SERVER" --threads=1 >"$out" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
port=$(awk '/listening/ {print $2}' "$out")
buffered="http://127.0.0.1:$port/"
stream="http://127.0.0.1:$port/f/framing=chunked/"

wrk_rate() {  # URL -> requests/s
  wrk -t1 -c"$CONC" -d"$DURATION" "${1}canary?bytes=1024&seed=7" |
    awk '/Requests\/sec/ {print $2}'
}

echo "== 1 KiB bodies, $CONC connections, keep-alive"
wrk_b=$(wrk_rate "$buffered")
wrk_s=$(wrk_rate "$stream")
engine=$("$BENCH" --url_buffered="$buffered" --url_stream="$stream" \
  --count="$COUNT" --concurrency="$CONC" --size=1Ki)
echo "$engine"
eng_b=$(awk '/^buffered_probes_per_second/ {print $2}' <<<"$engine")
eng_s=$(awk '/^stream_probes_per_second/ {print $2}' <<<"$engine")
printf 'wrk_buffered_requests_per_second %s\nwrk_stream_requests_per_second %s\n' "$wrk_b" "$wrk_s"
printf 'ratio_buffered %.2f\nratio_stream %.2f\n' \
  "$(bc -l <<<"$eng_b / $wrk_b")" "$(bc -l <<<"$eng_s / $wrk_s")"

echo "== fresh connection per probe (engine only)"
"$BENCH" --url_buffered="$buffered" --count="$((COUNT / 3))" \
  --concurrency="$CONC" --size=1Ki --keep_alive=false

echo "== 5,000 concurrent streaming probes"
"$BENCH" --url_stream="$stream" --streams=5000
