#!/usr/bin/env python3
"""The local fleet demo behind `make demo`.

Starts, on loopback only:
  - function-url-emulator with three regions, replaying the
    `feb2024-incident` scenario in accelerated time (one scenario day = 30 s):
    RESPONSE_STREAM phantom errors in us-east-1 from t=30 s, rising with body
    size, until a hotfix at t=150 s;
  - fleetcanary-controller (SQLite store, Prometheus /metrics, status page);
  - four fleetcanary-agent processes in three regions, with a default schedule
    probing both invoke modes over a 2 B .. 1 MiB size ladder and reading the
    emulator's CloudWatch metrics.
While it runs it prints verdict changes as they happen; at the end it prints a
timeline (detection, signals, fix confirmation, estimated vs true change time),
stops every process it started, and exits non-zero if the regression was not
detected in the right place, PHANTOM_ERRORS itself never reached FIX_CONFIRMED,
or a confirmed signal's fix-time interval misses the true hotfix.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AFFECTED_REGION = "us-east-1"
SIZES = ["2", "1Ki", "64Ki", "1Mi"]
# Scenario timeline in real seconds since the emulator started (see
# emulator/scenarios/feb2024-incident.yaml).
DEFECT_START_S = 30.0
HOTFIX_S = 150.0
SCENARIO_END_S = 180.0
# The demo runs past the scenario until PHANTOM_ERRORS is FIX_CONFIRMED: the
# fix test needs ~2,100 clean platform invocations after RECOVERING.
CONFIRM_DEADLINE_S = HOTFIX_S + 150.0
# Tolerance when checking a fix-time interval against the true hotfix: one
# platform-metrics period (1 s) plus the emulator's timestamp granularity,
# plus one size-rotation cycle (4 sizes x 1 s): the dating assumes one failure
# rate before the change, and periods that probed small sizes stay silent
# whether or not the fault still runs (docs/statistics.md, "Dating under size
# rotation").
HOTFIX_TOLERANCE_S = 6.0


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _die_with_parent():
    """Children get SIGKILL if the demo itself dies (Ctrl-C, a test timeout),
    so no process outlives it."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    """A child process whose stdout lines are collected; stderr goes to a log."""

    def __init__(self, name, args, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.lines = queue.Queue()
        self._log = open(self.log_path, "w")
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            text=True, preexec_fn=_die_with_parent)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix, timeout=30):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            if self.p.poll() is not None:
                break
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith(prefix):
                return line, seen
        raise RuntimeError(
            f"{self.name} did not print '{prefix}' (exit={self.p.poll()}); "
            f"see {self.log_path}")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


SAMPLE = re.compile(r'^(\w+)\{(.*)\} ([-+0-9.eE]+|NaN|\+Inf)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2))),
                        float(m.group(3))))
    return out


def verdict_states(samples):
    """(kind, region, target, mode, size_class) -> current state."""
    states = {}
    for name, labels, value in samples:
        if name == "fleetcanary_verdict" and value == 1:
            key = (labels.get("kind", ""), labels.get("region", ""),
                   labels.get("target", ""), labels.get("mode", ""),
                   labels.get("size_class", "").replace("all", ""))
            states[key] = labels.get("state", "")
    return states


def total(samples, name, **want):
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == x for k, x in want.items()))


def key_text(key):
    kind, region, target, mode, size = key
    return " ".join(p for p in (kind, region, target, mode, size) if p)


def write_configs(work, urls, cloudwatch, rate):
    regions = sorted({u["region"] for u in urls})
    lines = ["targets:", "  - name: canary", "    regions:"]
    for region in regions:
        lines.append(f"      - region: {region}")
        lines.append("        urls:")
        for u in urls:
            if u["region"] != region:
                continue
            lines += [
                f"          - mode: {u['mode']}",
                f"            url: {u['url']}",
                "            cloudwatch:",
                f"              function_name: {u['function']}",
                f"              alias: {u['alias']}",
                f"              endpoint: {cloudwatch[region]}",
            ]
    lines += [
        "schedules:",
        "  - id: demo-ladder",
        "    target: canary",
        f"    sizes: [{', '.join(SIZES)}]",
        f"    rate_per_second: {rate}",
        # One size per platform-metrics period, so the platform's per-alias
        # Errors can be attributed to body sizes.
        "    size_rotation: true",
        "    limits: {timeout: 10s, stall_limit: 5s}",
        "    transport: {keep_alive: true}",
    ]
    fleet = os.path.join(work, "fleet.yaml")
    with open(fleet, "w") as f:
        f.write("\n".join(lines) + "\n")
    controller = os.path.join(work, "controller.yaml")
    with open(controller, "w") as f:
        # One-second platform periods (as the emulator's demo config); an
        # in-control floor of 0.1 % so that fix confirmation fits the demo.
        f.write("heartbeat_interval: 1s\n"
                "metrics_period: 1s\n"
                "metrics_settle: 4s\n"
                "detection:\n"
                "  false_alarms_per_month: 1\n"
                "  p0_floor: 0.001\n"
                "  comparison_bucket: 5s\n"
                "  trend_window: 10s\n")
    return fleet, controller, regions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default="build")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="probes/s per region x mode x size stream")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs, SQLite file)")
    parser.add_argument("--prometheus", action="store_true",
                        help="also run a real Prometheus server scraping the "
                        "controller with dashboards/prometheus/rules.yml, and "
                        "check every rule and dashboard query against it")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="load the status page in headless Chromium during "
                        "the incident, check it, and save a screenshot")
    args = parser.parse_args()
    build = os.path.abspath(args.build_dir)
    binary = {
        "emulator": os.path.join(build, "emulator/function-url-emulator"),
        "controller": os.path.join(build, "controller/server/fleetcanary-controller"),
        "agent": os.path.join(build, "agent/runner/fleetcanary-agent"),
        "canaryctl": os.path.join(build, "cli/canaryctl"),
    }
    for name, path in binary.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"demo: {path} is missing; run 'make build' first")

    work = tempfile.mkdtemp(prefix="fleetcanary-demo-")
    procs = []
    try:
        return run(args, binary, work, procs)
    finally:
        for p in reversed(procs):
            p.stop()
        log(f"stopped {len(procs)} processes; logs in {work}")
        if not args.keep and os.environ.get("FLEETCANARY_DEMO_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def run(args, binary, work, procs):
    log("starting function-url-emulator (3 regions, feb2024-incident scenario)")
    emu = Proc("emulator", [
        binary["emulator"],
        "--config=" + os.path.join(ROOT, "emulator/configs/demo.yaml"),
        "--scenario=" + os.path.join(ROOT, "emulator/scenarios/feb2024-incident.yaml"),
    ], work)
    procs.append(emu)
    _, seen = emu.wait_for("control ")
    t0 = time.time()
    urls = [fields(l) for l in seen if l.startswith("url ")]
    cloudwatch = {fields(l)["region"]: fields(l)["url"]
                  for l in seen if l.startswith("cloudwatch ")}
    control = fields(seen[-1])["url"]
    fleet, controller_cfg, regions = write_configs(work, urls, cloudwatch, args.rate)

    log("starting fleetcanary-controller")
    ctl = Proc("controller", [
        binary["controller"], "--config=" + controller_cfg, "--fleet=" + fleet,
        "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
        "--data_dir=" + os.path.join(work, "controller"),
        "--heartbeat_interval=1s", "--insecure", "--target_allow_loopback",
    ], work)
    procs.append(ctl)
    line, _ = ctl.wait_for("listening ")
    grpc_addr, http_addr = fields(line)["grpc"], fields(line)["http"]

    agents = [(AFFECTED_REGION, "use1-a"), (AFFECTED_REGION, "use1-b")]
    agents += [(r, r.replace("-", "")[:6] + "-a") for r in regions
               if r != AFFECTED_REGION]
    agent_http = {}
    for region, agent_id in agents:
        cfg = os.path.join(work, f"{agent_id}.yaml")
        with open(cfg, "w") as f:
            f.write(f"agent_id: {agent_id}\nregion: {region}\n"
                    f"controller_address: {grpc_addr}\n"
                    f"data_dir: {os.path.join(work, agent_id)}\n"
                    "metrics_period: 1s\nmetrics_poll_interval: 1s\n"
                    "metrics_ingestion_delay: 3s\ncloudwatch_unsigned: true\n"
                    "target_allow_loopback: true\n"
                    "heartbeat_interval: 1s\n")
        a = Proc(agent_id, [binary["agent"], "--config=" + cfg,
                            "--http_listen=127.0.0.1:0", "--insecure",
                            "--target_allow_loopback"], work)
        procs.append(a)
        line, _ = a.wait_for("listening ")
        agent_http.setdefault(region, []).append(fields(line).get("http", ""))
    log(f"{len(agents)} agents in {len(regions)} regions: "
        + ", ".join(f"{i}@{r}" for r, i in agents))
    print(f"""
  status page      http://{http_addr}/status
  metrics          http://{http_addr}/metrics   (point Prometheus here)
  admin API        {grpc_addr}   (canaryctl --controller={grpc_addr} --insecure verdicts --watch)
  emulator control {control}_emulator/truth
  work directory   {work}
