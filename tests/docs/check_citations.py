#!/usr/bin/env python3
"""Fails when code or docs cite a Markdown file that is not in the repository.

Scans every source, build and documentation file of the tree for *.md paths
(`docs/metrics.md`, `docs/operations.md#sizing`, `bench/README.md`) and
checks that each names an existing file, relative to the repository root or
to the citing file's folder; a `#anchor` into a Markdown file must match one
of its headings (GitHub's slugs). Also checks that every alert in
dashboards/prometheus/rules.yml has a `runbook_url` into docs/runbooks.md
whose anchor exists, and that every metric family docs/metrics.md documents
is exported by some source file.

Usage: check_citations.py SOURCE_DIR      (exit 0 when every citation resolves)
"""
import os
import re
import sys

TEXT_EXT = {".cc", ".h", ".in", ".py", ".sh", ".js", ".cjs", ".mjs", ".json",
            ".yaml", ".yml", ".proto", ".md", ".txt", ".cmake", ".toml"}
TEXT_NAMES = {"CMakeLists.txt", "Makefile", "Dockerfile", "run"}
SKIP_DIRS = {".git", "node_modules", "testdata", "__pycache__"}
CITATION = re.compile(r"(?<![\w./-])((?:\.\.?/)?(?:[\w.-]+/)*[\w.-]+\.md)(#[\w-]+)?")


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\s-]", "", s)
    return re.sub(r"\s", "-", s)


def anchors(path, cache={}):
    if path not in cache:
        found = set()
        in_code = False
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("```"):
                    in_code = not in_code
                m = re.match(r"#{1,6}\s+(.*)", line)
                if m and not in_code:
                    found.add(slug(m.group(1)))
        cache[path] = found
    return cache[path]


def source_files(root):
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and
                         not (rel == "." and x.startswith("build")))
        for name in sorted(files):
            if os.path.splitext(name)[1] in TEXT_EXT or name in TEXT_NAMES:
                yield os.path.join(d, name)


def main():
    root = os.path.abspath(sys.argv[1])
    errors = []
    count = 0
    for path in source_files(root):
        try:
            text = open(path, encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        rel = os.path.relpath(path, root)
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                cited, anchor = m.group(1), m.group(2)
                count += 1
                candidates = [os.path.normpath(os.path.join(root, cited)),
                              os.path.normpath(os.path.join(os.path.dirname(path), cited))]
                target = next((c for c in candidates if os.path.isfile(c)), None)
                if target is None:
                    errors.append(f"{rel}:{lineno}: cites {cited}, which is not in the repository")
                elif anchor and anchor[1:] not in anchors(target):
                    errors.append(f"{rel}:{lineno}: {cited}{anchor}: no such heading in {os.path.relpath(target, root)}")

    rules = os.path.join(root, "dashboards/prometheus/rules.yml")
    alert = None
    urls = {}
    for line in open(rules, encoding="utf-8"):
        m = re.match(r"\s*- alert: (\w+)", line)
        if m:
            alert = m.group(1)
            urls[alert] = None
        m = re.match(r'\s*runbook_url: "?([^"\s]+)"?', line)
        if m and alert:
            urls[alert] = m.group(1)
        if re.match(r"\s*runbook:", line):
            errors.append(f"rules.yml {alert}: `runbook` annotation (use runbook_url)")
    for name, url in urls.items():
        if url != f"docs/runbooks.md#{name.lower()}":
            errors.append(f"rules.yml {name}: runbook_url is {url!r}, want docs/runbooks.md#{name.lower()}")
    # Every family docs/metrics.md documents is exported by some source file
    # (the other direction, every served family documented, is checked by
    # scraping the binaries in tests/integration/daemon_cli_test.cc).
    sources = ""
    for d in ("controller", "agent", "emulator", "common"):
        for path in source_files(os.path.join(root, d)):
            if path.endswith((".cc", ".h", ".in")):
                sources += open(path, encoding="utf-8").read()
    metrics_doc = open(os.path.join(root, "docs/metrics.md"), encoding="utf-8").read()
    documented = set(re.findall(r"^\| `((?:fleetcanary|process)_[a-z0-9_]+)` \|", metrics_doc, re.M))
    for name in sorted(documented):
        short = name[len("fleetcanary_"):] if name.startswith("fleetcanary_") else name
        if f'"{name}"' not in sources and f'"{short}"' not in sources and f'"{name}' not in sources:
            errors.append(f"docs/metrics.md documents {name}, which no source file exports")
    for e in errors:
        print(e)
    print(f"{count} citations checked, {len(urls)} alerts, "
          f"{len(documented)} documented metric families, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
