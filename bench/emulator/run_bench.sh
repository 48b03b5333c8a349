#!/usr/bin/env bash
# Throughput of function-url-emulator against nginx serving the same bytes.
#
# Usage: bench/emulator/run_bench.sh BUILD_DIR [DURATION_SECONDS] [CONNECTIONS]
#        (environment: SIZES, ROUNDS, EMU_ARGS)
#
# Builds nothing: expects BUILD_DIR/emulator/function-url-emulator. Starts
# the emulator (1 io thread, shaping off) and nginx (1 worker, non-daemon,
# temp config, loopback port) pinned to CPU 0, and runs wrk pinned to CPU 1
# for each body size of SIZES (default 2 B, 1 KiB, 64 KiB, 256 KiB) in each
# mode against both:
#   BUFFERED        emulator /canary (Content-Length)   vs nginx static file
#   RESPONSE_STREAM emulator /canary (chunked, 1 chunk) vs nginx static file
#                   made chunked by the addition module (add_after_body).
# Each case runs ROUNDS (default 3) times, emulator and nginx alternating, so
# that load from elsewhere on the machine hits both alike. Prints per case the
# mean requests/s of each, their ratio (the figure), the server CPU
# (utime+stime from /proc/PID/stat, nginx master and worker) per request and
# its ratio, and the load average.
# EMU_ARGS adds emulator flags (e.g. EMU_ARGS=--payload_cache_mib=0 measures
# bodies generated per response, as for probes with a fresh seed each).
set -euo pipefail

BUILD_DIR=${1:?usage: run_bench.sh BUILD_DIR [DURATION_SECONDS] [CONNECTIONS]}
DURATION=${2:-5}
CONNECTIONS=${3:-32}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-2 1024 65536 262144}
read -r -a size_list <<<"$SIZES"
first_size=${size_list[0]:?SIZES is empty}  # nginx readiness and framing checks
read -r -a EMU_EXTRA <<<"${EMU_ARGS:-}"
EMULATOR="$BUILD_DIR/emulator/function-url-emulator"
[[ -x "$EMULATOR" ]] || { echo "missing $EMULATOR (build it first)" >&2; exit 1; }
for tool in wrk nginx curl taskset python3 pgrep; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
chmod 755 "$WORK"  # nginx workers may run as another user.
EMU_PID=""
NGINX_PID=""
cleanup() {
  [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null || true
  [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- emulator ---------------------------------------------------------------
taskset -c 0 "$EMULATOR" --regions=us-east-1 --io_threads=1 \
  --no_shape_streaming "${EMU_EXTRA[@]}" >"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
for _ in $(seq 1 100); do grep -q '^ready' "$WORK/emu.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$WORK/emu.out" || { cat "$WORK/emu.err" >&2; exit 1; }
BUF_URL=$(awk '/^url .*mode=BUFFERED/ {sub(/.*url=/, ""); print; exit}' "$WORK/emu.out")
STR_URL=$(awk '/^url .*mode=RESPONSE_STREAM/ {sub(/.*url=/, ""); print; exit}' "$WORK/emu.out")

# --- nginx, serving the emulator's own bytes --------------------------------
mkdir -p -m 755 "$WORK/www" "$WORK/www/b" "$WORK/www/s" "$WORK/logs"
: >"$WORK/www/empty"
for size in $SIZES; do
  curl -sf -o "$WORK/www/b/$size" "${BUF_URL}canary?bytes=$size&seed=1"
  cp "$WORK/www/b/$size" "$WORK/www/s/$size"
done
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/logs/error.log warn;
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    location /s/ { addition_types *; add_after_body /empty; }
  }
}
CONF
mkdir -p "$WORK/tmp"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.err" &
NGINX_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/b/$first_size" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/b/$first_size" || { cat "$WORK/nginx.err" >&2; exit 1; }
if ! curl -si "http://127.0.0.1:$NGINX_PORT/s/$first_size" | grep -qi '^transfer-encoding: chunked'; then
  echo "nginx did not answer chunked for the stream case" >&2; exit 1
fi

# utime+stime in clock ticks of a process and its threads (/proc/PID/stat).
ticks() {
  local total=0 pid f
  for pid in "$@"; do
    f=$(sed 's/.*) //' "/proc/$pid/stat")
    total=$((total + $(awk '{print $12 + $13}' <<<"$f")))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)
NGINX_PIDS=("$NGINX_PID" $(pgrep -P "$NGINX_PID"))

# URL PID... -> "requests/s cpu_us_per_request" of one wrk run.
measure() {
  local url=$1; shift
  local t0 t1 out
  t0=$(ticks "$@")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$url")
  t1=$(ticks "$@")
  awk -v dt=$((t1 - t0)) -v hz="$HZ" '
    /^Requests\/sec:/ {rps = $2}
    / requests in / {n = $1}
    END {printf "%s %.1f\n", rps, (n > 0 ? 1e6 * dt / hz / n : 0)}' <<<"$out"
}

echo "emulator: 1 io thread on CPU 0${EMU_ARGS:+ ($EMU_ARGS)}; nginx: 1 worker on CPU 0; wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s x $ROUNDS rounds (emulator, nginx alternating), CPU 1"
echo "rps: mean of the rounds; ratio = emulator_rps / nginx_rps; cpu: server utime+stime per request (us); cpu_ratio = nginx_cpu / emulator_cpu"
printf '%-16s %8s %12s %12s %7s %9s %9s %9s   %s\n' mode size emulator_rps nginx_rps ratio emu_cpu nginx_cpu cpu_ratio loadavg
for mode in BUFFERED RESPONSE_STREAM; do
  for size in $SIZES; do
    if [[ $mode == BUFFERED ]]; then
      emu_url="${BUF_URL}canary?bytes=$size&seed=1"; ng_url="http://127.0.0.1:$NGINX_PORT/b/$size"
    else
      emu_url="${STR_URL}canary?bytes=$size&seed=1"; ng_url="http://127.0.0.1:$NGINX_PORT/s/$size"
    fi
    runs=()
    for _ in $(seq 1 "$ROUNDS"); do
      runs+=("e $(measure "$emu_url" "$EMU_PID")" "n $(measure "$ng_url" "${NGINX_PIDS[@]}")")
    done
    printf '%s\n' "${runs[@]}" | awk -v mode="$mode" -v size="$size" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
      {rps[$1] += $2; cpu[$1] += $3; k[$1]++}
      END {
        e = rps["e"] / k["e"]; n = rps["n"] / k["n"]
        ec = cpu["e"] / k["e"]; nc = cpu["n"] / k["n"]
        printf "%-16s %8s %12.0f %12.0f %7.2f %9.1f %9.1f %9.2f   %s\n",
               mode, size, e, n, e / n, ec, nc, (ec > 0 ? nc / ec : 0), load
      }'
  done
done
