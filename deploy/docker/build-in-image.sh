#!/usr/bin/env bash
# Every RUN step of deploy/docker/Dockerfile, as one script the test suite also
# runs (tests/deploy/docker_build_steps_test.sh), so the image is built with
# the same commands as a developer machine:
#   deps               scripts/install-deps.sh (the README's dependency step)
#   build              make build (the README's build), BUILD_DIR=build-image
#   stage DEST [BUILD] copy the binaries to DEST/bin and list the Debian
#                      packages their shared libraries come from in
#                      DEST/runtime-packages.txt (ldd + dpkg-query)
#   runtime LIST       (runtime image) install exactly those packages and
#                      create the non-root user 65532
# FC_DRY_RUN=1 prints the commands of deps/build instead of running them.
set -euo pipefail

BINARIES=(fleetcanary-controller fleetcanary-agent canaryctl)
OPTIONAL_BINARIES=(function-url-emulator)
RUN_UID=65532

run() {
  if [[ "${FC_DRY_RUN:-0}" == 1 ]]; then echo "+ $*"; else "$@"; fi
}

find_binary() {  # build_dir name -> path
  find "$1" -type f -perm -u+x -name "$2" -not -path '*/CMakeFiles/*' | head -n1
}

# Prints "lib package" for each shared library path on stdin, or exits 1
# naming the first one no Debian package owns. Each library is looked up as
# linked, as its /usr-merged twin and as its link target, with one
# dpkg-query for all of them: every call reads the whole package database.
owning_packages() {
  local -a libs=() candidates=()
  local lib alt
  while read -r lib; do
    libs+=("$lib")
    alt=$( [[ $lib == /usr/* ]] && echo "${lib#/usr}" || echo "/usr$lib")
    candidates+=("$lib" "$alt" "$(readlink -f "$lib")")
  done
  declare -A owner=()
  local pkgs path
  while IFS= read -r line; do
    pkgs=${line%%: /*} path=/${line#*: /}
    owner[$path]=${pkgs%%,*}
  done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
  local i c found
  for i in "${!libs[@]}"; do
    found=
    for c in "${candidates[@]:$((3 * i)):3}"; do
      [[ -n ${owner[$c]:-} ]] && { found=${owner[$c]}; break; }
    done
    [[ -n $found ]] || { echo "stage: no Debian package owns ${libs[$i]}" >&2; return 1; }
    echo "${libs[$i]} ${found%%:*}"
  done
}

cmd=${1:-}
case "$cmd" in
  deps)
    run bash scripts/install-deps.sh
    ;;
  build)
    run make build BUILD_DIR="${BUILD_DIR:-build-image}" JOBS="${JOBS:-$(nproc)}"
    ;;
  stage)
    dest=${2:?stage DEST [BUILD_DIR]}
    build=${3:-${BUILD_DIR:-build-image}}
    mkdir -p "$dest/bin"
    missing=()
    for b in "${BINARIES[@]}" "${OPTIONAL_BINARIES[@]}"; do
      path=$(find_binary "$build" "$b")
      if [[ -z "$path" ]]; then
        [[ " ${OPTIONAL_BINARIES[*]} " == *" $b "* ]] || missing+=("$b")
        continue
      fi
      install -m 0755 "$path" "$dest/bin/$b"
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
      echo "stage: not built in $build: ${missing[*]}" >&2
      exit 3
    fi
    for f in "$dest"/bin/*; do
      if ldd "$f" | grep -q 'not found'; then
        echo "stage: $f has unresolved libraries:" >&2
        ldd "$f" | grep 'not found' >&2
        exit 1
      fi
    done
    # Architecture qualifiers (libc6:amd64) are dropped; apt picks the native one.
    for f in "$dest"/bin/*; do ldd "$f" | awk '/=> \//{print $3} /^\t\//{print $1}'; done |
      sort -u | owning_packages >"$dest/runtime-libraries.txt"
    awk '{print $2}' "$dest/runtime-libraries.txt" | sort -u >"$dest/runtime-packages.txt"
    rm -f "$dest/runtime-libraries.txt"
    install -m 0755 "$0" "$dest/build-in-image.sh"
    echo "stage: $(ls "$dest/bin" | wc -l) binaries, $(wc -l <"$dest/runtime-packages.txt") runtime packages"
    ;;
  runtime)
    list=${2:?runtime PACKAGE_LIST}
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -q
    # shellcheck disable=SC2046
    run apt-get install -y -q --no-install-recommends ca-certificates $(cat "$list")
    run rm -rf /var/lib/apt/lists/*
    run groupadd --system --gid "$RUN_UID" fleetcanary
    run useradd --system --uid "$RUN_UID" --gid "$RUN_UID" --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin fleetcanary
    run install -d -o "$RUN_UID" -g "$RUN_UID" -m 0750 /var/lib/fleetcanary /var/lib/fleetcanary-agent
    ;;
  *)
    echo "usage: build-in-image.sh deps|build|stage DEST [BUILD_DIR]|runtime PACKAGE_LIST" >&2
    exit 2
    ;;
esac
