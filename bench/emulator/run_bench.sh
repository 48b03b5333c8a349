#!/usr/bin/env bash
# Throughput of function-url-emulator against nginx serving the same bytes.
#
# Usage: bench/emulator/run_bench.sh BUILD_DIR [DURATION_SECONDS] [CONNECTIONS]
#
# Builds nothing: expects BUILD_DIR/emulator/function-url-emulator. Starts
# the emulator (1 io thread, shaping off) and nginx (1 worker, non-daemon,
# temp config, loopback port) pinned to CPU 0, and runs wrk pinned to CPU 1
# for 2 B, 1 KiB and 64 KiB bodies in each mode against both:
#   BUFFERED        emulator /canary (Content-Length)   vs nginx static file
#   RESPONSE_STREAM emulator /canary (chunked, 1 chunk) vs nginx static file
#                   made chunked by the addition module (add_after_body).
# Prints requests/s and the ratio emulator/nginx per case.
set -euo pipefail

BUILD_DIR=${1:?usage: run_bench.sh BUILD_DIR [DURATION_SECONDS] [CONNECTIONS]}
DURATION=${2:-5}
CONNECTIONS=${3:-32}
EMULATOR="$BUILD_DIR/emulator/function-url-emulator"
[[ -x "$EMULATOR" ]] || { echo "missing $EMULATOR (build it first)" >&2; exit 1; }
for tool in wrk nginx curl taskset python3; do
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
  --no_shape_streaming >"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
for _ in $(seq 1 100); do grep -q '^ready' "$WORK/emu.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$WORK/emu.out" || { cat "$WORK/emu.err" >&2; exit 1; }
BUF_URL=$(awk '/^url .*mode=BUFFERED/ {sub(/.*url=/, ""); print; exit}' "$WORK/emu.out")
STR_URL=$(awk '/^url .*mode=RESPONSE_STREAM/ {sub(/.*url=/, ""); print; exit}' "$WORK/emu.out")

# --- nginx, serving the emulator's own bytes --------------------------------
mkdir -p -m 755 "$WORK/www" "$WORK/www/b" "$WORK/www/s" "$WORK/logs"
: >"$WORK/www/empty"
for size in 2 1024 65536; do
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
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/b/2" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/b/2" || { cat "$WORK/nginx.err" >&2; exit 1; }
if ! curl -si "http://127.0.0.1:$NGINX_PORT/s/2" | grep -qi '^transfer-encoding: chunked'; then
  echo "nginx did not answer chunked for the stream case" >&2; exit 1
fi

rps() {
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$1" |
    awk '/^Requests\/sec:/ {print $2}'
}

echo "emulator: 1 io thread on CPU 0; nginx: 1 worker on CPU 0; wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s, CPU 1"
printf '%-16s %8s %14s %14s %8s\n' mode size emulator_rps nginx_rps ratio
for mode in BUFFERED RESPONSE_STREAM; do
  for size in 2 1024 65536; do
    if [[ $mode == BUFFERED ]]; then
      emu_url="${BUF_URL}canary?bytes=$size&seed=1"; ng_url="http://127.0.0.1:$NGINX_PORT/b/$size"
    else
      emu_url="${STR_URL}canary?bytes=$size&seed=1"; ng_url="http://127.0.0.1:$NGINX_PORT/s/$size"
    fi
    e=$(rps "$emu_url"); n=$(rps "$ng_url")
    ratio=$(python3 -c "print(f'{float($e)/float($n):.2f}')")
    printf '%-16s %8s %14s %14s %8s\n' "$mode" "$size" "$e" "$n" "$ratio"
  done
done
