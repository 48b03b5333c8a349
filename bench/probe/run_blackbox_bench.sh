#!/usr/bin/env bash
# Probes per CPU-second: the fleetcanary probe engine vs Prometheus
# blackbox_exporter (Debian's prometheus-blackbox-exporter), against the same
# emulator Function URL (BUFFERED, 1 KiB body).
#
#   bench/probe/run_blackbox_bench.sh [build-dir] (default: build)
#   COUNT=20000 CONC=16 bench/probe/run_blackbox_bench.sh build
#
# Needs BUILD/emulator/function-url-emulator, BUILD/bench/probe/probe_bench,
# prometheus-blackbox-exporter and hey (apt-get install
# prometheus-blackbox-exporter hey), taskset, python3, curl.
#
# blackbox_exporter: module `http` (prober http, 200 only, a body check with
# fail_if_body_not_matches_regexp), one process pinned to CPU 1; hey (pinned
# to CPU 0, beside the emulator) drives /probe?module=http&target=URL with
# CONC requests at a time. Each /probe request is one probe; blackbox opens a
# new connection for every probe (it builds a new HTTP client per probe and
# has no keep-alive mode). Its CPU is utime+stime of the exporter process
# from /proc/<pid>/stat before and after the run, so it includes answering
# hey (the /probe handler and the metrics text it returns): that is how
# blackbox_exporter is used.
#
# probe engine: probe_bench (one loop thread, CONC probes in flight, every
# body byte verified, every timing kept, one outcome per probe) pinned to
# CPU 1, once with a new connection per probe (--keep_alive=false, the
# headline: the same connection pattern as blackbox) and once keep-alive.
# Its CPU is the utime+stime of the whole process at exit (wait4 rusage, the
# same kernel counters /proc/<pid>/stat shows), startup included.
#
# The emulator runs on CPU 0 (1 io thread). Prints probes, CPU seconds and
# probes per CPU-second of each, and engine/blackbox ratios.
set -euo pipefail

BUILD=${1:-build}
COUNT=${COUNT:-20000}
CONC=${CONC:-16}
BB_COUNT=$((COUNT / CONC * CONC))  # hey sends n/c requests per worker.
EMULATOR="$BUILD/emulator/function-url-emulator"
BENCH="$BUILD/bench/probe/probe_bench"
for bin in "$EMULATOR" "$BENCH"; do
  [[ -x "$bin" ]] || { echo "missing $bin: ninja -C $BUILD $(basename "$bin")" >&2; exit 1; }
done
for tool in prometheus-blackbox-exporter hey taskset python3 curl; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool (apt-get install prometheus-blackbox-exporter hey util-linux python3 curl)" >&2
    exit 1
  }
done

