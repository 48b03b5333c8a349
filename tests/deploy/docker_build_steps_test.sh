#!/usr/bin/env bash
# No container engine runs where the tests run, so this test checks the
# Dockerfile's build honestly by parts:
#  1. structure: Debian 12 bases; every RUN is build-in-image.sh with a known
#     step (nothing else runs at image build time); runtime stages run as a
#     numeric non-root user; each ENTRYPOINT is a binary the stage step ships;
#  2. the steps themselves, here on Debian 12: `deps` runs the real dependency
#     installer (idempotent); `build` is shown to be the README's `make build`
#     (the compile itself is what `make test` did before running this suite);
#     `stage` runs for real on this build tree's binaries and its runtime
#     package list must name installed Debian packages that provide every
#     shared library (exits 77, SKIPPED, when the binaries are not built).
# Usage: docker_build_steps_test.sh SOURCE_DIR BUILD_DIR SCRATCH_DIR
set -euo pipefail
src=$1 build=$2 scratch=$3
df=$src/deploy/docker/Dockerfile
script=$src/deploy/docker/build-in-image.sh
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# --- 1. structure -----------------------------------------------------------
while read -r base; do
  [[ "$base" == debian:12 || "$base" == debian:12-slim || "$base" =~ ^(runtime|build)$ ]] \
    || fail "FROM $base is not Debian 12"
done < <(awk 'toupper($1)=="FROM"{print $2}' "$df")
runs=0
while read -r line; do
  runs=$((runs + 1))
  if ! [[ "$line" =~ ^RUN\ \[\"bash\",\ \"(deploy/docker|/opt/fleetcanary)/build-in-image.sh\",\ \"(deps|build|stage|runtime)\"(,\ \"[^\"]+\")*\]$ ]]; then
    fail "RUN step is not a build-in-image.sh step: $line"
  fi
done < <(grep -E '^RUN' "$df")
[[ $runs -ge 4 ]] || fail "expected the deps, build, stage and runtime RUN steps, found $runs"
grep -qE '^USER 65532:65532$' "$df" || fail "runtime stage does not switch to USER 65532:65532"
for b in fleetcanary-controller fleetcanary-agent canaryctl; do
  grep -qE "^ENTRYPOINT \[\"/usr/local/bin/$b\"\]$" "$df" || fail "no ENTRYPOINT for $b"
  grep -q "$b" "$script" || fail "stage step does not ship $b"
done
[[ -f "$src/deploy/docker/Dockerfile.dockerignore" ]] || fail "no Dockerfile.dockerignore (build dirs would enter the context)"

# --- 2. the steps -------------------------------------------------------------
cd "$src"
out=$(FC_DRY_RUN=1 bash "$script" deps)
[[ "$out" == "+ bash scripts/install-deps.sh" ]] || fail "deps step is not scripts/install-deps.sh: $out"
bash "$script" deps || fail "deps step failed"
out=$(FC_DRY_RUN=1 bash "$script" build)
[[ "$out" =~ ^\+\ make\ build\ BUILD_DIR=build-image\ JOBS=[0-9]+$ ]] || fail "build step is not make build: $out"
make -n build BUILD_DIR="$build" >/dev/null 2>&1 || fail "Makefile has no working build target"

if [[ $fails -gt 0 ]]; then
  echo "$fails problem(s)"
  exit 1
fi

rm -rf "$scratch" && mkdir -p "$scratch"
set +e
bash "$script" stage "$scratch/stage" "$build" >"$scratch/stage.log" 2>&1
rc=$?
set -e
cat "$scratch/stage.log"
if [[ $rc -eq 3 ]]; then
  echo "SKIP: structure and deps/build steps checked; stage not run: binaries not built in $build"
  exit 77
fi
[[ $rc -eq 0 ]] || { echo "FAIL: stage step failed"; exit 1; }
list=$scratch/stage/runtime-packages.txt
[[ -s "$list" ]] || { echo "FAIL: empty runtime package list"; exit 1; }
while read -r pkg; do
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] \
    || { echo "FAIL: runtime package $pkg is not an installed Debian package"; exit 1; }
done <"$list"
for p in libc6 libstdc++6; do
  grep -qx "$p" "$list" || { echo "FAIL: $p missing from the runtime package list"; exit 1; }
done
for b in "$scratch"/stage/bin/*; do
  [[ -x "$b" ]] || { echo "FAIL: $b not executable"; exit 1; }
done
echo "runtime packages: $(tr '\n' ' ' <"$list")"
echo "ok: Dockerfile structure, deps/build steps, and stage of $(ls "$scratch/stage/bin" | wc -l) binaries"
