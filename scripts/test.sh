#!/usr/bin/env bash
# THE test command (README and .ci/run call it). From a fresh machine:
#
#   1. tools      scripts/tools.sh (idempotent; runs in the background during fmt + clippy)
#   2. fmt        cargo fmt --all -- --check
#   3. clippy     cargo clippy --workspace --all-targets $FEATURES -- -D warnings
#   4. emulators  localstack/start.sh (LocalStack :4566 + DynamoDB Local :8000 + resources) and
#                 scripts/ipfs.sh start (js-ipfs :5002); a trap always stops what this script started
#   5. tests      cargo nextest run --workspace --all-targets $FEATURES --profile ci [extra args]
#      contracts  contracts/check.sh: committed ABI/bytecode == a fresh solc build
#      terraform  infra/terraform/check.sh: fmt, (validate where a provider exists), HCL schema
#                 check against the AWS provider, drift vs the code, checkov offline (~25 s)
#      layers     scripts/check-layers.sh: the crates' dependency graph keeps the layers (~1 s)
#   6. doctests   cargo test --workspace --doc (only with SEQ_DOC_TESTS=1)
# and prints the time of each phase at the end, pass or fail.
#
# Knobs for quick local iterations:
#   SEQ_SKIP_INSTALL=1   do not run scripts/tools.sh
#   SEQ_NO_EMULATORS=1   do not start emulators (uses them if already running; otherwise tests
#                        that need a service skip: SEQ_REQUIRE_SERVICES is unset)
#   SEQ_SKIP_LINT=1      skip fmt and clippy
#   SEQ_DOC_TESTS=1      also run doc tests
# Extra arguments go to `cargo nextest run` (e.g. a test filter).
#
# FEATURES: optional cargo features that have tests against the emulators, so lint and tests cover
# them: sequencer-chain/aws-kms (the KMS signer, tested against LocalStack's KMS in
# chain/tests/kms.rs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="$ROOT/.local/test-logs"
mkdir -p "$LOG_DIR"

now() { date +%s.%N; }
say() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

T_START="$(now)"
# One full pass from a clean clone gains nothing from incremental compilation, and its caches
# (~17 GB for this workspace) once filled a CI machine's disk mid-clippy. A developer's edit loop
# can still ask for it: CARGO_INCREMENTAL=1 bash scripts/test.sh.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
FEATURES=(--features sequencer-chain/aws-kms)
PHASES=()    # "name<TAB>seconds<TAB>status"
TOOLS_PID=""
EMULATORS_LEASED=0

record() { # <name> <t0> <status>
    PHASES+=("$1"$'\t'"$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"$'\t'"$3")
}

phase() { # <name> <command...>: run, time, record; exit on failure
    local name="$1" t0 rc=0
    shift
    say "$name: $*"
    t0="$(now)"
    "$@" || rc=$?
    if ((rc != 0)); then
        record "$name" "$t0" "FAILED ($rc)"
        say "$name FAILED (exit $rc)"
        exit "$rc"
    fi
    record "$name" "$t0" ok
}

