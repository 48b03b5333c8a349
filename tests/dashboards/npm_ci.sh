#!/usr/bin/env bash
# Installs the pinned npm devDependencies of a test folder into a directory of
# the build tree (never into the source tree), with `npm ci` from the
# committed package-lock.json. Idempotent: when the installed tree matches the
# lockfile (a stamp holds their hash) it returns at once. Packages come from
# npm's user cache when present (--prefer-offline), so a new build directory
# does not download again.
#
# Usage: npm_ci.sh PACKAGE_SOURCE_DIR INSTALL_DIR
set -euo pipefail
src=${1:?usage: npm_ci.sh PACKAGE_SOURCE_DIR INSTALL_DIR}
dest=${2:?usage: npm_ci.sh PACKAGE_SOURCE_DIR INSTALL_DIR}

if ! command -v npm >/dev/null 2>&1; then
  echo "npm_ci: npm not found; install Node.js with npm (scripts/install-deps.sh installs nodejs)" >&2
  exit 1
fi
for f in package.json package-lock.json; do
  [[ -f "$src/$f" ]] || { echo "npm_ci: missing $src/$f" >&2; exit 1; }
done

mkdir -p "$dest"
want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
stamp="$dest/node_modules/.fleetcanary-npm-ci-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "npm_ci: $dest up to date"
  exit 0
fi

cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
echo "$want" >"$stamp"
echo "npm_ci: installed $(find node_modules -maxdepth 2 -name package.json | wc -l) packages into $dest"