""", flush=True)

    prom = (start_prometheus(work, http_addr, agent_http, procs)
            if args.prometheus else None)
    shot_taken = False

    seen_states = {}
    events = []  # (seconds since start, key, old, new)
    deadline = t0 + CONFIRM_DEADLINE_S
    confirmed_evidence = {}  # key -> verdict JSON at its FIX_CONFIRMED
    last_progress = 0.0
    confirmed_at = None
    while time.time() < deadline:
        time.sleep(1)
        for p in procs:
            if p.p.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.p.returncode}); see {p.log_path}")
        try:
            samples = parse_metrics(scrape(f"http://{http_addr}/metrics"))
        except OSError as e:
            log(f"scrape failed: {e}")
            continue
        elapsed = time.time() - t0
        newly_confirmed = False
        for key, state in sorted(verdict_states(samples).items()):
            old = seen_states.get(key)
            if old != state and not (old is None and state == "HEALTHY"):
                events.append((elapsed, key, old or "HEALTHY", state))
                log(f"t={elapsed:5.1f}s  {key_text(key)}: {old or 'HEALTHY'} -> {state}")
                if state == "FIX_CONFIRMED" and key[1] == AFFECTED_REGION:
                    newly_confirmed = True
            seen_states[key] = state
        if newly_confirmed:
            # The confirmation's evidence (fix time and interval) now: the
            # verdict returns to HEALTHY after a hold and loses it.
            for v in fetch_verdicts(binary, grpc_addr):
                vkey = verdict_key(v)
                if (v.get("state") == "FIX_CONFIRMED" and
                        vkey[1] == AFFECTED_REGION and vkey not in confirmed_evidence):
                    confirmed_evidence[vkey] = v
        if elapsed - last_progress >= 10:
            last_progress = elapsed
            phase = ("healthy" if elapsed < DEFECT_START_S else
                     "DEFECT (stream, us-east-1)" if elapsed < HOTFIX_S else
                     "after hotfix")
            log(f"t={elapsed:5.1f}s  scenario: {phase:27s} probes={total(samples, 'fleetcanary_probes_total'):.0f} "
                f"platform_errors={total(samples, 'fleetcanary_platform_errors_total'):.0f} "
                f"phantom={total(samples, 'fleetcanary_phantom_errors_total'):.0f}")
        if (args.screenshot and not shot_taken and
                any(e[3] == "REGRESSION" for e in events)):
            check_status_page(http_addr, args.screenshot, work)
            shot_taken = True
        if elapsed > HOTFIX_S and any(
                e[3] == "FIX_CONFIRMED" and e[1][1] == AFFECTED_REGION and
                e[1][0] == "PHANTOM_ERRORS" for e in events):
            confirmed_at = elapsed
            if elapsed > SCENARIO_END_S - 10:
                break

    ok = report(binary, grpc_addr, events, t0, confirmed_evidence) == 0
    if args.screenshot and not shot_taken:
        log("status page was not checked: no REGRESSION happened")
        ok = False
    if prom is not None:
        ok = check_prometheus(prom) and ok
    return 0 if ok else 1


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prometheus(work, http_addr, agent_http, procs):
    """A real Prometheus scraping the controller every second, with our rules."""
    prom_bin = shutil.which("prometheus")
    if prom_bin is None:
        raise RuntimeError("prometheus is not installed (scripts/install-deps.sh)")
    port = free_port()
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.join(ROOT, "dashboards/prometheus/rules.yml")}
scrape_configs:
  - job_name: fleetcanary-controller
    static_configs:
      - targets: ["{http_addr}"]
""")
        # Agents label their own series with `region`; a `region` target
        # label here would turn theirs into `exported_region`.
        addrs = [a for _, group in sorted(agent_http.items()) for a in group]
        f.write(f"""  - job_name: fleetcanary-agent
    static_configs:
      - targets: {json.dumps(addrs)}
""")
    p = Proc("prometheus", [
        prom_bin, "--config.file=" + cfg,
        "--storage.tsdb.path=" + os.path.join(work, "prometheus-data"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ], work)
    procs.append(p)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if "Ready" in scrape(base + "/-/ready"):
                break
        except OSError:
            time.sleep(0.2)
    log(f"prometheus at {base} scraping {http_addr}")
    return {"base": base, "alerts": {}, "proc": p}


def prom_query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.loads(r.read().decode())
    if doc.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {doc}")
    return doc["data"]["result"]


def dashboard_queries():
    import glob
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "dashboards/grafana/*.json"))):
        doc = json.load(open(path))
        panels = list(doc.get("panels", []))
        while panels:
            p = panels.pop()
            panels += p.get("panels", [])
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((os.path.basename(path), p.get("title", ""), t["expr"]))
    return out


