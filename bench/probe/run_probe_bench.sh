#!/usr/bin/env bash
# Probe engine vs wrk against the same local canary server, 1 KiB bodies,
# BUFFERED (Content-Length) and RESPONSE_STREAM (chunked) framing; then peak
# RSS with 5,000 concurrent streaming probes.
#
#   bench/probe/run_probe_bench.sh [build-dir]   (default: build)
#   ENDPOINT=emulator bench/probe/run_probe_bench.sh [build-dir]
#
# ENDPOINT=fault (default): the fault server in plain mode. ENDPOINT=emulator:
# the function-url-emulator's two Function URLs of one region (healthy, no
# scenario), which also authenticates nothing, records platform metrics and
# ground truth per request, like the real platform front end would.
#
# wrk is the reference for raw HTTP/1.1 on this machine: one thread, the same
# number of keep-alive connections, no verification. The engine verifies
# every byte and records every timing. Aim: >= 0.5x wrk's request rate.
set -euo pipefail

BUILD=${1:-build}
CONC=${CONC:-32}
COUNT=${COUNT:-30000}
DURATION=${DURATION:-5s}
ENDPOINT=${ENDPOINT:-fault}
case "$ENDPOINT" in
  fault) SERVER="$BUILD/bench/probe/fleetcanary-fault-server" ;;
  emulator) SERVER="$BUILD/emulator/function-url-emulator" ;;
  *) echo "ENDPOINT must be fault or emulator" >&2; exit 1 ;;
esac
BENCH="$BUILD/bench/probe/probe_bench"
for bin in "$SERVER" "$BENCH"; do
  [[ -x "$bin" ]] || { echo "missing $bin: ninja -C $BUILD $(basename "$bin")" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

out=$(mktemp)
ulimit -n "$(ulimit -Hn)"
if [[ "$ENDPOINT" == fault ]]; then
  "$SERVER" --threads=1 >"$out" &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; rm -f "$out"' EXIT
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  port=$(awk '/listening/ {print $2}' "$out")
  buffered="http://127.0.0.1:$port/"
  stream="http://127.0.0.1:$port/f/framing=chunked/"
else
  "$SERVER" --regions=us-east-1 --io_threads=1 --max_connections=20000 >"$out" &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; rm -f "$out"' EXIT
  for _ in $(seq 100); do grep -q '^ready' "$out" && break; sleep 0.05; done
  url_of() { awk -v m="mode=$1" '$1 == "url" && index($0, m) {sub(/.*url=/, ""); print}' "$out"; }
  buffered=$(url_of BUFFERED)
  stream=$(url_of RESPONSE_STREAM)
fi
[[ -n "$buffered" && -n "$stream" ]] || { echo "endpoint did not start:" >&2; cat "$out" >&2; exit 1; }
echo "== endpoint: $ENDPOINT ($buffered, $stream)"

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
