#!/usr/bin/env bash
# Stop the emulators started by localstack/start.sh, by their pid files under .local/.
#
#   localstack/stop.sh [localstack] [dynamodb]      (no argument: both)
#
# Each service runs in its own process group (start.sh uses setsid); the whole group gets
# SIGTERM, then SIGKILL after a grace period. A pid file whose process is gone, or is no longer
# the emulator (pid reused), is just removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.local"
GRACE="${SEQ_EMULATOR_STOP_GRACE:-10}" # seconds

log() { printf '[emulators] %s\n' "$*" >&2; }

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop_one() { # <name> <pidfile> <cmdline pattern>
    local name="$1" pidfile="$2" pattern="$3" pid i
    [[ -f "$pidfile" ]] || { log "$name: no pid file, nothing to stop"; return 0; }
    pid="$(cat "$pidfile")"
    if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
        log "$name: not running (stale pid file)"
        # The group may outlive its leader.
        [[ "$pid" =~ ^[0-9]+$ ]] && group_alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$pidfile"
        return 0
    fi
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
        log "$name: pid $pid is not $name any more; leaving it alone"
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping process group $pid"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < GRACE * 10; i++)); do
        group_alive "$pid" || kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if group_alive "$pid" || kill -0 "$pid" 2>/dev/null; then
        log "$name: still alive after ${GRACE}s; SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
    log "$name: stopped"
}

comps=("$@")
((${#comps[@]})) || comps=(localstack dynamodb)
for c in "${comps[@]}"; do
    case "$c" in
    localstack) stop_one LocalStack "$RUN_DIR/localstack.pid" localstack.runtime.main ;;
    dynamodb) stop_one "DynamoDB Local" "$RUN_DIR/dynamodb.pid" DynamoDBLocal.jar ;;
    *) log "unknown service '$c' (known: localstack dynamodb)"; exit 1 ;;
    esac
done