def grafana_expand(expr):
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "5s"),
                       ("$__range", "5m")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def rule_exprs():
    import yaml
    doc = yaml.safe_load(open(os.path.join(ROOT, "dashboards/prometheus/rules.yml")))
    for group in doc["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule.get("alert"), "alert" in rule, rule["expr"]


def check_prometheus(prom):
    """Every rule expression and dashboard query evaluates; recording rules and
    dashboard queries return data; the regression alert fired and resolved."""
    base = prom["base"]
    ok = True
    alerts_seen = {}
    # Alert history from the ALERTS series over the whole run.
    for series in prom_query(base, 'max_over_time(ALERTS{alertstate="firing"}[10m])'):
        alerts_seen[series["metric"].get("alertname")] = True
    # The fleet is still running: give the detectors time to leave REGRESSION
    # after the hotfix and Prometheus time to resolve the alerts.
    regression_alerts = {"FleetcanaryRegression", "FleetcanaryPhantomErrors"}
    deadline = time.time() + 90
    while True:
        firing_now = {s["metric"].get("alertname")
                      for s in prom_query(base, 'ALERTS{alertstate="firing"}')}
        if not firing_now & regression_alerts or time.time() > deadline:
            break
        time.sleep(2)
    empty = []
    for name, is_alert, expr in rule_exprs():
        result = prom_query(base, expr)
        if not is_alert and not result:
            empty.append(f"rule {name}")
    panel_has_data = {}
    for board, title, expr in dashboard_queries():
        result = prom_query(base, grafana_expand(expr))
        key = f"{board}: {title}"
        panel_has_data[key] = panel_has_data.get(key, False) or bool(result)
    empty += [k for k, has in panel_has_data.items() if not has]
    queries = len(list(rule_exprs())) + len(dashboard_queries())
    log(f"prometheus: {queries} rule and dashboard expressions evaluated")
    # Event-only queries are legitimately empty in a run without that event.
    # This incident is invisible to clients, so panels of client-visible
    # failures have no series either.
    allowed_empty = ("hard", "drop", "missing", "lost", "without", "adhoc",
                     "ad-hoc", "throttl", "dns", "tls", "connect", "reconnect",
                     "failures by outcome", "client-visible",
                     "streams not healthy")
    unexpected = [e for e in empty if not any(a in e.lower() for a in allowed_empty)]
    for e in empty:
        log(f"  no data: {e}{'' if e not in unexpected else '  <-- unexpected'}")
    if unexpected:
        ok = False
    if not alerts_seen.get("FleetcanaryRegression") and not alerts_seen.get(
            "FleetcanaryPhantomErrors"):
        log("prometheus: the regression alert never fired")
        ok = False
    else:
        log("prometheus: regression alert fired during the incident")
    still = firing_now & regression_alerts
    if still:
        log(f"prometheus: still firing after the fix: {sorted(still)}")
        ok = False
    else:
        log("prometheus: regression alerts resolved after the fix")
    return ok


def check_status_page(http_addr, png, work):
    """Headless Chromium renders /status; the DOM must hold the verdict table
    and charts with data; a screenshot is saved."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (scripts/install-deps.sh)")
    url = f"http://{http_addr}/status"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + os.path.join(work, "chromium-profile")]
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True,
                         text=True, timeout=90).stdout
    subprocess.run(flags + ["--window-size=1000,1400",
                            "--screenshot=" + os.path.abspath(png), url],
                   capture_output=True, timeout=90)
    problems = []
    if '<table id="verdicts">' not in dom or 'class="verdict"' not in dom:
        problems.append("no verdict rows")
    if "REGRESSION" not in dom:
        problems.append("no REGRESSION on the page")
    m = re.search(r'Error rate by invoke mode.*?data-points="(\d+)"', dom) or \
        re.search(r'data-points="(\d+)"', dom)
    points = [int(x) for x in re.findall(r'data-points="(\d+)"', dom)]
    if not points or max(points) == 0:
        problems.append("charts have no data")
    if 'class="band"' not in dom:
        problems.append("timeline has no bands")
    if not os.path.exists(png) or os.path.getsize(png) < 1000:
        problems.append("no screenshot")
    if problems:
        raise RuntimeError("status page check failed: " + ", ".join(problems))
    log(f"status page rendered in Chromium: verdict table, charts ({max(points)} "
        f"points), timeline; screenshot {png}")


def verdict_key(v):
    k = v.get("key", {})
    mode = k.get("mode", "")
    mode = {"RESPONSE_STREAM": "stream", "BUFFERED": "buffered"}.get(mode, mode)
    return (v.get("kind", ""), k.get("region", ""), k.get("target", ""), mode,
            k.get("size_class", k.get("sizeClass", "")))


def parse_time(text):
    """RFC 3339 (as protobuf JSON writes it) -> seconds since the epoch."""
    import datetime
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$", text or "")
    if not m:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    return base + (float(m.group(2)) if m.group(2) else 0.0)


def fetch_verdicts(binary, grpc_addr):
    verdicts = []
    try:
        out = subprocess.run(
            [binary["canaryctl"], "verdicts", "--controller=" + grpc_addr,
             "--insecure", "--all", "--output=json"],
            capture_output=True, text=True, timeout=20)
        if out.returncode == 0:
            try:
                docs = [json.loads(out.stdout)]
            except json.JSONDecodeError:
                docs = [json.loads(l) for l in out.stdout.splitlines()
                        if l.strip().startswith("{")]
            for doc in docs:
                verdicts += doc.get("verdicts", [doc]) if isinstance(doc, dict) else doc
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        log(f"could not read verdict evidence: {e}")
    return verdicts


def report(binary, grpc_addr, events, t0, confirmed_evidence):
    verdicts = fetch_verdicts(binary, grpc_addr)

    print("\n================ timeline ================")
    print(f"  t=  0.0s  emulator started (scenario 2024-01-30T00:00Z)")
    print(f"  t={DEFECT_START_S:5.1f}s  TRUE defect onset: phantom errors, stream, {AFFECTED_REGION}")
    for elapsed, key, old, new in events:
        print(f"  t={elapsed:5.1f}s  {key_text(key)}: {old} -> {new}")
    print(f"  t={HOTFIX_S:5.1f}s  TRUE hotfix (scenario 2024-02-04T00:00Z)")
    true_hotfix = t0 + HOTFIX_S
    hotfix_text = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(true_hotfix))
    interval_misses = []
    print("\n================ fix times of confirmed signals ================")
    for vkey, v in sorted(confirmed_evidence.items()):
        ev = v.get("evidence", {})
        ct = ev.get("change_time") or ev.get("changeTime")
        iv = ev.get("change_interval") or ev.get("changeInterval") or {}
        lo, hi = parse_time(iv.get("lower")), parse_time(iv.get("upper"))
        inside = (lo is not None and hi is not None and
                  lo - HOTFIX_TOLERANCE_S <= true_hotfix <= hi + HOTFIX_TOLERANCE_S)
        print(f"  {key_text(vkey)}: fixed at {ct or '?'} "
              f"(95 % interval {iv.get('lower', '?')} .. {iv.get('upper', '?')}); "
              f"true hotfix {hotfix_text}: {'inside' if inside else 'MISSED'}")
        if not inside:
            interval_misses.append(vkey)
    if not confirmed_evidence:
        print("  none")
    if not any(k[0] == "PHANTOM_ERRORS" for k in confirmed_evidence):
        print("  PHANTOM_ERRORS: no FIX_CONFIRMED evidence captured")
        interval_misses.append(("PHANTOM_ERRORS", AFFECTED_REGION))
    for v in verdicts:
        ev = v.get("evidence", {})
        ct = ev.get("change_time") or ev.get("changeTime")
        if v.get("state") in ("FIX_CONFIRMED", "RECOVERING") and ct:
            iv = ev.get("change_interval") or ev.get("changeInterval") or {}
            print(f"  estimated change time for {v.get('kind')} "
                  f"{v.get('key', {}).get('region', '')} "
                  f"{v.get('key', {}).get('mode', '')}: {ct} "
                  f"(interval {iv.get('lower', '?')} .. {iv.get('upper', '?')}); "
                  f"true hotfix {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(true_hotfix))}")

    def hit(pred):
        return [e for e in events if pred(e)]

    detected = hit(lambda e: e[3] == "REGRESSION" and e[1][1] == AFFECTED_REGION
                   and e[1][3] == "stream")
    confirmed = hit(lambda e: e[3] == "FIX_CONFIRMED" and e[1][1] == AFFECTED_REGION
                    and e[1][0] == "PHANTOM_ERRORS")
    false_alarms = hit(lambda e: e[3] == "REGRESSION" and (
        e[1][1] != AFFECTED_REGION or e[1][3] == "buffered"))
    signals = sorted({e[1][0] for e in events if e[1][1] == AFFECTED_REGION
                      and e[3] in ("SUSPECT", "REGRESSION")})
    print("\n================ result ================")
    print(f"  detected:   {'yes, at t=%.1fs' % detected[0][0] if detected else 'NO'}")
    print(f"  signals:    {', '.join(signals) if signals else 'none'}")
    print(f"  confirmed:  {'PHANTOM_ERRORS at t=%.1fs' % confirmed[0][0] if confirmed else 'NO (PHANTOM_ERRORS never FIX_CONFIRMED)'}")
    print(f"  fix-time intervals missing the true hotfix: {len(interval_misses)}")
    print(f"  false alarms (buffered or healthy regions): {len(false_alarms)}")
    ok = (bool(detected) and bool(confirmed) and not false_alarms and
          not interval_misses)
    print(f"  demo {'PASSED' if ok else 'FAILED'}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    # SIGTERM (e.g. a test timeout) stops the fleet through the finally block.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except RuntimeError as e:
        sys.exit(f"demo: {e}")
