#!/usr/bin/env bash
# Idempotent: a venv under .tools/collector-venv with tests/collector/requirements.txt, for the
# Python gRPC client the collector test drives (seqctl/tests/collector_grpc.rs). Re-running with
# the same requirements does nothing. Usage: bash tests/collector/setup.sh [python]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-${COLLECTOR_PYTHON_BASE:-python3.11}}"
command -v "$py" >/dev/null 2>&1 || py=python3
venv="${COLLECTOR_VENV:-$root/.tools/collector-venv}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "collector-venv: up to date ($venv)"
  exit 0
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "$want" > "$stamp"
echo "collector-venv: installed ($venv, $("$venv/bin/python" --version))"
