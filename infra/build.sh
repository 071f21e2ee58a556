#!/usr/bin/env bash
# Build the release artifacts the Terraform deploys, reproducibly:
#
#   infra/build.sh [--x86_64] [--no-image] [--push REPOSITORY_URI]
#
#   1. Lambda zips: `cargo lambda build --release --arm64 --output-format zip` of every binary
#      of lambdas/ (verify, tick, finalize, anchor, epoch-manager, proof) with the
#      aws-kms feature, --locked, paths remapped; each zip is then rewritten with fixed
#      timestamps and modes so equal sources give byte-equal zips -> target/lambda/<bin>/bootstrap.zip
#      (the module's lambda_zip_dir) and target/lambda/SHA256SUMS.
#   2. The ingress image from ingress/Dockerfile (SOURCE_DATE_EPOCH = the commit time, no
#      cache-busting build args), tagged sequencer-ingress:<git sha>; --push tags it
#      REPOSITORY_URI:<git sha> and pushes it (log in first: aws ecr get-login-password | docker login ...).
#
# Needs cargo-lambda (scripts/tools.sh cargo-lambda) and, for arm64, the Rust target
# aarch64-unknown-linux-gnu (`rustup target add aarch64-unknown-linux-gnu`; cargo-lambda's zig
# does the linking). Neither the arm64 target nor Docker is reachable on the project's build
# machines: there, --x86_64 builds x86_64 zips (deploy them with lambda_architecture = "x86_64")
# and --no-image skips the image. A cold release build takes 10-14 min on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ARCH_FLAG=(--arm64)
IMAGE=1
PUSH=""
while (($#)); do
    case "$1" in
    --x86_64) ARCH_FLAG=(--x86-64) ;;
    --no-image) IMAGE=0 ;;
    --push) PUSH="${2:?--push needs a repository URI}"; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[build] %s\n' "$*" >&2; }
SHA="$(git rev-parse --short=12 HEAD)"
export SOURCE_DATE_EPOCH="$(git log -1 --format=%ct HEAD)"
if [[ -n "$(git status --porcelain -- Cargo.lock Cargo.toml core ports handlers api adapters chain lambdas ingress)" ]]; then
    log "WARNING: uncommitted changes in the sources; the artifacts are not reproducible from $SHA"
fi

CARGO_LAMBDA="${CARGO_LAMBDA_BIN:-$ROOT/.tools/cargo-lambda-venv/bin/cargo-lambda}"
[[ -x "$CARGO_LAMBDA" ]] || CARGO_LAMBDA="$(command -v cargo-lambda || true)"
[[ -n "$CARGO_LAMBDA" ]] || { bash scripts/tools.sh cargo-lambda; CARGO_LAMBDA="$ROOT/.tools/cargo-lambda-venv/bin/cargo-lambda"; }

# Paths of this checkout and of the cargo home must not end up in the binaries.
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$ROOT=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
export CARGO_INCREMENTAL=0

log "lambdas: cargo lambda build --release ${ARCH_FLAG[*]} --output-format zip (commit $SHA)"
"$CARGO_LAMBDA" lambda build --release "${ARCH_FLAG[@]}" --output-format zip --locked \
    -p sequencer-lambdas --features aws-kms

# Deterministic zips: one entry `bootstrap`, mode 0755, timestamp 1980-01-01, fixed compression.
python3 - "$ROOT/target/lambda" <<'PY'
import hashlib, sys, zipfile
from pathlib import Path
root = Path(sys.argv[1])
sums = []
for z in sorted(root.glob("*/bootstrap.zip")):
    with zipfile.ZipFile(z) as src:
        data = src.read("bootstrap")
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 << 16)
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    tmp = z.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        dst.writestr(info, data, compresslevel=9)
    tmp.replace(z)
    sums.append(f"{hashlib.sha256(z.read_bytes()).hexdigest()}  {z.relative_to(root)}")
(root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
print("\n".join(sums))
PY
log "lambdas: target/lambda/<bin>/bootstrap.zip, checksums in target/lambda/SHA256SUMS"

if ((IMAGE)); then
    command -v docker >/dev/null || { log "no docker: image not built (use --no-image to silence)"; exit 1; }
    log "ingress image: sequencer-ingress:$SHA"
    DOCKER_BUILDKIT=1 docker build -f ingress/Dockerfile \
        --build-arg SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
        --label org.opencontainers.image.revision="$(git rev-parse HEAD)" \
        -t "sequencer-ingress:$SHA" .
    if [[ -n "$PUSH" ]]; then
        docker tag "sequencer-ingress:$SHA" "$PUSH:$SHA"
        docker push "$PUSH:$SHA"
        log "pushed $PUSH:$SHA (ingress_image = \"$(docker inspect --format '{{index .RepoDigests 0}}' "$PUSH:$SHA")\")"
    fi
fi
