#!/usr/bin/env bash
# Builds Debian's own abseil (the exact source of the installed libabsl-dev,
# with Debian's patches) as shared libraries instrumented for ThreadSanitizer,
# and installs them under PREFIX/lib.
#
# Why: ThreadSanitizer only sees synchronisation in instrumented code. Every
# lock in fleetcanary (and in gRPC 1.51) is an absl::Mutex, and Debian's
# libabsl is not instrumented, so without this every guarded access would be
# reported as a race. The libraries keep Debian's SONAMEs, so running a TSan
# test with LD_LIBRARY_PATH=PREFIX/lib swaps them in for our code and gRPC.
#
# Usage: scripts/build-tsan-abseil.sh PREFIX
# Idempotent: does nothing when PREFIX already holds a build of the installed
# version. Downloads the source with apt-get from the Debian archive the
# machine already uses (deb-src entries in a private apt directory; the
# system's apt configuration is not touched).
set -euo pipefail
prefix=${1:?usage: build-tsan-abseil.sh PREFIX}
version=$(dpkg-query -W -f='${Version}' libabsl-dev)
stamp="$prefix/.built-$version"
if [[ -f "$stamp" ]]; then
  echo "tsan-abseil: $version already built in $prefix"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
# The archive and suite the installed packages come from.
uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
uri=${uri:-http://deb.debian.org/debian}
cat >"$work/apt/src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$work/apt"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
  -o APT::Sandbox::User=root)
echo "tsan-abseil: fetching Debian source of abseil $version"
apt-get "${apt_opts[@]}" -q update >/dev/null
(cd "$work" && apt-get "${apt_opts[@]}" -q source --download-only "abseil=$version" >/dev/null)
# apt-get checked the files against the archive's signed index; dpkg-source
# need not look for a second signature.
dpkg-source --no-check -x "$work"/abseil_*.dsc "$work/src" >/dev/null

echo "tsan-abseil: building (shared, -fsanitize=thread)"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$work/src" -B "$work/build" -G Ninja "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_STANDARD=17 \
  -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g1" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" -j "$(nproc)" >"$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log" >&2; exit 1; }
rm -rf "$prefix"
cmake --install "$work/build" >/dev/null
touch "$stamp"
echo "tsan-abseil: installed in $prefix/lib"
