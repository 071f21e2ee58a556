#!/usr/bin/env bash
# Rebuild ProtocolState.sol with the pinned solc (package-lock.json) into a temp dir and fail if
# the result differs from the committed artifact out/ProtocolState.json.
# Usage: contracts/check.sh        (installs node_modules with `npm ci` when missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [ ! -f node_modules/solc/package.json ] || \
   [ "$(node -p 'require("./node_modules/solc/package.json").version')" != "$(node -p 'require("./package.json").devDependencies.solc')" ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node build.mjs "$tmp" >/dev/null
if ! diff -u out/ProtocolState.json "$tmp/ProtocolState.json" >"$tmp/diff"; then
  head -40 "$tmp/diff" >&2
  echo "contracts/check.sh: out/ProtocolState.json is stale: run (cd contracts && npm ci && node build.mjs out) and commit it" >&2
  exit 1
fi
echo "contracts/check.sh: out/ProtocolState.json matches a fresh build ($(node -p 'require("./node_modules/solc/package.json").version'))"
