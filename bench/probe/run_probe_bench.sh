#!/usr/bin/env bash
# Probe engine vs wrk against the same local canary server, 1 KiB bodies,
# BUFFERED (Content-Length) and RESPONSE_STREAM (chunked) framing; large-body
# throughput with the engine's small receive buffer vs libcurl's default;
# then peak RSS with 20,000 concurrent streaming probes.
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
# every byte and records every timing. Aim: >= 0.7x wrk's request rate.
#
# Fairness on a shared machine: the endpoint gets a core of its own
# (SERVER_CPU, default 1); wrk and the engine run one after the other on the
# same other core (CLIENT_CPU, default 0), alternating for ROUNDS rounds
# (default 3), and the ratio reported is the median of the rounds' ratios.
#
# STREAMS (default 20000) sets the concurrent-stream count of the last step.
# Each stream needs a descriptor in the engine and one in an endpoint, so the
# streams are spread over two endpoint processes, and the open-file limit is
# raised to the hard limit (and the hard limit too, where that is allowed);
# if the limit still cannot hold STREAMS, the step runs as many as fit and
# says so.
set -euo pipefail

BUILD=${1:-build}
CONC=${CONC:-32}
COUNT=${COUNT:-15000}
DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-3}
ENDPOINT=${ENDPOINT:-fault}
STREAMS=${STREAMS:-20000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
server_pin=(taskset -c "$SERVER_CPU")
client_pin=(taskset -c "$CLIENT_CPU")
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

want_fds=$((STREAMS + 64))
if (($(ulimit -Hn) < want_fds)); then
  ulimit -Hn "$want_fds" 2>/dev/null ||
    echo "note: cannot raise the hard open-file limit $(ulimit -Hn) to $want_fds" >&2
fi
ulimit -n "$(ulimit -Hn)"
echo "== load average at start: $(cat /proc/loadavg)"

tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT

# start_endpoint NAME MAX_CONNECTIONS: starts one endpoint process; sets
# $buffered and $stream to its two base URLs.
start_endpoint() {
  local out="$tmp/$1.out"
  if [[ "$ENDPOINT" == fault ]]; then
    "${server_pin[@]}" "$SERVER" --threads=1 >"$out" &
    pids+=($!)
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
    local port
    port=$(awk '/listening/ {print $2}' "$out")
    buffered="http://127.0.0.1:$port/"
    stream="http://127.0.0.1:$port/f/framing=chunked/"
  else
    "${server_pin[@]}" "$SERVER" --regions=us-east-1 --io_threads=1 \
      --max_connections="$2" >"$out" &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^ready' "$out" && break; sleep 0.05; done
    url_of() { awk -v m="mode=$1" '$1 == "url" && index($0, m) {sub(/.*url=/, ""); print}' "$2"; }
    buffered=$(url_of BUFFERED "$out")
    stream=$(url_of RESPONSE_STREAM "$out")
  fi
  [[ -n "$buffered" && -n "$stream" ]] || { echo "endpoint did not start:" >&2; cat "$out" >&2; exit 1; }
}

start_endpoint main "$STREAMS"
echo "== endpoint: $ENDPOINT ($buffered, $stream)"

wrk_rate() {  # URL -> requests/s
  "${client_pin[@]}" wrk -t1 -c"$CONC" -d"$DURATION" "${1}canary?bytes=1024&seed=7" |
    awk '/Requests\/sec/ {print $2}'
}
engine_rate() {  # MODE(buffered|stream) URL -> probes/s (full output to stderr)
  local res
  res=$("${client_pin[@]}" "$BENCH" --url_"$1"="$2" --count="$COUNT" \
    --concurrency="$CONC" --size=1Ki)
  echo "$res" >&2
  awk -v k="${1}_probes_per_second" '$1 == k {print $2}' <<<"$res"
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "== 1 KiB bodies, $CONC connections, keep-alive, $ROUNDS rounds"
ratios_b=()
ratios_s=()
for round in $(seq "$ROUNDS"); do
  wrk_b=$(wrk_rate "$buffered")
  eng_b=$(engine_rate buffered "$buffered")
  wrk_s=$(wrk_rate "$stream")
  eng_s=$(engine_rate stream "$stream")
  r_b=$(bc -l <<<"$eng_b / $wrk_b")
  r_s=$(bc -l <<<"$eng_s / $wrk_s")
  ratios_b+=("$r_b")
  ratios_s+=("$r_s")
  printf 'round %d: buffered engine %s wrk %s ratio %.2f | stream engine %s wrk %s ratio %.2f | loadavg %s\n' \
    "$round" "$eng_b" "$wrk_b" "$r_b" "$eng_s" "$wrk_s" "$r_s" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
printf 'ratio_buffered %.2f\nratio_stream %.2f\n' \
  "$(printf '%s\n' "${ratios_b[@]}" | median)" "$(printf '%s\n' "${ratios_s[@]}" | median)"
echo "loadavg $(cat /proc/loadavg)"

echo "== 1 MiB bodies, keep-alive: engine default (16 KiB receive buffer for a body this big) vs 2 KiB for every size"
for round in 1 2; do
  for buf in default 2048; do
    flag=()
    [[ "$buf" == default ]] || flag=(--receive_buffer="$buf")
    rate=$("${client_pin[@]}" "$BENCH" --url_buffered="$buffered" --count=400 \
      --concurrency=8 --size=1Mi "${flag[@]}" |
      awk '$1 == "buffered_probes_per_second" {print $2}')
    echo "round $round receive_buffer $buf MiB_per_second $rate"
  done
done

echo "== fresh connection per probe (engine only)"
"${client_pin[@]}" "$BENCH" --url_buffered="$buffered" --count="$((COUNT / 3))" \
  --concurrency="$CONC" --size=1Ki --keep_alive=false

streams=$STREAMS
limit=$(ulimit -n)
if ((limit < STREAMS + 16)); then
  streams=$((limit - 16))
  echo "note: open-file limit $limit holds $streams streams, not $STREAMS" >&2
fi
echo "== $streams concurrent streaming probes (two endpoint processes)"
first_stream=$stream
start_endpoint second "$STREAMS"
"${client_pin[@]}" "$BENCH" --url_stream="$first_stream,$stream" --streams="$streams"
echo "loadavg $(cat /proc/loadavg)"
