#!/usr/bin/env bash
# Installs the Debian 12 packages fleetcanary needs to build, test and run its
# demo, installing only what is missing. Idempotent: a second run does nothing.
# Runs apt-get as root, through sudo otherwise; says what it needs when it can
# do neither.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev prometheus-cpp-dev libcurl4-openssl-dev libsqlite3-dev libssl-dev
  libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  clang-format curl openssl python3 python3-grpcio nodejs
  python3-yaml libxml2-dev python3-botocore
  libcli11-dev libjemalloc-dev
  prometheus
  nghttp2-server
  libcivetweb-dev wrk nginx-light python3-protobuf chromium
  libpq-dev postgresql
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} missing packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install-deps: need root to install: ${missing[*]}" >&2
  echo "install-deps: run as root, give this user passwordless sudo, or run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
