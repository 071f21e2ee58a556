"""drift.py's metric checks, mounted: each case copies what drift.py reads into a scratch tree,
breaks one thing (a metric the code no longer records, a label renamed in the code, a read
without the market, a namespace the functions are not given, a runner-only metric) and expects
drift.py to fail naming it; the untouched copy must pass.

    python test_drift.py REPO_ROOT
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
DRIFT = Path(__file__).with_name("drift.py")
# Everything drift.py reads.
TREES = ["localstack", "adapters/aws/src", "adapters/ipfs/src", "ports/src", "handlers/src", "api/src",
         "lambdas/src", "chain/src", "ingress/src", "infra/terraform/modules"]
MON = "infra/terraform/modules/sequencer/monitoring.tf"
CAT = "handlers/src/metrics.rs"


def edit(rel: str, old: str, new: str):
    """Replaces every `old` in `rel`."""
    def apply(root: Path) -> None:
        p = root / rel
        text = p.read_text()
        if old not in text:
            raise SystemExit(f"test_drift: {old!r} not in {rel}; update this test")
        p.write_text(text.replace(old, new))
    return apply


CASES = {
    "the alarm reads a metric the code does not record": (
        edit(MON, 'metric_name         = "anchor_epochs_failed_total"', 'metric_name         = "anchor_failures_total"'),
        "reads anchor_failures_total, which the code never records",
    ),
    "the code renames a label the dashboard searches by": (
        edit(CAT, '"verify_rejected_total" ["reason"]', '"verify_rejected_total" ["why"]'),
        "reads verify_rejected_total with dimensions ['market', 'reason']; the code writes ['market', 'why']",
    ),
    "an alarm without the market dimension": (
        edit(MON, 'metric_name         = "anchor_epochs_total"\n  dimensions          = { market = local.metric_market }\n',
             'metric_name         = "anchor_epochs_total"\n'),
        "reads anchor_epochs_total with dimensions []",
    ),
    "an alarm on another market's value": (
        edit(MON, 'metric_name         = "anchor_epochs_failed_total"\n  dimensions          = { market = local.metric_market }',
             'metric_name         = "anchor_epochs_failed_total"\n  dimensions          = { market = var.data_market_address }'),
        "dimension market = ${var.data_market_address}, not local.metric_market",
    ),
    "a SEARCH with one label too many": (
        edit(MON, "{${local.metric_namespace},market,code}", "{${local.metric_namespace},market,code,reason}"),
        "reads proof_errors_total with dimensions ['market', 'code', 'reason']",
    ),
    "the market written in mixed case by the code": (
        edit(CAT, 'format!("{market:#x}")', 'market.to_checksum(None)'),
        "the market label is no longer `market` = {market:#x}",
    ),
    "the functions not given the namespace the alarms read": (
        edit("infra/terraform/modules/sequencer/locals.tf", "    METRICS_NAMESPACE           = local.metric_namespace\n", ""),
        "pipeline_env must set METRICS_NAMESPACE",
    ),
    "a dashboard line on a metric only the local runner records": (
        edit(MON, '"verify_accepted_total", "tick_epochs_closed_total"', '"verify_accepted_total", "tick_errors_total", "tick_epochs_closed_total"'),
        "reads tick_errors_total, which no Lambda records",
    ),
}


def tree(tmp: Path) -> Path:
    root = tmp / "repo"
    for rel in TREES:
        shutil.copytree(ROOT / rel, root / rel, ignore=shutil.ignore_patterns("node_modules", "__pycache__", ".terraform"))
    return root


def drift(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIFT), str(root)], capture_output=True, text=True)


failures = []
with tempfile.TemporaryDirectory() as tmp:
    clean = drift(tree(Path(tmp) / "clean"))
    if clean.returncode != 0:
        failures.append(f"the untouched copy fails:\n{clean.stdout}{clean.stderr}")
    for i, (name, (apply, expect)) in enumerate(CASES.items()):
        root = tree(Path(tmp) / str(i))
        apply(root)
        r = drift(root)
        if r.returncode == 0 or expect not in r.stdout:
            failures.append(f"{name}: expected a failure naming {expect!r}, got rc={r.returncode}:\n{r.stdout}{r.stderr}")
for f in failures:
    print(f"[test_drift] FAIL {f}")
print(f"[test_drift] {len(CASES)} broken trees, {len(CASES) - len(failures)} caught" if not failures else f"[test_drift] {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