WORK=$(mktemp -d)
EMU_PID=""
BB_PID=""
cleanup() {
  [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null || true
  [[ -n "$BB_PID" ]] && kill "$BB_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# utime+stime of a running process, in seconds (/proc/<pid>/stat fields 14, 15).
cpu_of() {
  python3 - "$1" <<'PY'
import os, sys
stat = open(f"/proc/{sys.argv[1]}/stat").read()
fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
PY
}

# --- emulator ---------------------------------------------------------------
taskset -c 0 "$EMULATOR" --regions=us-east-1 --io_threads=1 \
  --max_connections=20000 >"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
for _ in $(seq 1 100); do grep -q '^ready' "$WORK/emu.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$WORK/emu.out" || { cat "$WORK/emu.err" >&2; exit 1; }
BASE=$(awk '/^url .*mode=BUFFERED/ {sub(/.*url=/, ""); print; exit}' "$WORK/emu.out")
TARGET="${BASE}canary?bytes=1024&seed=7"

# --- blackbox_exporter ------------------------------------------------------
# The body check: at least 256 characters (1,024 bytes are at least 256 UTF-8
# runes whatever the bytes are), so the exporter reads and scans the whole
# body; a second module asking for 2,000 runes (impossible in 1,024 bytes)
# must fail, which shows the check is applied.
cat >"$WORK/blackbox.yml" <<'YAML'
modules:
  http:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ['(?s)\A.{256,}\z']
  http_must_fail:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ['(?s)\A.{1000}.{1000}']
YAML
BB_PORT=$(free_port)
taskset -c 1 prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" \
  --web.listen-address="127.0.0.1:$BB_PORT" --log.level=warn \
  >"$WORK/bb.out" 2>"$WORK/bb.err" &
BB_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$BB_PORT/metrics" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$BB_PORT/metrics" || { cat "$WORK/bb.err" >&2; exit 1; }
ENC_TARGET=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$TARGET")
PROBE_URL="http://127.0.0.1:$BB_PORT/probe?module=http&target=$ENC_TARGET"
FAIL_URL="http://127.0.0.1:$BB_PORT/probe?module=http_must_fail&target=$ENC_TARGET"
curl -sf "$PROBE_URL" | grep -q '^probe_success 1' || { echo "blackbox probe did not succeed" >&2; curl -s "$PROBE_URL" >&2; exit 1; }
curl -sf "$FAIL_URL" | grep -q '^probe_success 0' || { echo "blackbox body check not applied" >&2; exit 1; }
curl -sf "$PROBE_URL" | grep -q '^probe_http_content_length 1024' || { echo "blackbox did not see 1024 bytes" >&2; exit 1; }

echo "target: $TARGET (1 KiB, BUFFERED); emulator: 1 io thread, CPU 0"
echo "load before: $(cat /proc/loadavg)"

# Warm-up (Go runtime, connection pools), not measured.
taskset -c 0 hey -n 500 -c "$CONC" "$PROBE_URL" >/dev/null
bb_cpu0=$(cpu_of "$BB_PID")
t0=$(date +%s.%N)
taskset -c 0 hey -n "$BB_COUNT" -c "$CONC" "$PROBE_URL" >"$WORK/hey.out"
t1=$(date +%s.%N)
bb_cpu1=$(cpu_of "$BB_PID")
bb_ok=$(awk '/\[200\]/ {print $2}' "$WORK/hey.out")
bb_ok=${bb_ok:-0}
bb_load=$(cat /proc/loadavg)
# Every answered /probe must still say success (spot check after the run).
curl -sf "$PROBE_URL" | grep -q '^probe_success 1' || { echo "blackbox probes fail after the run" >&2; exit 1; }
[[ "$bb_ok" == "$BB_COUNT" ]] || { echo "hey: only $bb_ok of $BB_COUNT /probe requests answered 200" >&2; cat "$WORK/hey.out" >&2; exit 1; }

# --- probe engine -----------------------------------------------------------
# Runs probe_bench pinned to CPU 1 and prints "<probes> <failed> <cpu_seconds>".
engine_run() {
  python3 - "$BENCH" "$BASE" "$COUNT" "$CONC" "$1" <<'PY'
import os, subprocess, sys
bench, base, count, conc, keep = sys.argv[1:]
p = subprocess.Popen(["taskset", "-c", "1", bench, f"--url_buffered={base}",
                      f"--count={count}", f"--concurrency={conc}", "--size=1Ki",
                      f"--keep_alive={keep}"], stdout=subprocess.PIPE, text=True)
out = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
failed = next((int(l.split()[1]) for l in out.splitlines() if l.startswith("buffered_failed")), -1)
if os.waitstatus_to_exitcode(status) != 0 or failed != 0:
    sys.stderr.write(out)
    sys.exit("probe_bench failed")
print(count, failed, f"{ru.ru_utime + ru.ru_stime:.3f}")
PY
}
read -r en_n en_failed en_cpu < <(engine_run false)
en_load=$(cat /proc/loadavg)
read -r ek_n ek_failed ek_cpu < <(engine_run true)
ek_load=$(cat /proc/loadavg)

python3 - "$BB_COUNT" "$bb_cpu0" "$bb_cpu1" "$t0" "$t1" "$en_n" "$en_cpu" "$ek_n" "$ek_cpu" \
  "$bb_load" "$en_load" "$ek_load" <<'PY'
import sys
count, bb0, bb1, t0, t1, en_n, en_cpu, ek_n, ek_cpu = map(float, sys.argv[1:10])
bb_load, en_load, ek_load = sys.argv[10:13]
bb_cpu = bb1 - bb0
bb = count / bb_cpu
en = en_n / en_cpu
ek = ek_n / ek_cpu
print(f"{'prober':<44} {'probes':>7} {'cpu_s':>7} {'probes/cpu_s':>13} {'vs blackbox':>12}   loadavg")
print(f"{'blackbox_exporter (new connection/probe)':<44} {count:>7.0f} {bb_cpu:>7.2f} {bb:>13.0f} {1:>12.2f}   {bb_load}")
print(f"{'probe engine, new connection per probe':<44} {en_n:>7.0f} {en_cpu:>7.2f} {en:>13.0f} {en / bb:>12.2f}   {en_load}")
print(f"{'probe engine, keep-alive':<44} {ek_n:>7.0f} {ek_cpu:>7.2f} {ek:>13.0f} {ek / bb:>12.2f}   {ek_load}")
print(f"blackbox wall rate {count / (t1 - t0):.0f} probes/s")
print(f"ratio_new_connection {en / bb:.2f}")
print(f"ratio_keep_alive {ek / bb:.2f}")
PY