summary() {
    local rc=$? p
    # Stop a still-running background install (own process group, see below).
    if [[ -n "$TOOLS_PID" ]] && kill -0 "$TOOLS_PID" 2>/dev/null; then
        kill -TERM -- "-$TOOLS_PID" 2>/dev/null || true
    fi
    if [[ "$EMULATORS_LEASED" == 1 ]]; then
        local t0
        t0="$(now)"
        with_emulator_lock emulators_release || true
        record stop "$t0" ok
    fi
    {
        printf '\n==> phase timings\n'
        for p in "${PHASES[@]}"; do
            IFS=$'\t' read -r name secs status <<<"$p"
            printf '    %-10s %8ss  %s\n' "$name" "$secs" "$status"
        done
        printf '    %-10s %8ss  %s\n' total "$(awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')" \
            "$( ((rc == 0)) && echo PASSED || echo "FAILED (exit $rc)")"
    } >&2
    exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. tools, in the background while fmt and clippy use the CPU (installs are mostly network).
T_TOOLS=""
if [[ "${SEQ_SKIP_INSTALL:-0}" != 1 ]]; then
    say "tools: scripts/tools.sh in the background (log: .local/test-logs/tools.log)"
    T_TOOLS="$(now)"
    # setsid: its own process group, so the EXIT trap can end npm/pip children too.
    setsid bash "$ROOT/scripts/tools.sh" >"$LOG_DIR/tools.log" 2>&1 </dev/null &
    TOOLS_PID=$!
else
    say "tools: skipped (SEQ_SKIP_INSTALL=1)"
fi

say "disk: $(df -h "$ROOT" | awk 'NR == 2 { print $4 " free of " $2 }') (a debug build of the workspace takes ~15 GB)"

# 2. + 3. lint first: fast fail.
if [[ "${SEQ_SKIP_LINT:-0}" != 1 ]]; then
    phase fmt cargo fmt --all -- --check
    phase clippy cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
else
    say "fmt, clippy: skipped (SEQ_SKIP_LINT=1)"
fi

if [[ -n "$TOOLS_PID" ]]; then
    say "tools: waiting for scripts/tools.sh"
    rc=0
    wait "$TOOLS_PID" || rc=$?
    TOOLS_PID=""
    cat "$LOG_DIR/tools.log" >&2
    if ((rc != 0)); then
        record tools "$T_TOOLS" "FAILED ($rc)"
        say "tools FAILED (exit $rc)"
        exit "$rc"
    fi
    record tools "$T_TOOLS" "ok (parallel with lint)"
fi

# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

ver() { "$@" 2>&1 | head -n 1 || true; }
say "versions: $(ver rustc --version) | $(ver cargo nextest --version) | java $(ver java -version) |" \
    "node22 $(ver "$NODE22_BIN" --version) | $(ver "$ANVIL_BIN" --version)"

# The committed contract artifact must equal a fresh build with the pinned solc.
phase contracts bash contracts/check.sh

# The Terraform: formatted, every resource/argument known to the AWS provider, no drift from the
# code, checkov clean (infra/terraform/README.md).
phase terraform bash infra/terraform/check.sh

# The layers in the dependency graph: ports and handlers free of providers, SQLite, AWS SDK and
# HTTP; no SQLite in any Lambda (scripts/check-layers.sh, ~1 s).
phase layers bash scripts/check-layers.sh

# 4. emulators
ls_up() { curl -fsS --max-time 2 "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null 2>&1; }
ddb_up() { curl -sS --max-time 2 -o /dev/null "$AWS_ENDPOINT_URL_DYNAMODB" 2>/dev/null; }
ipfs_up() { curl -fsS --max-time 2 -X POST -o /dev/null "$IPFS_API_URL/api/v0/id" 2>/dev/null; }
# Several runs on one machine share the emulators: each run holds a lease (.local/emulator-leases/
# <pid>); the last run to leave stops the services that a test run started (marker files), never
# ones a developer started by hand. Start and release are serialised by a lock.
EMU_DIR="$ROOT/.local"
with_emulator_lock() { (flock 8 && "$@") 8>"$EMU_DIR/emulators.lock"; }
emulators_acquire() {
    local down=() s
    ls_up || down+=(localstack)
    ddb_up || down+=(dynamodb)
    ipfs_up || down+=(ipfs)
    mkdir -p "$EMU_DIR/emulator-leases"
    : >"$EMU_DIR/emulator-leases/$$"
    bash "$ROOT/localstack/start.sh" 8>&- || return
    local rc=0
    bash "$ROOT/scripts/ipfs.sh" start 8>&- || rc=$?
    for s in "${down[@]}"; do : >"$EMU_DIR/emulators.started-by-test.$s"; done
    return "$rc"
}
emulators_release() {
    local f s
    rm -f "$EMU_DIR/emulator-leases/$$"
    for f in "$EMU_DIR"/emulator-leases/*; do
        [[ -e "$f" ]] || continue
        kill -0 "${f##*/}" 2>/dev/null || rm -f "$f"
    done
    if compgen -G "$EMU_DIR/emulator-leases/*" >/dev/null; then
        say "emulators: still used by another run ($(ls "$EMU_DIR/emulator-leases" | tr '\n' ' ')); leaving them up"
        return 0
    fi
    for s in localstack dynamodb ipfs; do
        if [[ -f "$EMU_DIR/emulators.started-by-test.$s" ]]; then
            if [[ "$s" == ipfs ]]; then
                bash "$ROOT/scripts/ipfs.sh" stop 8>&- || true
            else
                bash "$ROOT/localstack/stop.sh" "$s" 8>&- || true
            fi
            rm -f "$EMU_DIR/emulators.started-by-test.$s"
        fi
    done
}
if [[ "${SEQ_NO_EMULATORS:-0}" != 1 ]]; then
    EMULATORS_LEASED=1
    phase emulators with_emulator_lock emulators_acquire
else
    if ls_up && ddb_up && ipfs_up; then
        say "emulators: not started (SEQ_NO_EMULATORS=1); using the ones running"
    else
        say "emulators: not started (SEQ_NO_EMULATORS=1) and not running; tests needing them will skip"
        unset SEQ_REQUIRE_SERVICES
    fi
fi

# 5. tests
phase tests cargo nextest run --workspace --all-targets "${FEATURES[@]}" --profile ci "$@"

# 6. doc tests (nextest does not run them)
if [[ "${SEQ_DOC_TESTS:-0}" == 1 ]]; then
    phase doctests cargo test --workspace --doc
else
    say "doctests: skipped (set SEQ_DOC_TESTS=1 to run them)"
fi
