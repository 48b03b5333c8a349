#!/usr/bin/env python3
"""The whole product on loopback: `make demo` watched from outside.

Runs the demo (scripts/demo.py: emulator replaying feb2024-incident,
controller, four agents) and adds the checks a user cannot do by eye:
  - a real Prometheus scrapes the controller and the agents with
    dashboards/prometheus/rules.yml; at the end every rule and dashboard
    query must evaluate, recording rules and panels must have data (except
    panels of events this incident does not have), the regression alert must
    have fired during the incident and be resolved after the fix;
  - once a REGRESSION is shown, headless Chromium renders /status: the verdict
    table, charts with data and the timeline must be there; a screenshot is
    kept.
Fails if the demo fails or any check does.

Usage: demo_e2e_test.py BUILD_DIR --screenshot PNG
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../../scripts"))
import demo  # noqa: E402
from demo_fleet import log  # noqa: E402
from prometheus_check import (Prometheus, panels_without_data,  # noqa: E402
                              rule_exprs, dashboard_queries)

# Panels and rules that are legitimately empty in a run without their event.
# This incident is invisible to clients, so panels of client-visible failures
# have no series either.
EVENT_ONLY = ("hard", "drop", "missing", "lost", "without", "adhoc",
              "ad-hoc", "throttl", "dns", "tls", "connect", "reconnect",
              "failures by outcome", "client-visible", "streams not healthy")
REGRESSION_ALERTS = {"FleetcanaryRegression", "FleetcanaryPhantomErrors"}


class Checks(demo.Watcher):
    def __init__(self, screenshot):
        self.screenshot = screenshot
        self.shot_taken = False
        self.prom = None

    def on_start(self, fleet):
        agents = [a for _, group in sorted(fleet.agent_http.items()) for a in group]
        self.prom = Prometheus(fleet.work, fleet.http_addr, agents)
        self.prom.wait_ready()
        log(f"prometheus at {self.prom.base} scraping {fleet.http_addr}")

    def on_tick(self, fleet, events):
        if not self.shot_taken and any(e[3] == "REGRESSION" for e in events):
            check_status_page(fleet.http_addr, self.screenshot, fleet.work)
            self.shot_taken = True

    def on_end(self, fleet, events):
        ok = True
        if not self.shot_taken:
            log("status page was not checked: no REGRESSION happened")
            ok = False
        return check_prometheus(self.prom) and ok

    def stop(self):
        if self.prom is not None:
            self.prom.stop()


def check_prometheus(prom):
    """Every rule expression and dashboard query evaluates; recording rules and
    dashboard queries return data; the regression alert fired and resolved."""
    alerts_seen = {s["metric"].get("alertname") for s in
                   prom.query('max_over_time(ALERTS{alertstate="firing"}[10m])')}
    # The fleet is still running: give the detectors time to leave REGRESSION
    # after the hotfix and Prometheus time to resolve the alerts.
    deadline = time.time() + 90
    while True:
        firing_now = {s["metric"].get("alertname")
                      for s in prom.query('ALERTS{alertstate="firing"}')}
        if not firing_now & REGRESSION_ALERTS or time.time() > deadline:
            break
        time.sleep(2)
    empty = [f"rule {name}" for name, is_alert, expr in rule_exprs()
             if not is_alert and not prom.query(expr)]
    empty += panels_without_data(prom, "1m")
    log(f"prometheus: {len(list(rule_exprs())) + len(dashboard_queries())} "
        "rule and dashboard expressions evaluated")
    unexpected = [e for e in empty if not any(a in e.lower() for a in EVENT_ONLY)]
    for e in empty:
        log(f"  no data: {e}{'' if e not in unexpected else '  <-- unexpected'}")
    ok = not unexpected
    if not alerts_seen & REGRESSION_ALERTS:
        log("prometheus: the regression alert never fired")
        ok = False
    else:
        log("prometheus: regression alert fired during the incident")
    still = firing_now & REGRESSION_ALERTS
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir")
    parser.add_argument("--screenshot", metavar="PNG", required=True)
    args = parser.parse_args()
    checks = Checks(args.screenshot)
    try:
        demo.entry(demo.parse_args([args.build_dir]), checks)
    finally:
        checks.stop()


if __name__ == "__main__":
    main()
