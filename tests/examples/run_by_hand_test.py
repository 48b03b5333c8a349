#!/usr/bin/env python3
"""Runs README.md's "Run a fleet by hand" commands, line by line, as written.

The fenced `sh` block under that heading is executed by one bash (-e: the
first failing line fails the test) in a scratch copy of examples/local/, next
to links named build/ and emulator/, so the README's relative paths work
unchanged. The example's fixed loopback ports are replaced by free ones (the
emulator's consecutive block stays consecutive), so the test can run beside
other tests. It checks that both agents came up live, a probe through the
controller succeeded, the controller exports phantom-error series at 0 and an
agent its build_info; then every process of the run is torn down.

While the fleet runs (before the README's last line, which tears it down), a
real Prometheus scrapes the controller and both agents with
dashboards/prometheus/rules.yml, and every dashboard query is evaluated: on
this fresh, healthy fleet no panel may be empty, except the ones that by
definition list verdicts that are not HEALTHY.

Usage: run_by_hand_test.py SOURCE_DIR BUILD_DIR
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../e2e"))
from prometheus_check import (Prometheus, dashboard_queries,  # noqa: E402
                              free_port, panels_without_data)

# Panels that by definition list what a healthy fleet does not have: verdicts
# that are not HEALTHY (tables, the timeline of keys not HEALTHY in the
# range). Everything else must show data, zeros included.
EVENT_ONLY = ("not healthy", "timeline")


def check_dashboards(work, targets):
    """Starts Prometheus on the running fleet; returns the empty panels."""
    prom = Prometheus(work, targets["controller"], targets["agents"])
    try:
        prom.wait_ready()
        queries = dashboard_queries()
        empty = []
        # Bounded wait: the platform metrics take a few one-second periods
        # (ingestion delay, reconciliation) before their ratios exist.
        deadline = time.time() + 120
        while True:
            try:
                empty = panels_without_data(prom, "30s")
                if not [e for e in empty if not any(a in e.lower() for a in EVENT_ONLY)]:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                break
            time.sleep(2)
        print(f"prometheus: {len(queries)} dashboard queries evaluated")
        for e in empty:
            print(f"  no data (event-only): {e}" if any(a in e.lower() for a in EVENT_ONLY)
                  else f"  no data: {e}  <-- unexpected")
        # The agents' own series keep their region label (no exported_region).
        if prom.query("fleetcanary_agent_in_flight{exported_region!=\"\"}"):
            empty.append("agent series carry exported_region")
        return [e for e in empty if not any(a in e.lower() for a in EVENT_ONLY)]
    finally:
        prom.stop()


def free_block(n):
    """n consecutive free loopback ports."""
    for _ in range(200):
        base = free_port()
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def readme_commands(readme):
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"^## Run a fleet by hand\n(.*?)^```sh\n(.*?)^```", text, re.S | re.M)
    if not m:
        raise RuntimeError("README.md has no ```sh block under '## Run a fleet by hand'")
    return m.group(2)


def main():
    source, build = (os.path.abspath(a) for a in sys.argv[1:3])
    script = readme_commands(os.path.join(source, "README.md"))
    work = tempfile.mkdtemp(prefix="fleet-by-hand-")
    shutil.copytree(os.path.join(source, "examples/local"), os.path.join(work, "examples/local"),
                    ignore=shutil.ignore_patterns("data", "*.log", "*.out"))
    os.symlink(build, os.path.join(work, "build"))
    os.symlink(os.path.join(source, "emulator"), os.path.join(work, "emulator"))

    # Fixed ports -> free ones. The emulator's endpoints are consecutive from
    # --base_port, so its whole block moves together.
    local = os.path.join(work, "examples/local")
    files = [os.path.join(local, f) for f in os.listdir(local) if f.endswith(".yaml")]
    texts = {f: open(f, encoding="utf-8").read() for f in files}
    fixed = sorted({int(p) for t in list(texts.values()) + [script]
                    for p in re.findall(r"\b(17\d{3})\b", t)})
    emulator_ports = [p for p in fixed if 17100 <= p < 17200 and p < 17180]
    base = free_block(len(range(17100, max(emulator_ports) + 1)))
    mapping = {p: base + (p - 17100) for p in emulator_ports}
    for p in fixed:
        mapping.setdefault(p, free_port())
    sub = lambda t: re.sub(r"\b(17\d{3})\b", lambda m: str(mapping[int(m.group(1))]), t)
    for f, t in texts.items():
        open(f, "w", encoding="utf-8").write(sub(t))
    script = sub(script)

    print("ports:", mapping)
    # Every line but the last (the teardown), then wait for the checks here,
    # then the last line.
    lines = [l for l in script.splitlines() if l.strip()]
    staged = "\n".join(lines[:-1] + ["echo FLEET_IS_UP", "read _", lines[-1]]) + "\n"
    proc = subprocess.Popen(["bash", "-e", "-x", "-c", staged], cwd=work,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    unexpected_empty = None
    try:
        before = []
        deadline = time.time() + 240
        for line in proc.stdout:
            before.append(line)
            if line.strip() == "FLEET_IS_UP":
                break
            if time.time() > deadline:
                raise subprocess.TimeoutExpired("bash", 240)
        if before and before[-1].strip() == "FLEET_IS_UP":
            targets = {"controller": f"127.0.0.1:{mapping[17080]}",
                       "agents": [f"127.0.0.1:{mapping[17181]}", f"127.0.0.1:{mapping[17182]}"]}
            unexpected_empty = check_dashboards(work, targets)
        if not before or before[-1].strip() != "FLEET_IS_UP":
            # The script ended before the fleet was up: show what it did.
            print("".join(before))
            raise RuntimeError("the README's commands stopped before the fleet was up")
        proc.stdin.write("\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=120)
        out = "".join(before) + rest
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = "timeout"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Anything the script left.
        except ProcessLookupError:
            pass
    print(out)
    errors = []
    if code != 0:
        errors.append(f"the README commands exited with {code}")
    agents = [l for l in out.splitlines() if re.search(r"\blive\b", l) and "-a " in l]
    if len(agents) < 2:
        errors.append("canaryctl agents did not list two live agents")
    if not re.search(r"^\d+ probes \(adhoc-", out, re.M):
        errors.append("canaryctl probe printed no summary")
    if not re.search(r'^fleetcanary_phantom_errors_total\{region="eu-west-1",target="canary",mode="stream"\} 0', out, re.M):
        errors.append("the controller does not export phantom errors at 0 for a configured stream")
    if "fleetcanary_build_info{program=\"fleetcanary-agent\"" not in out:
        errors.append("the agent does not export fleetcanary_build_info")
    if unexpected_empty is None:
        errors.append("the fleet never came up (dashboards not checked)")
    elif unexpected_empty:
        errors.append(f"dashboard panels without data on a healthy fleet: {unexpected_empty}")
    if errors:
        for name in sorted(os.listdir(local)):
            if name.endswith(".log"):
                print(f"---- {name} (last 30 lines)")
                print("".join(open(os.path.join(local, name)).readlines()[-30:]))
        for e in errors:
            print("FAIL:", e)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("OK: the fleet came up by hand, probed, and was torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
