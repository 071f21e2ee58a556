"""Evaluate the module's locals with terraform itself, without a provider.

    python eval_locals.py TERRAFORM MODULE_DIR

`terraform validate` needs the AWS provider, which these machines cannot install. The module's
logic (per-function defaults and overrides, every function's environment, queue names,
visibility timeouts, which functions and signers exist) lives in locals.tf and variables.tf,
which need no provider once the few references to provider objects are replaced by stand-ins.
This copies those two files into a scratch root, stubs the references (and refuses to run if
one is left over), and evaluates the locals with `terraform console` for several variable sets,
checking the results; a last set must be refused by a variable validation.
Needs terraform >= 1.9 (optional object attributes with defaults).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TF, MOD = sys.argv[1], Path(sys.argv[2])

STUBS = {
    "data.aws_region.current.region": '"us-east-1"',
    "data.aws_caller_identity.current.account_id": '"123456789012"',
    "data.aws_partition.current.partition": '"aws"',
    "aws_lb.kubo[0].dns_name": '"kubo.internal"',
    "aws_kms_key.signer[f].arn": '"arn:aws:kms:us-east-1:123456789012:key/${f}"',
    "data.aws_secretsmanager_secret_version.signer[f].secret_string": '"0xsecret-${f}"',
}

BASE = {
    "prefix": "m1",
    "data_market_address": "0x0000000000000000000000000000000000000001",
    "protocol_state_address": "0x0000000000000000000000000000000000000002",
    "chain_id": 11169,
    "rpc_url": "https://rpc.invalid",
    "lambda_zip_dir": "/zips",
    "ingress_image": "img",
    "vpc_id": "vpc-1",
    "public_subnet_ids": ["subnet-a"],
    "private_subnet_ids": ["subnet-b"],
    "ipfs": {"api_url": "http://kubo:5001"},
}

EXPR = (
    "nonsensitive(jsonencode({fn = local.fn, env = local.function_env, enabled = local.enabled_functions,"
    " scheduled = local.scheduled, signers = local.signing_functions, visibility = local.visibility,"
    " queue_name = local.queue_name, dlq_name = local.dlq_name, ipfs = local.ipfs_api_url}))"
)

problems: list[str] = []


def check(scenario: str, cond: bool, what: str) -> None:
    if not cond:
        problems.append(f"{scenario}: {what}")


def run(root: Path, tfvars: dict) -> tuple[int, str]:
    (root / "s.tfvars.json").write_text(json.dumps(tfvars))
    p = subprocess.run(
        [TF, "console", "-var-file=s.tfvars.json"],
        cwd=root, input=EXPR + "\n", capture_output=True, text=True, timeout=120,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout + p.stderr)
    # console reports diagnostics (e.g. a failed variable validation) but may still exit 0
    return (p.returncode or int("Error:" in out)), out


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "variables.tf").write_text((MOD / "variables.tf").read_text())
        src = (MOD / "locals.tf").read_text()
        src = re.sub(r'^data "[^"]+" "[^"]+" \{\}\n', "", src, flags=re.M)
        for k, v in STUBS.items():
            src = src.replace(k, v)
        left = sorted(set(re.findall(r"\b(?:data\.aws_\w+|aws_\w+)\.\w+", src)))
        if left:
            print(f"[locals] locals.tf references provider objects without a stand-in: {left}; add them to STUBS")
            return 1
        (root / "locals.tf").write_text(src)
        init = subprocess.run([TF, "init", "-backend=false", "-input=false"], cwd=root, capture_output=True, text=True)
        if init.returncode:
            print(init.stdout + init.stderr)
            return 1

        scenarios = {
            "defaults": {},
            "secrets-manager, no epoch manager, proof, kubo, overrides": {
                "signer_backend": "secrets_manager", "signer_secret_ready": True,
                "epoch_manager": {"enabled": False},
                "proof": {"enabled": True, "explorer_tx_url": "https://scan.example/tx/{tx}", "poll_secs": 2},
                "ipfs": {"kubo_on_ecs": True}, "lambda_subnet_ids": ["subnet-c"],
                "functions": {"verify": {"memory_size": 3008, "batching_window_secs": 0, "batch_size": 10}},
                "pipeline": {"batch_size": 25, "tick_poll_ms": 500, "full_node_addresses": ["0x0000000000000000000000000000000000000003"]},
            },
            "secrets-manager before the secrets are filled": {"signer_backend": "secrets_manager"},
        }
        for name, extra in scenarios.items():
            rc, out = run(root, {**BASE, **extra})
            if rc:
                problems.append(f"{name}: terraform console failed:\n{out}")
                continue
            v = json.loads(json.loads([ln for ln in out.strip().splitlines() if ln.startswith('"')][-1]))
            env, fn = v["env"], v["fn"]
            for f in v["enabled"]:
                e = env[f]
                for k in ("DATA_MARKET_ADDRESS", "PROTOCOL_STATE_ADDRESS", "CHAIN_ID", "RPC_URL"):
                    check(name, k in e, f"{f} lacks {k}")
                check(name, all(isinstance(x, str) for x in e.values()), f"{f}: a non-string env value")
                if f != "epoch-manager":
                    check(name, e.get("SEQ_PREFIX") == "m1", f"{f}: SEQ_PREFIX")
                    check(name, e.get("ANCHOR_GROUP_ID") == "m1-anchor", f"{f}: ANCHOR_GROUP_ID")
                    check(name, e.get("IPFS_API_URL") == v["ipfs"], f"{f}: IPFS_API_URL")
                else:
                    check(name, "SEQ_PREFIX" not in e and "IPFS_API_URL" not in e, "epoch-manager gets pipeline settings")
                signer = {"KMS_KEY_ID", "SIGNER_PRIVATE_KEY"} & set(e)
                check(name, (f in ("anchor", "epoch-manager")) or not signer, f"{f} gets a signer: {signer}")
            check(name, v["queue_name"] == {"submissions": "m1-submissions", "finalize": "m1-finalize", "anchor": "m1-anchor.fifo"}, f"queue names {v['queue_name']}")
            check(name, v["dlq_name"] == {"submissions": "m1-submissions-dlq", "finalize": "m1-finalize-dlq", "anchor": "m1-anchor-dlq.fifo"}, f"dlq names {v['dlq_name']}")
            check(name, v["visibility"]["submissions"] == fn["verify"]["timeout"] * fn["verify"]["visibility_multiplier"], "visibility != multiplier x timeout")
            check(name, fn["anchor"]["reserved_concurrency"] == 1, "anchor must be one writer")
            check(name, set(v["scheduled"]) == {"tick", "epoch-manager"} & set(v["enabled"]), f"scheduled {v['scheduled']}")
            if name == "defaults":
                check(name, set(v["enabled"]) == {"verify", "tick", "finalize", "anchor", "epoch-manager"}, f"enabled {v['enabled']}")
                check(name, env["anchor"].get("KMS_KEY_ID", "").endswith("/anchor"), "anchor KMS_KEY_ID")
                check(name, env["epoch-manager"].get("KMS_KEY_ID", "").endswith("/epoch-manager"), "epoch-manager has its own key")
                check(name, "BATCH_SIZE" not in env["finalize"], "unset settings must be left to the code's default")
                check(name, not any("RUST_LOG" in env[f] for f in v["enabled"]),
                      "RUST_LOG unset by default: it would override logging_config's application_log_level")
                check(name, fn["verify"]["memory_size"] == 1769 and fn["verify"]["batch_size"] == 100, "verify defaults")
            elif name.startswith("secrets-manager, no"):
                check(name, "epoch-manager" not in v["enabled"] and "proof" in v["enabled"], f"enabled {v['enabled']}")
                check(name, env["anchor"].get("SIGNER_PRIVATE_KEY") == "0xsecret-anchor", "anchor key from its secret")
                check(name, v["ipfs"] == "http://kubo.internal:5001", f"kubo url {v['ipfs']}")
                check(name, fn["verify"]["memory_size"] == 3008 and fn["verify"]["batching_window_secs"] == 0, "overrides (0 must stay 0)")
                check(name, fn["verify"]["timeout"] == 30, "untouched fields keep defaults")
                check(name, env["finalize"].get("BATCH_SIZE") == "25" and env["tick"].get("TICK_POLL_MS") == "500", "pipeline settings")
                check(name, "TICK_POLL_MS" not in env["verify"], "TICK_POLL_MS only for tick")
                check(name, env["verify"].get("FULL_NODE_ADDRESSES") == "0x0000000000000000000000000000000000000003", "FULL_NODE_ADDRESSES")
                check(name, env["proof"].get("STATUS_EXPLORER_TX_URL") == "https://scan.example/tx/{tx}"
                      and env["proof"].get("STATUS_POLL_SECS") == "2" and "STATUS_IPFS_GATEWAY_URL" not in env["proof"],
                      f"status page settings {env['proof']}")
                check(name, "STATUS_EXPLORER_TX_URL" not in env["verify"], "status page settings only for proof")
            else:
                check(name, not ({"KMS_KEY_ID", "SIGNER_PRIVATE_KEY"} & set(env["anchor"])), "no key before the secret is ready")

        refused = {
            "prefix with capitals": {"prefix": "Bad_Prefix"},
            "prefix too long for load balancer names": {"prefix": "a" * 24},
            "stopTimeout over 120 s": {"ingress": {"drain_timeout_secs": 115}},
            "unknown function": {"functions": {"verifier": {"memory_size": 128}}},
            "no IPFS": {"ipfs": {}},
            "public proof access with an open function URL": {"proof": {"enabled": True, "access": "public", "auth_type": "NONE"}},
            "unknown proof access": {"proof": {"enabled": True, "access": "anyone"}},
            "proof rate limit under WAF's minimum": {"proof": {"enabled": True, "access": "public", "rate_limit": 5}},
            "unknown log level": {"log_level": "LOUD"},
            "explorer link without {tx}": {"proof": {"enabled": True, "explorer_tx_url": "https://scan.example/tx/"}},
            "gateway link that is not http(s)": {"proof": {"enabled": True, "ipfs_gateway_url": "javascript:x({cid})"}},
            "status poll of 0 s": {"proof": {"enabled": True, "poll_secs": 0}},
        }
        for name, extra in refused.items():
            rc, out = run(root, {**BASE, **extra})
            check(name, "Invalid value for variable" in out, "must be refused by a variable validation")

    for p in problems:
        print(f"[locals] {p}")
    print(f"[locals] {len(scenarios)} variable sets evaluated, {len(refused)} refused as they must be: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
