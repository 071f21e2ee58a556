#!/usr/bin/env bash
# The layers hold in the dependency graph, not only in the imports (scripts/test.sh runs this):
#
#   - sequencer-ports and sequencer-handlers depend, even transitively, on no alloy provider or
#     transport, no SQLite, no AWS SDK and no HTTP stack: the handlers run over the ports only;
#   - no Lambda binary (sequencer-lambdas) links SQLite (the embedded adapters stay local);
#   - sequencer-handlers does not depend on an adapter crate or the chain client;
#   - the deterministic simulation (sequencer-simulation) runs the handlers over its own
#     in-memory ports: none of the above, and no libp2p either.
#
# A crate importing across a layer does not compile (each layer is a crate); this catches the
# dependency that compiles and still breaks the rule (a new `[dependencies]` line). Offline,
# about a second: `cargo tree` reads Cargo.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail=0
say() { printf '[layers] %s\n' "$*" >&2; }

tree() { cargo tree --offline -e normal --prefix none --format '{p}' "$@" 2>/dev/null | sed 's/ (.*//' | sort -u; }

FORBIDDEN='^(alloy-provider|alloy-transport|alloy-transport-http|alloy-contract|alloy-signer-local|rusqlite|libsqlite3-sys|aws-sdk-[a-z]+|aws-config|hyper|reqwest|sequencer-chain|sequencer-aws|sequencer-ipfs|sequencer-embedded|sequencer-api|lambda_runtime) '
for crate in sequencer-ports sequencer-handlers sequencer-simulation; do
    bad="$(tree -p "$crate" | grep -E "$FORBIDDEN|^libp2p" || true)"
    if [[ -n "$bad" ]]; then
        say "$crate depends on what its layer must not: $(echo "$bad" | tr '\n' ' ')"
        fail=1
    fi
done

# `cargo tree -i` prints nothing (and exits 0) when the package is not in the graph.
sqlite="$(cargo tree --offline -e normal -p sequencer-lambdas -i rusqlite 2>/dev/null || true)"
if [[ -n "$sqlite" ]]; then
    say "a Lambda links SQLite: $(echo "$sqlite" | head -n 5 | tr '\n' ' ')"
    fail=1
fi

if ((fail)); then
    exit 1
fi
say "ports, handlers and the simulation free of providers, SQLite, AWS SDK, HTTP and libp2p; no SQLite in any Lambda: ok"
