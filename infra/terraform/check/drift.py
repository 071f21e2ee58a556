"""No drift between the Terraform and the code: names, environment, event shapes, IAM actions.

    python drift.py REPO_ROOT

Reads the code (no build) and the module's HCL (python-hcl2) and checks that
  1. names: the queues, tables and buckets of localstack/resources.py (the emulator setup the
     tests use), of the adapters (adapters/aws/src/sqs.rs QueueKind, ports/src/state.rs
     Table) and of the module (locals.tf queues/tables/buckets, with the same
     <prefix>-<base>[-dlq][.fifo] name shapes, the same TTL tables) are the same sets;
  2. environment: every variable the module gives a function is one the code reads
     (handlers/src/config.rs, adapters/aws/src/lib.rs, adapters/ipfs/src/lib.rs,
     chain/src/config.rs, lambdas/src), and the code's required ones are given; every INGRESS_*
     the module sets is in ingress/src/config.rs; the Lambdas log through lambda_runtime's
     tracing setup, so the module gives them JSON logs at var.log_level;
  3. event shapes: every Lambda binary (lambdas/src/bin) is a module function; those taking an
     SqsEvent are exactly the queue consumers (with ReportBatchItemFailures), those taking a
     serde_json::Value exactly the scheduled ones, the one serving HTTP (lambda_http) the proof
     URL;
  4. IAM: per function, the DynamoDB actions on each table are exactly those its handler's state
     calls need (the handler's calls of the records layer, handlers/src/records/, followed to the
     store calls inside them), the queues it sends to are exactly those it sends to; the ingress
     task role has exactly the SQS calls of ingress/src/sink/sqs.rs;
  5. metrics: every metric the alarms and the dashboard read in the functions' namespace
     (monitoring.tf) is one of the catalogue (handlers/src/metrics.rs) that a Lambda records
     (a handler or lambdas/src), with exactly its dimensions (market, then its label keys) and
     the market's value as the code writes it; the namespace the module gives the functions
     (METRICS_NAMESPACE) is the one it reads; only the log metric filters' own metrics are read
     without dimensions.
Exit 1 with one line per mismatch.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import hcl2

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
MOD = ROOT / "infra/terraform/modules/sequencer"
errors: list[str] = []
notes: list[str] = []


def err(area: str, msg: str) -> None:
    errors.append(f"[drift] {area}: {msg}")


def unq(s):
    if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    return s


def deep_unq(v):
    if isinstance(v, dict):
        return {unq(k): deep_unq(x) for k, x in v.items() if not str(k).startswith("__")}
    if isinstance(v, list):
        return [deep_unq(x) for x in v]
    return unq(v)


def hcl_locals(name: str) -> dict:
    with (MOD / name).open() as fh:
        doc = hcl2.load(fh)
    out: dict = {}
    for block in doc.get("locals", []):
        out.update(deep_unq(block))
    return out


def read(rel: str) -> str:
    p = ROOT / rel
    return p.read_text() if p.exists() else ""


# ------------------------------------------------------------------------------ 1. names
def py_const(src: str, name: str):
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            return ast.literal_eval(node.value)
    raise SystemExit(f"{name} not found in localstack/resources.py")


res_py = read("localstack/resources.py")
py_queues = {b: fifo for b, fifo in py_const(res_py, "QUEUES")}
py_tables = {t: ttl for t, (_sk, ttl) in py_const(res_py, "TABLES").items()}
py_sk = {t: sk for t, (sk, _ttl) in py_const(res_py, "TABLES").items()}
py_buckets = set(py_const(res_py, "BUCKETS"))

loc = hcl_locals("locals.tf")
tf_queues = {q: v["fifo"] for q, v in loc["queues"].items()}
tf_tables = dict(loc["tables"])
tf_buckets = set(loc["buckets"])

if py_queues != tf_queues:
    err("names", f"queues differ: resources.py {py_queues} vs terraform {tf_queues}")
if py_tables != tf_tables:
    err("names", f"tables/TTL differ: resources.py {py_tables} vs terraform {tf_tables}")
if not all(py_sk.values()):
    err("names", "resources.py has a table without a sort key; the module gives every table pk + sk")
if py_buckets != tf_buckets:
    err("names", f"buckets differ: resources.py {py_buckets} vs terraform {tf_buckets}")
# name shapes: resources.py queue_name() and the module's queue_name/dlq_name
if 'f"{PREFIX}-{base}" + ("-dlq" if dlq else "")' not in res_py or '(".fifo" if fifo else "")' not in res_py:
    err("names", "resources.py queue_name() changed shape; update this check and locals.tf")
if loc["queue_name"] != '${{for q, c in local.queues : q => "${var.prefix}-${q}${c.fifo ? ".fifo" : ""}"}}':
    err("names", f"locals.tf queue_name is not <prefix>-<base>[.fifo]: {loc['queue_name']}")
if loc["dlq_name"] != '${{for q, c in local.queues : q => "${var.prefix}-${q}-dlq${c.fifo ? ".fifo" : ""}"}}':
    err("names", f"locals.tf dlq_name is not <prefix>-<base>-dlq[.fifo]: {loc['dlq_name']}")
storage = read("infra/terraform/modules/sequencer/storage.tf")
if 'name                        = "${var.prefix}-${each.key}"' not in storage or 'attribute_name = ttl.value' not in storage:
    err("names", "storage.tf table name or ttl attribute changed shape")
if 'for_each = each.value ? ["ttl"] : []' not in storage:
    err("names", "storage.tf: the ttl block must follow local.tables")
# One retention for every record (handlers/src/records/mod.rs): every table expires by TTL, on
# the attribute the adapter writes.
for t, ttl in sorted(tf_tables.items()):
    if not ttl:
        err("names", f"locals.tf: table {t} has no TTL; every record expires with its epoch (RECORD_TTL_DAYS)")
if 'const TTL: &str = "ttl";' not in read("adapters/aws/src/dynamo.rs"):
    err("names", "adapters/aws/src/dynamo.rs no longer writes the TTL as `ttl`, the attribute storage.tf enables")
# the adapters' own names
sqs_rs = read("adapters/aws/src/sqs.rs")
state_rs = read("ports/src/state.rs")
code_tables = set(re.findall(r'Table::\w+ => "([a-z_]+)"', state_rs))
if code_tables != set(tf_tables):
    err("names", f"ports/src/state.rs Table names {sorted(code_tables)} != terraform {sorted(tf_tables)}")
code_queues = set(re.findall(r'QueueKind::\w+ => "([a-z_]+)"', sqs_rs))
if code_queues and code_queues != set(tf_queues):
    err("names", f"adapters/aws/src/sqs.rs queue names {sorted(code_queues)} != terraform {sorted(tf_queues)}")
if not code_queues:
    notes.append("adapters/aws/src/sqs.rs: no `QueueKind::X => \"name\"` arms found; queue base names checked against resources.py only")

# ------------------------------------------------------------------------------ 2. environment
ENV_CALL = re.compile(r'(?:get|var|text|millis|num|env)\(\s*(?:&get,\s*)?"([A-Z][A-Z0-9_]+)"')
lambdas_lib = read("lambdas/src/lib.rs")
pipeline_src = "".join(read(p) for p in ["handlers/src/config.rs", "adapters/aws/src/lib.rs", "adapters/ipfs/src/lib.rs", "chain/src/config.rs", "lambdas/src/emf.rs"])
bin_dir = ROOT / "lambdas/src/bin"
bins = {p.stem: p.read_text() for p in sorted(bin_dir.glob("*.rs"))}

em_start = lambdas_lib.find("fn epoch_manager_from_env")
pipeline_lib = lambdas_lib if em_start < 0 else lambdas_lib[:em_start]
em_lib = "" if em_start < 0 else lambdas_lib[em_start:]
chain_env = set(ENV_CALL.findall(read("chain/src/config.rs")))
pipeline_env = set(ENV_CALL.findall(pipeline_src + pipeline_lib))
ALWAYS_OK = {"RUST_LOG"}  # lambda_runtime::tracing::init_default_subscriber reads it

code_env = {}
for name in ["verify", "tick", "finalize", "anchor", "proof"]:
    code_env[name] = pipeline_env | set(ENV_CALL.findall(bins.get(name, ""))) | ALWAYS_OK
# The proof function also reads the status page's settings (api/src/config.rs).
code_env["proof"] |= set(ENV_CALL.findall(read("api/src/config.rs").split("#[cfg(test)]")[0]))
# The epoch manager's own settings live beside its service (handlers/src/epoch_manager/config.rs).
em_config = read("handlers/src/epoch_manager/config.rs").split("#[cfg(test)]")[0]
code_env["epoch-manager"] = chain_env | set(ENV_CALL.findall(em_lib + em_config)) | ALWAYS_OK

locals_src = read("infra/terraform/modules/sequencer/locals.tf")


def env_keys(section: str) -> set[str]:
    m = re.search(rf"^  {re.escape(section)} = (.*?)^  \S", locals_src, re.S | re.M)
    if not m:
        err("env", f"locals.tf: {section} not found")
        return set()
    return set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\s*=", m.group(1)))


tf_pipeline = env_keys("pipeline_env")
tf_signer = env_keys("signer_env")
tf_em = env_keys("epoch_manager_env")
tf_fn_env = env_keys("function_env")
tf_status = env_keys("status_env")
tf_env = {
    "verify": tf_pipeline,
    "tick": tf_pipeline | (tf_fn_env & {"TICK_POLL_MS"}),
    "finalize": tf_pipeline,
    "anchor": tf_pipeline | tf_signer,
    "proof": tf_pipeline | tf_status,
    "epoch-manager": tf_em | tf_signer,
}
REQUIRED = {"DATA_MARKET_ADDRESS", "PROTOCOL_STATE_ADDRESS", "CHAIN_ID", "RPC_URL"}
for fn, keys in tf_env.items():
    if fn == "epoch-manager" and not em_lib:
        notes.append("epoch-manager: lambdas/src/lib.rs has no epoch_manager_from_env yet; its environment is not checked")
        continue
    if fn in ("proof",) and fn not in bins:
        notes.append(f"{fn}: no binary yet; its environment is not checked")
        continue
    for k in sorted(keys - code_env[fn]):
        err("env", f"{fn}: terraform sets {k}, which the code never reads")
    for k in sorted(REQUIRED - keys):
        err("env", f"{fn}: the code requires {k}; terraform does not set it")
if "KMS_KEY_ID" not in chain_env or "SIGNER_PRIVATE_KEY" not in chain_env:
    err("env", "chain/src/config.rs no longer reads KMS_KEY_ID / SIGNER_PRIVATE_KEY")

# Logging: the binaries follow the function's logging configuration (lambda_runtime's tracing
# setup reads AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL), so the module must set both.
functions_tf_src = read("infra/terraform/modules/sequencer/functions.tf")
if "lambda_runtime::tracing::init_default_subscriber" in lambdas_lib:
    if not re.search(r'log_format\s*=\s*"JSON"', functions_tf_src):
        err("env", 'functions.tf: logging_config must set log_format = "JSON" (the binaries log through lambda_runtime\'s tracing setup)')
    if not re.search(r"application_log_level\s*=\s*var\.log_level", functions_tf_src):
        err("env", "functions.tf: logging_config must set application_log_level = var.log_level")
else:
    err("env", "lambdas/src/lib.rs no longer logs through lambda_runtime::tracing::init_default_subscriber; update this check and functions.tf logging_config")

ingress_cfg = read("ingress/src/config.rs")
ingress_tf = read("infra/terraform/modules/sequencer/ingress.tf")
ingress_code_env = set(re.findall(r'"(INGRESS_[A-Z0-9_]+)"', ingress_cfg))
for k in sorted(set(re.findall(r"\b(INGRESS_[A-Z0-9_]+)\b", ingress_tf)) - ingress_code_env):
    err("env", f"ingress: terraform sets {k}, not in ingress/src/config.rs")

# ------------------------------------------------------------------------------ 3. event shapes
tf_functions = set(loc["function_defaults"])
consumers = {v["consumer"] for v in loc["queues"].values()}
functions_tf = read("infra/terraform/modules/sequencer/functions.tf")
scheduled = set(re.findall(r'"([a-z-]+)"', re.search(r"scheduled\s+= toset\(\[for f in \[(.*?)\]", locals_src).group(1)))
for b, src in bins.items():
    if b not in tf_functions:
        err("events", f"binary {b} has no function in the module")
        continue
    takes_sqs = "LambdaEvent<SqsEvent>" in src or "sequencer_lambdas::run_sqs(" in src
    if takes_sqs and b not in consumers:
        err("events", f"{b} takes an SqsEvent but consumes no queue in the module")
    if "LambdaEvent<serde_json::Value>" in src and b not in scheduled:
        err("events", f"{b} takes a schedule event but is not scheduled")
    if "lambda_http::run" in src and b != "proof":
        err("events", f"{b} serves HTTP but only the proof function has a function URL")
    if "lambda_http::run" in src and 'aws_lambda_function.fn["proof"]' not in functions_tf:
        err("events", f"{b} serves HTTP but has no aws_lambda_function_url")
for f in sorted(consumers):
    if f in bins and not ("LambdaEvent<SqsEvent>" in bins[f] or "sequencer_lambdas::run_sqs(" in bins[f]):
        err("events", f"{f} consumes a queue but its binary does not take an SqsEvent")
    handler = read(f"handlers/src/{f}.rs")
    if "SqsBatchResponse" not in handler:
        err("events", f"{f}'s handler does not return SqsBatchResponse, yet its mapping uses ReportBatchItemFailures")
if 'function_response_types            = ["ReportBatchItemFailures"]' not in functions_tf:
    err("events", "the event source mappings must use ReportBatchItemFailures")
for f in sorted(tf_functions - set(bins)):
    notes.append(f"{f}: in the module, no binary in lambdas/src/bin yet (deploy it disabled or build it first)")

# ------------------------------------------------------------------------------ 4. IAM
OP_ACTION = {
    "get": "dynamodb:GetItem",
    "put": "dynamodb:PutItem",
    "put_if_absent": "dynamodb:PutItem",
    "transition": "dynamodb:PutItem",
    "add_bounded": "dynamodb:UpdateItem",
    "query": "dynamodb:Query",
    "delete": "dynamodb:DeleteItem",
}
CALL = re.compile(r"\.(get|put|put_if_absent|transition|add_bounded|query|delete)\(\s*Table::(\w+)")
QUERY_ALL = re.compile(r"query_all\([^;]*?Table::(\w+)", re.S)
iam = hcl_locals("iam.tf")
tf_ddb = iam["dynamodb_actions"]


def snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


# Transactions (`transact`: TransactWriteItems needs the action of each item it writes or
# checks) and batched reads and writes (`batch_get`, `batch_put`: every table the method names).
TX_OP = {"Check": "dynamodb:ConditionCheckItem", "Put": "dynamodb:PutItem", "AddMembers": "dynamodb:UpdateItem"}
TX_CALL = re.compile(r"TxOp::(Check|Put|AddMembers)\s*\{\s*table:\s*Table::(\w+)")
TABLE = re.compile(r"Table::(\w+)")


def store_calls(src: str) -> set[tuple[str, str]]:
    """(action, table) of the state-store calls written in `src`."""
    out = {(OP_ACTION[op], snake(table)) for op, table in CALL.findall(src)}
    out |= {("dynamodb:Query", snake(table)) for table in QUERY_ALL.findall(src)}
    out |= {(TX_OP[op], snake(table)) for op, table in TX_CALL.findall(src)}
    if ".batch_get(" in src:
        out |= {("dynamodb:BatchGetItem", snake(t)) for t in TABLE.findall(src)}
    if ".batch_put(" in src:
        out |= {("dynamodb:BatchWriteItem", snake(t)) for t in TABLE.findall(src)}
    return out


# The records layer: each public method's own store calls and the records methods it calls.
RECORDS_FN = re.compile(r"^    pub async fn (\w+)(?:<[^>]*>)?\(", re.M)
records_own: dict[str, set[tuple[str, str]]] = {}
records_calls: dict[str, set[str]] = {}
for path in sorted((ROOT / "handlers/src/records").glob("*.rs")):
    text = path.read_text().split("#[cfg(test)]")[0]
    starts = [(m.start(), m.group(1)) for m in RECORDS_FN.finditer(text)]
    for i, (at, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        body = text[at:end]
        if name in records_own:
            err("iam", f"records method {name} is defined twice; the IAM check needs unique names")
        records_own[name] = store_calls(body)
        records_calls[name] = set(re.findall(r"self\.(\w+)\(", body))
if not records_own:
    err("iam", "handlers/src/records/ has no `pub async fn` methods; update this check")


def records_needs(src: str) -> set[tuple[str, str]]:
    """Store calls of the records methods `src` calls, followed through the methods they call."""
    todo = [n for n in set(re.findall(r"\.(\w+)\(", src)) if n in records_own]
    seen: set[str] = set()
    out: set[tuple[str, str]] = set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        out |= records_own[n]
        todo.extend(m for m in records_calls[n] if m in records_own)
    return out


# Where each function's state access is written: its handler (and its submodules); for proof,
# the queries.
HANDLER_SRC = {
    "verify": ["handlers/src/verify.rs"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "handlers/src/verify").glob("*.rs")),
    "tick": ["handlers/src/tick.rs"],
    "finalize": ["handlers/src/finalize.rs"],
    "anchor": ["handlers/src/anchor.rs"],
    "proof": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "handlers/src/query").glob("*.rs")),
}
for fn, paths in HANDLER_SRC.items():
    src = "".join(read(p).split("#[cfg(test)]")[0] for p in paths)
    if not src:
        err("iam", f"{fn}: none of {paths} exists; update this check")
        continue
    need: dict[str, set[str]] = {}
    for action, table in store_calls(src) | records_needs(src):
        need.setdefault(table, set()).add(action)
    have = {t: set(a) for t, a in tf_ddb.get(fn, {}).items()}
    if need != have:
        for t in sorted(set(need) | set(have)):
            miss, extra = need.get(t, set()) - have.get(t, set()), have.get(t, set()) - need.get(t, set())
            if miss:
                err("iam", f"{fn} on {t}: the code needs {sorted(miss)}, terraform does not grant it")
            if extra:
                err("iam", f"{fn} on {t}: terraform grants {sorted(extra)}, the code never calls it")
    sends = set()
    for port, queue in [("finalize_queue", "main[\"finalize\"]"), ("anchor_queue", "main[\"anchor\"]"), ("submissions_dlq", "dlq[\"submissions\"]")]:
        if re.search(rf"ports\s*\.\s*{port}\s*\.\s*send\(", src) or re.search(rf"\.{port}\s*\n?\s*\.send\(", src):
            sends.add(queue)
    have_sends = {re.sub(r"^\$\{aws_sqs_queue\.(.*)\.arn\}$", r"\1", s) for s in iam["sends_to"].get(fn, [])}
    if sends != have_sends:
        err("iam", f"{fn} sends to {sorted(sends)} in the code, terraform allows {sorted(have_sends)}")
    # Queue depth (the status summary's dead-letter queues): GetQueueAttributes on every DLQ.
    reads_depth = re.search(r"\.depth\(\)", src) is not None
    granted = iam.get("reads_depth_of", {}).get(fn)
    have_depth = set(re.findall(r"values\(aws_sqs_queue\.(\w+)\)\[\*\]\.arn", str(granted or "")))
    if reads_depth and have_depth != {"dlq"}:
        err("iam", f"{fn} reads queue depths (Queue::depth) in the code; terraform must grant sqs:GetQueueAttributes on every DLQ (iam.tf reads_depth_of), has {sorted(have_depth)}")
    if not reads_depth and have_depth:
        err("iam", f"{fn}: terraform grants reading queue depths, the code never calls Queue::depth")

sink = read("ingress/src/sink/sqs.rs")
calls = set(re.findall(r"\.(get_queue_url|get_queue_attributes|send_message_batch|send_message)\(", sink))
SQS_ACTION = {"get_queue_url": "sqs:GetQueueUrl", "get_queue_attributes": "sqs:GetQueueAttributes",
              "send_message_batch": "sqs:SendMessage", "send_message": "sqs:SendMessage"}
need_ingress = {SQS_ACTION[c] for c in calls}
m = re.search(r'sid       = "Submissions"\s*\n\s*actions   = \[(.*?)\]', ingress_tf)
have_ingress = set(re.findall(r'"(sqs:\w+)"', m.group(1))) if m else set()
if need_ingress != have_ingress:
    err("iam", f"ingress task role: code calls {sorted(need_ingress)}, terraform grants {sorted(have_ingress)}")

# ------------------------------------------------------------------------------ 5. metrics
CATALOGUE_LINE = re.compile(r'^\s*(counter|histogram) (\w+) = "([a-z0-9_]+)" \[([^\]]*)\] (\w+);', re.M)
metrics_rs = read("handlers/src/metrics.rs")
catalogue = {
    name: {"kind": kind, "id": ident, "labels": re.findall(r'"([a-z_]+)"', labels)}
    for kind, ident, name, labels, _unit in CATALOGUE_LINE.findall(metrics_rs)
}
if not catalogue:
    err("metrics", "handlers/src/metrics.rs: no catalogue lines (`counter ID = \"name\" [labels] Unit;`); update this check")
if 'pub const MARKET_LABEL: &str = "market";' not in metrics_rs or 'format!("{market:#x}")' not in metrics_rs:
    err("metrics", "handlers/src/metrics.rs: the market label is no longer `market` = {market:#x} (lowercase hex); update monitoring.tf and this check")

# What a Lambda records: the catalogue constants the handlers and the proof API use (the
# runner's own loop, e.g. TICK_ERRORS, is not a Lambda), and the functions' invocation times
# (lambdas/src/emf.rs).
handler_src = "".join(
    f.read_text().split("#[cfg(test)]")[0]
    for d in ("handlers/src", "api/src")
    for f in sorted((ROOT / d).rglob("*.rs"))
    if f.name != "metrics.rs"
)
used_ids = set(re.findall(r"\b(?:m|metrics)::([A-Z][A-Z0-9_]+)\b", handler_src))
emf_rs = read("lambdas/src/emf.rs")
lambda_emitted = {n for n, d in catalogue.items() if d["id"] in used_ids}
if "invocation_ms(function)" in emf_rs:
    lambda_emitted |= {n for n in catalogue if n.endswith("_invocation_ms")}
if "metrics_cloudwatch_embedded" not in emf_rs or ".cloudwatch_namespace(" not in emf_rs:
    err("metrics", "lambdas/src/emf.rs no longer writes EMF with a namespace through metrics_cloudwatch_embedded; update this check")
if loc["pipeline_env"].find("METRICS_NAMESPACE = local.metric_namespace") < 0 and \
        "METRICS_NAMESPACE           = local.metric_namespace" not in locals_src:
    err("metrics", "locals.tf: pipeline_env must set METRICS_NAMESPACE = local.metric_namespace (the namespace monitoring.tf reads)")

monitoring_src = read("infra/terraform/modules/sequencer/monitoring.tf")
mon = hcl_locals("monitoring.tf")
log_metric_names = set(re.findall(r"^\s+(\w+)\s*=\s*\{ fn = ", monitoring_src, re.M))
if mon.get("metric_market") != "${lower(var.data_market_address)}":
    err("metrics", f"monitoring.tf: metric_market must be lower(var.data_market_address) (the code writes lowercase hex), not {mon.get('metric_market')}")
MARKET_REF = "${local.metric_market}"

# (where, name, dimension keys) of every read of the namespace.
reads: list[tuple[str, str, list[str]]] = []
with (MOD / "monitoring.tf").open() as fh:
    mon_doc = hcl2.load(fh)
for block in mon_doc.get("resource", []):
    for rname, body in deep_unq(block).get("aws_cloudwatch_metric_alarm", {}).items():
        if body.get("namespace") != "${local.metric_namespace}":
            continue
        dims = body.get("dimensions") or {}
        if dims and dims.get("market") != MARKET_REF:
            err("metrics", f"alarm {rname}: dimension market = {dims.get('market')}, not local.metric_market")
        reads.append((f"alarm {rname}", body.get("metric_name", ""), list(dims)))
        if "extended_statistic" in body and catalogue.get(body.get("metric_name"), {}).get("kind") == "counter":
            err("metrics", f"alarm {rname}: a percentile of the counter {body.get('metric_name')}")
line = mon.get("emf_line")
if line is None:
    err("metrics", "monitoring.tf: local.emf_line (the dashboard's lines of the code's series) not found; update this check")
else:
    names = re.findall(r'"([a-z0-9_]+)"', line.split(":", 1)[0])
    shape = line.split("=>", 1)[1] if "=>" in line else ""
    if shape.strip().rstrip("}").strip() != '[local.metric_namespace, name, "market", local.metric_market]':
        err("metrics", f"monitoring.tf: emf_line must be [local.metric_namespace, name, \"market\", local.metric_market], not {shape}")
    reads += [("dashboard", n, ["market"]) for n in names]
    for n in re.findall(r'emf_line\["([^"]+)"\]', monitoring_src):
        if n not in names:
            err("metrics", f"dashboard: emf_line[\"{n}\"] is not in local.emf_line")
    for n in re.findall(r'for n in \[([^\]]*)\] : local\.emf_line\[n\]', monitoring_src):
        for m in re.findall(r'"([^"]+)"', n):
            if m not in names:
                err("metrics", f"dashboard: emf_line[\"{m}\"] is not in local.emf_line")
SEARCH = re.compile(r"SEARCH\('\{\$\{local\.metric_namespace\},([^}]*)\} MetricName=\\+\"(\w+)\\+\"([^']*)'")
for dims, name, rest in SEARCH.findall(monitoring_src):
    if f'market=\\"{MARKET_REF}\\"' not in rest:
        err("metrics", f"dashboard SEARCH of {name}: not filtered on market = local.metric_market")
    reads.append(("dashboard SEARCH", name, [d.strip() for d in dims.split(",")]))
if "SEARCH(" in monitoring_src and not SEARCH.search(monitoring_src):
    err("metrics", "monitoring.tf: a SEARCH expression this check cannot read; update it")
for name in re.findall(r'\[local\.metric_namespace,\s*"(\w+)"', monitoring_src):
    reads.append(("dashboard", name, []))

for where, name, dims in reads:
    if not dims and name in log_metric_names:
        continue
    d = catalogue.get(name)
    if d is None:
        err("metrics", f"{where} reads {name}, which the code never records (not in handlers/src/metrics.rs)")
        continue
    want = ["market"] + d["labels"]
    if sorted(dims) != sorted(want):
        err("metrics", f"{where} reads {name} with dimensions {dims}; the code writes {want}")
    if name not in lambda_emitted:
        err("metrics", f"{where} reads {name}, which no Lambda records (only the local runner)")
if not reads:
    err("metrics", "monitoring.tf reads none of the code's metrics; update this check")

for n in notes:
    print(f"[drift] note: {n}")
for e in errors:
    print(e)
print(f"[drift] names, environment, event shapes and IAM of {len(tf_functions)} functions + ingress, "
      f"{len(reads)} metric reads: {len(errors)} mismatch(es)")
sys.exit(1 if errors else 0)
