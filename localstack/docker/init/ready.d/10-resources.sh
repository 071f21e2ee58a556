#!/bin/bash
# LocalStack ready hook: the same resources, with the same names, as the Docker-less setup
# (localstack/start.sh -> localstack/create-resources.sh -> localstack/resources.py).
# SEQ_INIT_RESOURCES=0 leaves everything to `tflocal apply` (localstack/terraform).
set -euo pipefail
if [[ "${SEQ_INIT_RESOURCES:-1}" != 1 ]]; then
    echo "[sequencer] SEQ_INIT_RESOURCES=0: not creating resources (use tflocal apply)"
    exit 0
fi
export AWS_ENDPOINT_URL=http://127.0.0.1:4566
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# LocalStack's own Python has boto3.
PY="$(command -v python3)"
[[ -x /opt/code/localstack/.venv/bin/python ]] && PY=/opt/code/localstack/.venv/bin/python
"$PY" /opt/sequencer/localstack/resources.py create --services sqs,s3,dynamodb
"$PY" /opt/sequencer/localstack/resources.py list
