"""The local demo fleet: starting it on loopback and reading it.

`start_fleet` starts function-url-emulator (three regions, the
feb2024-incident scenario in accelerated time), fleetcanary-controller and
four fleetcanary-agent processes, from the configuration templates in
examples/demo/. The readers below scrape the controller's /metrics and ask
canaryctl for verdicts. Used by the demo narration (scripts/demo.py) and by
the end-to-end test that runs the demo under Prometheus and Chromium
(tests/e2e/demo_e2e_test.py).
"""

import datetime
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "examples/demo")
AFFECTED_REGION = "us-east-1"


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
        """The first stdout line starting with prefix, and every line so far."""
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
    """`word k=v k=v` -> {k: v}: the binaries' machine-readable stdout lines."""
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def binaries(build):
    """The four programs of a build directory; exits if one is missing."""
    binary = {
        "emulator": os.path.join(build, "emulator/function-url-emulator"),
        "controller": os.path.join(build, "controller/server/fleetcanary-controller"),
        "agent": os.path.join(build, "agent/fleetcanary-agent"),
        "canaryctl": os.path.join(build, "cli/canaryctl"),
    }
    for path in binary.values():
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} is missing; run 'make build' first")
    return binary


def _load(name):
    with open(os.path.join(TEMPLATES, name)) as f:
        return yaml.safe_load(f)


def _dump(doc, path):
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def write_fleet_file(work, urls, cloudwatch, rate):
    """examples/demo/fleet.yaml with the emulator's URLs as its one target."""
    doc = _load("fleet.yaml")
    regions = sorted({u["region"] for u in urls})
    doc["targets"][0]["regions"] = [{
        "region": region,
        "urls": [{
            "mode": u["mode"],
            "url": u["url"],
            "cloudwatch": {"function_name": u["function"], "alias": u["alias"],
                           "endpoint": cloudwatch[region]},
        } for u in urls if u["region"] == region],
    } for region in regions]
    doc["schedules"][0]["rate_per_second"] = rate
    return _dump(doc, os.path.join(work, "fleet.yaml")), regions


class Fleet:
    """Addresses of a running demo fleet."""

    def __init__(self, binary, work, procs):
        self.binary = binary
        self.work = work
        self.procs = procs
        self.t0 = None  # when the emulator's scenario clock started
        self.grpc_addr = self.http_addr = self.control = None
        self.regions = []
        self.agent_http = {}  # region -> [agent /metrics address]

    def check_alive(self):
        for p in self.procs:
            if p.p.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.p.returncode}); see {p.log_path}")


def start_fleet(binary, work, procs, rate):
    """Starts emulator, controller and agents; appends each to procs."""
    fleet = Fleet(binary, work, procs)
    log("starting function-url-emulator (3 regions, feb2024-incident scenario)")
    emu = Proc("emulator", [
        binary["emulator"],
        "--config=" + os.path.join(ROOT, "emulator/configs/demo.yaml"),
        "--scenario=" + os.path.join(ROOT, "emulator/scenarios/feb2024-incident.yaml"),
    ], work)
    procs.append(emu)
    _, seen = emu.wait_for("control ")
    fleet.t0 = time.time()
    urls = [fields(l) for l in seen if l.startswith("url ")]
    cloudwatch = {fields(l)["region"]: fields(l)["url"]
                  for l in seen if l.startswith("cloudwatch ")}
    fleet.control = fields(seen[-1])["url"]
    fleet_file, fleet.regions = write_fleet_file(work, urls, cloudwatch, rate)

    log("starting fleetcanary-controller")
    ctl = Proc("controller", [
        binary["controller"], "--config=" + os.path.join(TEMPLATES, "controller.yaml"),
        "--fleet=" + fleet_file,
        "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
        "--data_dir=" + os.path.join(work, "controller"),
        "--heartbeat_interval=1s", "--insecure", "--target_allow_loopback",
    ], work)
    procs.append(ctl)
    line, _ = ctl.wait_for("listening ")
    fleet.grpc_addr, fleet.http_addr = fields(line)["grpc"], fields(line)["http"]

    agents = [(AFFECTED_REGION, "use1-a"), (AFFECTED_REGION, "use1-b")]
    agents += [(r, r.replace("-", "")[:6] + "-a") for r in fleet.regions
               if r != AFFECTED_REGION]
    for region, agent_id in agents:
        cfg = _load("agent.yaml")
        cfg.update(agent_id=agent_id, region=region, controller_address=fleet.grpc_addr,
                   data_dir=os.path.join(work, agent_id))
        a = Proc(agent_id, [binary["agent"],
                            "--config=" + _dump(cfg, os.path.join(work, f"{agent_id}.yaml")),
                            "--http_listen=127.0.0.1:0", "--insecure",
                            "--target_allow_loopback"], work)
        procs.append(a)
        line, _ = a.wait_for("listening ")
        fleet.agent_http.setdefault(region, []).append(fields(line).get("http", ""))
    log(f"{len(agents)} agents in {len(fleet.regions)} regions: "
        + ", ".join(f"{i}@{r}" for r, i in agents))
    return fleet


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


SAMPLE = re.compile(r'^(\w+)\{(.*)\} ([-+0-9.eE]+|NaN|\+Inf)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text exposition -> [(name, {label: value}, value)]."""
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
    return " ".join(p for p in key if p)


def verdict_key(v):
    """A canaryctl JSON verdict -> the same key as verdict_states uses."""
    k = v.get("key", {})
    mode = k.get("mode", "")
    mode = {"RESPONSE_STREAM": "stream", "BUFFERED": "buffered"}.get(mode, mode)
    return (v.get("kind", ""), k.get("region", ""), k.get("target", ""), mode,
            k.get("size_class", k.get("sizeClass", "")))


def parse_time(text):
    """RFC 3339 (as protobuf JSON writes it) -> seconds since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$", text or "")
    if not m:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    return base + (float(m.group(2)) if m.group(2) else 0.0)


def fetch_verdicts(fleet):
    """Every verdict, as `canaryctl verdicts --all --output=json` prints it."""
    verdicts = []
    try:
        out = subprocess.run(
            [fleet.binary["canaryctl"], "verdicts", "--controller=" + fleet.grpc_addr,
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
