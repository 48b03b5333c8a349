"""A real Prometheus server for end-to-end tests, and the checks run with it.

`Prometheus` starts Debian's prometheus on a free loopback port, scraping the
given controller and agent /metrics addresses every second with
dashboards/prometheus/rules.yml loaded. `panels_without_data` evaluates every
Grafana panel query of dashboards/grafana/ against it. Used by the demo's
end-to-end test (demo_e2e_test.py) and by tests/examples/run_by_hand_test.py.
"""

import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "dashboards/prometheus/rules.yml")


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# Fixed ports are picked below the kernel's ephemeral range: other programs'
# outgoing connections and port-0 listeners (other tests) take ephemeral
# ports, so a port picked there could be gone by the time it is bound.
_RNG = random.Random(os.getpid())


def free_port():
    """A loopback port that is free now, below the ephemeral range."""
    lo = 20000
    hi = min(_ephemeral_range()[0], 32768) - 1
    for _ in range(1000):
        p = _RNG.randrange(lo, hi)
        if _bindable(p):
            return p
    raise RuntimeError("no free loopback port below the ephemeral range")


def _die_with_parent():
    """The server gets SIGKILL if the test dies, so it never outlives it."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Prometheus:
    """A Prometheus server scraping `controller` (host:port) and `agents`
    ([host:port]) every second, evaluating our rules every second. Data and
    log live in `work`. stop() kills it."""

    def __init__(self, work, controller, agents):
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (scripts/install-deps.sh)")
        # Agents label their own series with `region`; a `region` target label
        # here would turn theirs into `exported_region`.
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [RULES],
            "scrape_configs": [
                {"job_name": "fleetcanary-controller",
                 "static_configs": [{"targets": [controller]}]},
                {"job_name": "fleetcanary-agent",
                 "static_configs": [{"targets": list(agents)}]},
            ],
        }
        path = os.path.join(work, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(os.path.join(work, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--config.file=" + path,
             "--storage.tsdb.path=" + os.path.join(work, "prometheus-data"),
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True,
            preexec_fn=_die_with_parent)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                    if "Ready" in r.read().decode():
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus at {self.base} did not become ready "
                           f"(exit={self.proc.poll()}); see {self._log.name}")

    def query(self, expr):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read().decode())
        if doc.get("status") != "success":
            raise RuntimeError(f"query failed: {expr}: {doc}")
        return doc["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()


def dashboard_queries():
    """(dashboard file, panel title, expression) for every Grafana panel query."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "dashboards/grafana/*.json"))):
        with open(path) as f:
            panels = list(json.load(f).get("panels", []))
        while panels:
            p = panels.pop()
            panels += p.get("panels", [])
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((os.path.basename(path), p.get("title", ""), t["expr"]))
    return out


def grafana_expand(expr, rate_interval):
    """A panel query with Grafana's variables replaced, as Prometheus runs it."""
    for var, value in (("$__rate_interval", rate_interval), ("$__interval", "5s"),
                       ("$__range", "5m")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def rule_exprs():
    """(name, is_alert, expression) for every rule of rules.yml."""
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    for group in doc["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule.get("alert"), "alert" in rule, rule["expr"]


def panels_without_data(prom, rate_interval):
    """Names ("board: title") of the panels none of whose queries return data."""
    has = {}
    for board, title, expr in dashboard_queries():
        key = f"{board}: {title}"
        has[key] = has.get(key, False) or bool(prom.query(grafana_expand(expr, rate_interval)))
    return [k for k, v in has.items() if not v]
