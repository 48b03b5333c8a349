#!/usr/bin/env bash
# `make demo`: runs the local fleet demo against an existing build directory.
set -euo pipefail
build_dir=${1:-build}
ulimit -n 65536 2>/dev/null || true
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$build_dir" "${@:2}"
