#!/usr/bin/env bash
# Runs the core crate's criterion benchmarks and prints a markdown table of the
# medians, with the ratios the core targets are set in. All numbers come from one run.
#   bash scripts/bench-core.sh                # run, then report
#   bash scripts/bench-core.sh --report-only  # report the last run
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--report-only" ]; then
  cargo bench -p sequencer-core --bench verify --bench finalize -- --noplot
fi
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def median(group, name):
    e = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return e["median"]["point_estimate"]  # nanoseconds
def fmt(ns):
    return f"{ns/1e6:.1f} ms" if ns >= 1e6 else f"{ns/1e3:.1f} µs"
k256 = median("recover", "raw_recover_k256")
secp = median("recover", "raw_recover_libsecp256k1")
ver = median("recover", "verify_submission")
fields = median("verify_parts", "validate_fields")
digest = median("verify_parts", "eip712_digest")
parse = median("verify_parts", "parse_signature")
roots = median("merkle", "roots_100k_ids")
epoch = median("finalize", "epoch_10k_projects_x10")
print("| benchmark | median | note |")
print("|---|---|---|")
print(f"| raw signer recovery, k256 | {fmt(k256)} | |")
print(f"| raw signer recovery, libsecp256k1 | {fmt(secp)} | k256 / libsecp256k1 = {k256/secp:.2f}× |")
print(f"| verify one submission (fields, market, EIP-712 digest, recovery) | {fmt(ver)} | {ver/secp:.2f}× raw libsecp256k1 recovery (target ≤ 1.2×) |")
print(f"| &nbsp;&nbsp;of which: field validation / EIP-712 digest / signature parsing | {fmt(fields)} / {fmt(digest)} / {fmt(parse)} | (recovery + these) / recovery = {(secp+fields+digest+parse)/secp:.2f}× |")
print(f"| Merkle root over 100 k submission ids | {fmt(roots)} | target < 100 ms |")
print(f"| finalize 10 k projects × 10 submissions | {fmt(epoch)} | {100_000/(epoch/1e9):,.0f} submissions/s; target < 1 s |")
PY
