#!/usr/bin/env bash
# Checks of the Terraform in infra/terraform, offline (scripts/test.sh runs it as its `terraform`
# phase; tools from `scripts/tools.sh terraform`):
#
#   1. fmt       terraform fmt -check -recursive (terraform on PATH, else the PyPI one in .tools),
#                of infra/terraform and localstack/terraform (the tflocal root)
#   2. validate  terraform init -backend=false && terraform validate, ONLY where a hashicorp/aws
#                provider is available locally (a filesystem mirror or plugin cache); these
#                machines have none (no current provider in any reachable registry), and the
#                script says so instead of pretending
#   2b. locals   the module's locals.tf + variables.tf evaluated with `terraform console` (no
#                provider needed once provider objects are stubbed) for several variable sets:
#                environments, names, defaults/overrides, and validations that must refuse
#                (check/eval_locals.py; terraform >= 1.9)
#   3. schema    every .tf (infra/terraform, localstack/terraform) parsed with python-hcl2; every resource and data source, argument and
#                block checked against hashicorp/aws 6.25.0 (the @cdktf/provider-aws 21.22.1
#                bindings): unknown types, unknown/misspelled arguments, blocks written as
#                arguments (and back), missing required ones; module calls vs module variables
#   4. drift     names, environment variables, event shapes, IAM actions and the metrics the
#                alarms and dashboard read vs the code and localstack/resources.py
#                (check/drift.py; check/test_drift.py breaks copies of the tree it must catch)
#   5. checkov   checkov --framework terraform --skip-download; every skip is justified in place
#                (#checkov:skip=ID:reason next to the resource)
#
# Exit non-zero on the first failing step. SEQ_TF_VALIDATE=0 skips step 2 even with a provider.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TF_DIR="$ROOT/infra/terraform"
TF_TOOLS="${SEQ_TF_TOOLS:-$ROOT/.tools/terraform}"
SCHEMA="$TF_TOOLS/aws-provider-6.25.0.schema.json"
HCL_PY="$TF_TOOLS/hcl-venv/bin/python"
CHECKOV="$TF_TOOLS/checkov-venv/bin/checkov"

say() { printf '[terraform-check] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

if [[ ! -x "$HCL_PY" || ! -x "$CHECKOV" || ! -s "$SCHEMA" ]]; then
    bash "$ROOT/scripts/tools.sh" terraform
fi

TF="$(command -v terraform || true)"
[[ -n "$TF" ]] || TF="$TF_TOOLS/hcl-venv/bin/terraform"
[[ -x "$TF" ]] || die "no terraform binary (scripts/tools.sh terraform installs one when none is on PATH)"
if [[ ! -e "${TF_CLI_CONFIG_FILE:-$HOME/.terraformrc}" ]]; then
    : >"$TF_TOOLS/terraformrc" # an empty CLI config: no "unable to open ~/.terraformrc" warning
    export TF_CLI_CONFIG_FILE="$TF_TOOLS/terraformrc"
fi
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1

# 1. fmt
t0="$(now)"
if ! (cd "$ROOT" && "$TF" fmt -check -recursive -diff infra/terraform && "$TF" fmt -check -recursive -diff localstack/terraform); then
    die "terraform fmt: run \`terraform fmt -recursive infra/terraform localstack/terraform\`"
fi
say "fmt: ok ($("$TF" version | head -n 1), $(took "$t0"))"

# 2. validate, only with a provider at hand
provider_dirs=(
    "${TF_PLUGIN_CACHE_DIR:-/nonexistent}/registry.terraform.io/hashicorp/aws"
    "$HOME/.terraform.d/plugins/registry.terraform.io/hashicorp/aws"
    "/usr/share/terraform/plugins/registry.terraform.io/hashicorp/aws"
    "/usr/local/share/terraform/plugins/registry.terraform.io/hashicorp/aws"
)
provider=""
for d in "${provider_dirs[@]}"; do
    if compgen -G "$d/6.*" >/dev/null; then provider="$d"; break; fi
done
if [[ "${SEQ_TF_VALIDATE:-1}" == 0 ]]; then
    say "validate: skipped (SEQ_TF_VALIDATE=0)"
elif [[ -z "$provider" ]]; then
    say "validate: NOT RUN - no hashicorp/aws >= 6 provider on this machine (plugin cache, ~/.terraform.d/plugins," \
        "/usr/share/terraform/plugins) and none in a reachable registry; the schema check below stands in for it"
else
    t0="$(now)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    cp -r "$TF_DIR/modules" "$TF_DIR/examples" "$work/"
    (cd "$work/examples/single-market" &&
        "$TF" init -backend=false -input=false -plugin-dir="${provider%/registry.terraform.io/hashicorp/aws}" >/dev/null &&
        "$TF" validate) || die "terraform validate"
    say "validate: ok with $provider ($(took "$t0"))"
fi

# 2b. the module's locals, evaluated by terraform itself with stand-ins for provider objects
tf_minor="$("$TF" version | sed -n '1s/^Terraform v1\.\([0-9]*\)\..*/\1/p')"
if [[ -n "$tf_minor" ]] && ((tf_minor >= 9)); then
    t0="$(now)"
    "$HCL_PY" "$TF_DIR/check/eval_locals.py" "$TF" "$TF_DIR/modules/sequencer" || die "locals"
    say "locals: ok ($(took "$t0"))"
else
    say "locals: NOT RUN - needs terraform >= 1.9 (optional object attributes); $("$TF" version | head -n 1) here"
fi

# 3. schema
t0="$(now)"
"$HCL_PY" "$TF_DIR/check/schema_check.py" "$SCHEMA" "$TF_DIR" "$ROOT/localstack/terraform" || die "schema check"
say "schema: ok ($(took "$t0"))"

# 4. drift between infra and code
t0="$(now)"
"$HCL_PY" "$TF_DIR/check/drift.py" "$ROOT" || die "drift check"
"$HCL_PY" "$TF_DIR/check/test_drift.py" "$ROOT" || die "drift check's own test (broken trees it must catch)"
say "drift: ok ($(took "$t0"))"

# 5. checkov, offline
t0="$(now)"
if ! "$CHECKOV" -d "$TF_DIR" --framework terraform --skip-download --quiet --compact \
    --download-external-modules false >"${TMPDIR:-/tmp}/checkov.$$.log" 2>&1; then
    cat "${TMPDIR:-/tmp}/checkov.$$.log" >&2
    rm -f "${TMPDIR:-/tmp}/checkov.$$.log"
    die "checkov"
fi
grep -E '^(Passed|Failed) checks' "${TMPDIR:-/tmp}/checkov.$$.log" | sed 's/^/[terraform-check] checkov: /' >&2 || true
rm -f "${TMPDIR:-/tmp}/checkov.$$.log"
say "checkov: ok ($(took "$t0"))"
