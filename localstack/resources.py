"""Create, idempotently, the AWS resources the sequencer uses, in the emulators or in AWS.

    python localstack/resources.py [create] [--services sqs,s3,dynamodb]
    python localstack/resources.py list

Runs with the LocalStack venv's Python (boto3 ships with localstack-core). Endpoints, region and
credentials come from the environment like the Rust SDK's: AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
(source scripts/env.sh). Names are prefixed with SEQ_PREFIX (default "seq").

Queue URLs are printed and written to .local/resources.env (sourceable) for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PREFIX = os.environ.get("SEQ_PREFIX", "seq")
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ROOT = Path(__file__).resolve().parent.parent

MAX_RECEIVE_COUNT = 5
VISIBILITY_TIMEOUT = int(os.environ.get("SEQ_VISIBILITY_TIMEOUT", "30"))
DLQ_RETENTION = 14 * 24 * 3600

# (base name, fifo)
QUEUES = [
    ("submissions", False),
    ("finalize", False),
    ("anchor", True),
]
BUCKETS = ["batches"]
# name -> (has sort key, ttl enabled). Exactly the tables of the state port's `Table::ALL`
# (ports/src/state.rs); every one has a string pk and sk, as `DynamoStore` writes them
# (adapters/aws/src/dynamo.rs).
TABLES = {
    "submissions": (True, True),
    "receipts": (True, True),
    "counters": (True, True),
    "epochs": (True, True),
    "blocks": (True, True),
    "batches": (True, True),
}

CFG = Config(region_name=REGION, retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def client(service: str):
    # botocore reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself.
    return boto3.client(service, config=CFG)


def log(msg: str) -> None:
    print(f"[resources] {msg}", file=sys.stderr, flush=True)


def queue_name(base: str, fifo: bool, dlq: bool = False) -> str:
    name = f"{PREFIX}-{base}" + ("-dlq" if dlq else "")
    return name + (".fifo" if fifo else "")


def ensure_queue(sqs, name: str, attrs: dict[str, str]) -> str:
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    except ClientError as e:
        # Exists with other attributes (e.g. an older redrive policy): bring it in line.
        if e.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        settable = {k: v for k, v in attrs.items() if k != "FifoQueue"}
        sqs.set_queue_attributes(QueueUrl=url, Attributes=settable)
        log(f"queue {name}: existed, attributes updated")
    return url


def create_sqs() -> dict[str, str]:
    sqs = client("sqs")
    urls: dict[str, str] = {}
    for base, fifo in QUEUES:
        fifo_attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {}
        dlq_name = queue_name(base, fifo, dlq=True)
        dlq_url = ensure_queue(sqs, dlq_name, {**fifo_attrs, "MessageRetentionPeriod": str(DLQ_RETENTION)})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        name = queue_name(base, fifo)
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
        url = ensure_queue(
            sqs,
            name,
            {**fifo_attrs, "VisibilityTimeout": str(VISIBILITY_TIMEOUT), "RedrivePolicy": redrive},
        )
        key = base.upper()
        urls[f"SEQ_{key}_QUEUE_URL"] = url
        urls[f"SEQ_{key}_DLQ_URL"] = dlq_url
    return urls


def create_s3() -> None:
    s3 = client("s3")
    for base in BUCKETS:
        name = f"{PREFIX}-{base}"
        try:
            if REGION == "us-east-1":
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        log(f"bucket {name}: ok")


def create_dynamodb() -> None:
    ddb = client("dynamodb")
    for base, (has_sk, ttl) in TABLES.items():
        name = f"{PREFIX}-{base}"
        attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        if has_sk:
            attrs.append({"AttributeName": "sk", "AttributeType": "S"})
            keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        try:
            ddb.create_table(
                TableName=name,
                AttributeDefinitions=attrs,
                KeySchema=keys,
                BillingMode="PAY_PER_REQUEST",
            )
            status = "created"
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            existing = ddb.describe_table(TableName=name)["Table"]["KeySchema"]
            if sorted(k["AttributeName"] for k in existing) != sorted(k["AttributeName"] for k in keys):
                raise SystemExit(f"table {name} exists with another key schema: {existing}")
            status = "existed"
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if ttl:
            desc = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if desc.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
                )
        log(f"table {name}: {status}" + (" (ttl)" if ttl else ""))


def cmd_create(services: set[str]) -> None:
    urls: dict[str, str] = {}
    if "sqs" in services:
        urls = create_sqs()
    if "s3" in services:
        create_s3()
    if "dynamodb" in services:
        create_dynamodb()
    if urls:
        for k, v in urls.items():
            print(f"{k}={v}")
        out = ROOT / ".local" / "resources.env"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"export {k}={v}\n" for k, v in urls.items()))
        log(f"queue URLs written to {out.relative_to(ROOT)}")


def cmd_list() -> None:
    sqs, ddb, s3 = client("sqs"), client("dynamodb"), client("s3")
    for url in sqs.list_queues(QueueNamePrefix=PREFIX).get("QueueUrls", []):
        print(f"queue  {url}")
    for name in ddb.list_tables().get("TableNames", []):
        if name.startswith(PREFIX + "-"):
            print(f"table  {name}")
    for b in s3.list_buckets().get("Buckets", []):
        if b["Name"].startswith(PREFIX + "-"):
            print(f"bucket {b['Name']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="create", choices=["create", "list"])
    ap.add_argument("--services", default="sqs,s3,dynamodb", help="comma list of sqs,s3,dynamodb")
    args = ap.parse_args()
    if args.command == "list":
        cmd_list()
    else:
        cmd_create({s.strip() for s in args.services.split(",") if s.strip()})


if __name__ == "__main__":
    main()
