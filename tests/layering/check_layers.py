#!/usr/bin/env python3
"""Fails when a production include crosses a layer the wrong way.

The production folders form layers: common/ at the bottom, the shared
analysis/ libraries above it, then the three programs that never reach into
each other (agent/, controller/, emulator/), and cli/ on top. An include may
only point down (or sideways inside its own folder):

  common/      includes only common/ (and generated fleetcanary/v1/ headers)
  analysis/    includes only common/ and analysis/
  agent/       must not include controller/, cli/, emulator/
  controller/  must not include agent/, cli/, emulator/
  emulator/    must not include agent/, controller/, cli/
  cli/         must not include emulator/

Only `#include "..."` lines whose first path component is a top-level folder
of the repository count; third-party headers (absl/, google/, ...) and the
generated fleetcanary/v1/ headers are always allowed. Each violation is
printed as file:line with the include and the rule it breaks.

Usage: check_layers.py SOURCE_DIR      (exit 0 when every include is allowed)
"""
import os
import re
import sys

SOURCE_EXT = {".h", ".cc", ".in"}
SKIP_DIRS = {".git", "__pycache__", "testdata"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

# Folder -> (allowed top-level folders, or None for "all but forbidden",
#            forbidden top-level folders).
RULES = {
    "common": ({"common"}, set()),
    "analysis": ({"common", "analysis"}, set()),
    "agent": (None, {"controller", "cli", "emulator"}),
    "controller": (None, {"agent", "cli", "emulator"}),
    "emulator": (None, {"agent", "controller", "cli"}),
    "cli": (None, {"emulator"}),
}


def describe(layer):
    allowed, forbidden = RULES[layer]
    if allowed is not None:
        return "%s/ includes only %s" % (
            layer, ", ".join(sorted(a + "/" for a in allowed)))
    return "%s/ must not include %s" % (
        layer, ", ".join(sorted(f + "/" for f in forbidden)))


def violations(root):
    top_dirs = {d for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
                and not d.startswith("build")}
    for layer in sorted(RULES):
        base = os.path.join(root, layer)
        if not os.path.isdir(base):
            continue
        allowed, forbidden = RULES[layer]
        for d, dirs, files in os.walk(base):
            dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
            for name in sorted(files):
                if os.path.splitext(name)[1] not in SOURCE_EXT:
                    continue
                path = os.path.join(d, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(1)
                        first = target.split("/", 1)[0]
                        if "/" not in target or first not in top_dirs:
                            continue  # Third-party or generated header.
                        if allowed is not None:
                            bad = first not in allowed
                        else:
                            bad = first in forbidden
                        if bad:
                            yield "%s:%d: includes \"%s\" (%s)" % (
                                os.path.relpath(path, root), lineno, target,
                                describe(layer))


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = os.path.abspath(sys.argv[1])
    found = list(violations(root))
    for v in found:
        print(v)
    if found:
        print("%d include(s) break the layering" % len(found))
        return 1
    print("layering OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
