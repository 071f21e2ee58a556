#!/usr/bin/env bash
# Create (idempotently) the queues, bucket and tables the sequencer uses; print the queue URLs.
#
#   localstack/create-resources.sh [localstack] [dynamodb]    (no argument: both)
#
# "localstack" = SQS queues + S3 bucket, "dynamodb" = DynamoDB tables. Works against the local
# emulators (default endpoints from scripts/env.sh) or anything AWS_ENDPOINT_URL* points at.
# The logic is in localstack/resources.py, run with the LocalStack venv's Python (boto3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

[[ -x "$LOCALSTACK_PYTHON" ]] || {
    echo "[resources] ERROR: no Python with boto3 at $LOCALSTACK_PYTHON; run scripts/tools.sh localstack" >&2
    exit 1
}

services=()
comps=("$@")
((${#comps[@]})) || comps=(localstack dynamodb)
for c in "${comps[@]}"; do
    case "$c" in
    localstack) services+=(sqs s3) ;;
    dynamodb) services+=(dynamodb) ;;
    *) echo "[resources] ERROR: unknown service '$c' (known: localstack dynamodb)" >&2; exit 1 ;;
    esac
done

exec "$LOCALSTACK_PYTHON" "$ROOT/localstack/resources.py" create --services "$(IFS=,; echo "${services[*]}")"
