#!/usr/bin/env bash
# Start or stop the local IPFS node the tests use: js-ipfs 0.66 (installed by
# `scripts/tools.sh ipfs`) under Node 22, serving the Kubo HTTP RPC (/api/v0/add, /api/v0/cat).
#
#   scripts/ipfs.sh start     init the repo if needed, start the daemon, wait until the API answers
#   scripts/ipfs.sh stop      stop the daemon started here (by pid file, whole process group)
#   scripts/ipfs.sh status    exit 0 when the API answers
#
# The node is offline by configuration: no swarm listeners, no bootstrap peers, no delegates, no
# MDNS (there is no network to find content on, and a node looking for an unknown CID would wait
# on it). API on 127.0.0.1:${SEQ_IPFS_API_PORT:-5002} (IPFS_API_URL in scripts/env.sh); no gateway and no
# gRPC listener. Repo .local/ipfs-repo, log .local/ipfs.log, pid .local/ipfs.pid.
# A node that already answers on the port is reused, not restarted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

RUN_DIR="$ROOT/.local"
PORT="${SEQ_IPFS_API_PORT:-5002}"
API="http://127.0.0.1:${PORT}"
REPO="$SEQ_IPFS_REPO"
PIDFILE="$RUN_DIR/ipfs.pid"
LOGFILE="$RUN_DIR/ipfs.log"
START_TIMEOUT="${SEQ_EMULATOR_START_TIMEOUT:-90}" # seconds

log() { printf '[ipfs] %s\n' "$*" >&2; }
die() { printf '[ipfs] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

healthy() { curl -fsS --max-time 2 -X POST "$API/api/v0/id" 2>/dev/null | grep -q '"ID"'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
pid_alive() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

jsipfs() { IPFS_PATH="$REPO" "$NODE22_BIN" "$JSIPFS_CLI" "$@"; }

configure() {
    # Offline node, API on $PORT only. Edited with node (JSON in, JSON out) each start, so a
    # changed port takes effect on an existing repo.
    IPFS_CONFIG="$REPO/config" SEQ_IPFS_API="/ip4/127.0.0.1/tcp/${PORT}" "$NODE22_BIN" -e '
        const fs = require("fs");
        const p = process.env.IPFS_CONFIG;
        const c = JSON.parse(fs.readFileSync(p, "utf8"));
        c.Addresses = { ...c.Addresses, Swarm: [], Delegates: [], Announce: [], NoAnnounce: [],
                        API: process.env.SEQ_IPFS_API, Gateway: [], RPC: [] };
        c.Bootstrap = [];
        c.Discovery = { MDNS: { Enabled: false }, webRTCStar: { Enabled: false } };
        fs.writeFileSync(p, JSON.stringify(c, null, 2));
    '
}

start() {
    if healthy; then
        log "an IPFS API already answers on $API; reusing it"
        return
    fi
    port_busy && die "port $PORT is taken by something that is not an IPFS API"
    [[ -x "$NODE22_BIN" ]] || die "no Node 22 at $NODE22_BIN; run scripts/tools.sh node22"
    [[ -f "$JSIPFS_CLI" ]] || die "no js-ipfs at $JSIPFS_CLI; run scripts/tools.sh ipfs"
    mkdir -p "$RUN_DIR"
    if [[ ! -f "$REPO/config" ]]; then
        log "initialising the repo at ${REPO#"$ROOT"/}"
        rm -rf "$REPO"
        jsipfs init --empty-repo >>"$LOGFILE" 2>&1 || die "init failed; see ${LOGFILE#"$ROOT"/}"
    fi
    configure
    # A daemon that died without cleaning up leaves its repo lock behind (js-ipfs makes it a
    # directory, so `rm -f` alone would stop the start here under `set -e`).
    pid_alive || rm -rf "$REPO/repo.lock"
    log "starting js-ipfs on $API (log: ${LOGFILE#"$ROOT"/})"
    local t0
    t0="$(now)"
    # setsid: own process group, so stop can end the daemon and anything it spawned.
    (IPFS_PATH="$REPO" exec setsid "$NODE22_BIN" "$JSIPFS_CLI" daemon) >>"$LOGFILE" 2>&1 </dev/null &
    echo "$!" >"$PIDFILE"
    rm -f "$RUN_DIR/emulators.started-by-test.ipfs" # started here, not by a test run
    while ! healthy; do
        if ! pid_alive; then
            log "js-ipfs exited during start-up; last lines of ${LOGFILE#"$ROOT"/}:"
            tail -n 40 "$LOGFILE" | sed 's/^/    /' >&2
            exit 1
        fi
        if awk -v a="$t0" -v b="$(now)" -v t="$START_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            log "not healthy after ${START_TIMEOUT}s; last lines of ${LOGFILE#"$ROOT"/}:"
            tail -n 40 "$LOGFILE" | sed 's/^/    /' >&2
            stop
            exit 1
        fi
        sleep 0.3
    done
    log "healthy after $(elapsed "$t0")s"
}

stop() {
    if ! pid_alive; then
        rm -f "$PIDFILE"
        log "not running (no live pid in ${PIDFILE#"$ROOT"/})"
        return
    fi
    local pid i
    pid="$(cat "$PIDFILE")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after 10 s; killing"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) healthy ;;
*) die "usage: scripts/ipfs.sh start|stop|status" ;;
esac
